//! Redis Sentinel against real processes (a primary, a replica, three sentinels from
//! `testkit::sentinel`): connections, blocking waits and subscriptions follow the master through
//! a failover; the `WAIT` opt-in; configurations that point at the wrong thing.

use std::time::{Duration, Instant};

use celery_redis::broker::{Broker, Submitted};
use celery_redis::config::RedisConfig;
use celery_redis::conn::{Conn, ResolveError, Waits};
use celery_redis::control::listen::{self, Incoming};
use celery_redis::protocol::TaskMessage;
use celery_redis::stores::Stores;
use redis::{AsyncCommands, IntoConnectionInfo};
use testkit::sentinel::{TestSentinels, GHOST, MASTER, PASSWORD};
use testkit::TestRedis;

const WAITS: Waits = Waits {
    response: Some(Duration::from_secs(5)),
    connect_retries: 0,
};

fn config(url: &str, extra: &[(&str, &str)]) -> RedisConfig {
    let mut vars = vec![("REDIS_URL", url), ("REDIS_SENTINEL_MASTER", MASTER)];
    vars.extend_from_slice(extra);
    RedisConfig::from_source(&testkit::vars(&vars)).unwrap()
}

/// Fails over with the sentinels (a blocking wait on their log lines, off the runtime).
async fn failover(s: &std::sync::Arc<TestSentinels>) {
    let s = s.clone();
    tokio::task::spawn_blocking(move || s.failover())
        .await
        .unwrap();
}

/// A call after the failover: the first may fail (the sentinel closed the connection to the
/// old master), the next goes to the new master.
async fn incr_after_failover(conn: &mut Conn) -> i64 {
    match conn.incr::<_, _, i64>("counter", 1).await {
        Ok(n) => n,
        Err(e) => {
            assert!(celery_redis::conn::needs_new_master(&e), "{e}");
            conn.incr("counter", 1).await.unwrap()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_follows_the_master_through_failovers() {
    let s = std::sync::Arc::new(TestSentinels::start());
    let cfg = config(&s.url(), &[]);
    let mut conn = Conn::new(&cfg.url, WAITS).unwrap();
    assert_eq!(conn.incr::<_, _, i64>("counter", 1).await.unwrap(), 1);
    // One failover (each takes ~15 s: the old master becomes a replica only after the
    // sentinels' next look at it); the worker's sentinel suite runs more.
    for round in 0..1 {
        let before = s.master_port();
        failover(&s).await;
        assert_ne!(
            s.master_port(),
            before,
            "the sentinels promoted the replica"
        );
        let n = incr_after_failover(&mut conn).await;
        assert_eq!(
            n,
            2 + round,
            "the write acknowledged before the failover is on the new master"
        );
        let direct = redis::Client::open(s.master_url()).unwrap();
        let seen: i64 = direct
            .get_multiplexed_async_connection()
            .await
            .unwrap()
            .get("counter")
            .await
            .unwrap();
        assert_eq!(seen, n, "written to the master the sentinels name");
    }
}

/// Clients subscribed to a channel, over all the sentinels of `s` (a sentinel's own links to
/// the others subscribe to nothing).
async fn subscribed_clients(s: &TestSentinels) -> usize {
    let mut n = 0;
    for port in s.sentinel_ports() {
        let info = redis::ConnectionAddr::Tcp("127.0.0.1".into(), port)
            .into_connection_info()
            .unwrap()
            .set_redis_settings(redis::RedisConnectionInfo::default().set_skip_set_lib_name());
        let client = redis::Client::open(info).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query_async(&mut conn)
            .await
            .unwrap();
        let subscribed = |line: &&str| {
            line.split(' ')
                .any(|f| f.starts_with("sub=") && f != "sub=0")
        };
        n += list.lines().filter(subscribed).count();
    }
    n
}

/// Every connection made from one `sentinel://` URL (a worker's blocking waits make one per
/// queue) shares one watch of `+switch-master`: one subscription on the sentinels, however
/// many connections; and each of them leaves the old master when it announces a failover (its
/// first call after it already goes to the new master).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_from_one_url_share_one_failover_watch() {
    let s = std::sync::Arc::new(TestSentinels::start());
    let cfg = config(&s.url(), &[]);
    let blocking = Waits {
        response: None,
        connect_retries: 0,
    };
    let mut conns = vec![Conn::new(&cfg.url, blocking).unwrap()];
    conns.extend((0..4).map(|_| Conn::new(&cfg.url, WAITS).unwrap()));
    for (n, conn) in (1..).zip(conns.iter_mut()) {
        assert_eq!(conn.incr::<_, _, i64>("counter", 1).await.unwrap(), n);
    }
    // The watch subscribes once the first connection found the master.
    let deadline = Instant::now() + Duration::from_secs(10);
    while subscribed_clients(&s).await == 0 {
        assert!(
            Instant::now() < deadline,
            "the failover watch never subscribed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    failover(&s).await;
    assert_eq!(
        subscribed_clients(&s).await,
        1,
        "one watch for {} connections",
        conns.len()
    );
    // The old master's clients were disconnected: a connection the watch did not tell would
    // fail its first call.
    for (n, conn) in (6..).zip(conns.iter_mut()) {
        assert_eq!(conn.incr::<_, _, i64>("counter", 1).await.unwrap(), n);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_wait_and_a_subscription_end_on_failover_and_resume_on_the_new_master() {
    let s = std::sync::Arc::new(TestSentinels::start());
    let cfg = config(&s.url(), &[]);
    let conn = Conn::new(&cfg.url, WAITS).unwrap();
    let broker = Broker::new(conn.clone(), "celery", "test@host");
    let blocking_waits = Waits {
        response: None,
        connect_retries: 0,
    };
    let mut blocking = Conn::new(&cfg.url, blocking_waits).unwrap();
    let mut sub = listen::subscribe(&cfg.url, &cfg.layout, "watch", Duration::from_secs(5))
        .await
        .unwrap();
    let waiting = {
        let (broker, mut blocking) = (broker.clone(), blocking.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let r = broker
                .wait_for_message(&mut blocking, Duration::from_secs(60))
                .await;
            (r, started.elapsed())
        })
    };
    // The BLMOVE is blocked on the old master before the failover starts.
    let mut old = redis::Client::open(s.master_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    loop {
        let info: String = redis::cmd("INFO")
            .arg("clients")
            .query_async(&mut old)
            .await
            .unwrap();
        if !info.contains("blocked_clients:0") {
            break;
        }
        tokio::task::yield_now().await;
    }
    failover(&s).await;
    let (ended, after) = waiting.await.unwrap();
    assert!(
        after < Duration::from_secs(30),
        "a BLMOVE on the old master ended with the failover ({ended:?} after {after:?})"
    );
    assert!(
        sub.next(Duration::from_secs(30)).await.is_none(),
        "the old subscription closed"
    );
    // Both go on against the new master.
    let mut sub = listen::subscribe(&cfg.url, &cfg.layout, "watch", Duration::from_secs(5))
        .await
        .unwrap();
    let mut pusher = conn.clone();
    let _ = pusher.lpush::<_, _, ()>("celery", "m").await;
    pusher.lpush::<_, _, ()>("celery", "m2").await.ok();
    let moved = match broker
        .wait_for_message(&mut blocking, Duration::from_secs(5))
        .await
    {
        Ok(m) => m,
        Err(_) => broker
            .wait_for_message(&mut blocking, Duration::from_secs(5))
            .await
            .unwrap(),
    };
    assert!(moved, "BLMOVE on the new master takes a message");
    let published: i64 = pusher.publish("watch", "alive").await.unwrap();
    assert_eq!(published, 1, "the new subscription is on the new master");
    assert!(matches!(
        sub.next(Duration::from_secs(5)).await,
        Some(Incoming::Alive)
    ));
}

fn message(id: &str) -> TaskMessage {
    let mut msg = TaskMessage::new("process_order", "celery", serde_json::Map::new());
    msg.id = id.to_owned();
    msg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_covers_an_enqueue_and_says_when_fewer_replicas_acknowledged() {
    let s = TestSentinels::start();
    let one = config(&s.url(), &[("REDIS_WAIT_REPLICAS", "1")]);
    let broker = Broker::new(Conn::new(&one.url, WAITS).unwrap(), "celery", "t@h");
    let created = broker.publish_once("key-1", &message("t-1")).await.unwrap();
    assert_eq!(created, Submitted::Created("t-1".into()));
    broker.publish(&message("t-2")).await.unwrap();
    broker
        .publish_many(&[message("t-3"), message("t-4")])
        .await
        .unwrap();

    // Two replicas asked, one exists: the write is on the master, and the caller is told.
    let two = config(
        &s.url(),
        &[
            ("REDIS_WAIT_REPLICAS", "2"),
            ("REDIS_WAIT_TIMEOUT_MS", "200"),
        ],
    );
    let broker = Broker::new(Conn::new(&two.url, WAITS).unwrap(), "celery", "t@h");
    let short_before = celery_redis::conn::short_waits();
    let started = Instant::now();
    let err = broker
        .publish_once("key-5", &message("t-5"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("1 of 2 replicas"), "{err}");
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "WAIT waited its timeout"
    );
    assert!(!err.to_string().contains(PASSWORD));
    assert!(celery_redis::conn::short_waits() > short_before);
    // An ack is only logged and counted: a lost ack makes the task run again, no more.
    assert!(!broker.ack("no-such-tag").await.unwrap());
    // The retry with the same key finds the task (nothing enqueued twice).
    let again = broker.publish_once("key-5", &message("t-5b")).await;
    assert!(again.is_err(), "still short: {again:?}");
    let mut direct = redis::Client::open(s.master_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let queued: i64 = direct.llen("celery").await.unwrap();
    assert_eq!(queued, 5, "t-1 .. t-5, once each");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_targets_are_refused_at_start_or_reported_as_outages() {
    let s = TestSentinels::start();
    // A master name the sentinels do not know: a configuration error.
    let cfg = config(&s.url(), &[("REDIS_SENTINEL_MASTER", "nosuchmaster")]);
    let stores = Stores::connect(&cfg, WAITS).unwrap();
    let err = stores.check(&cfg).await.unwrap_err();
    assert_eq!(err.var, "REDIS_URL");
    assert!(
        err.reason.contains("knows no master \"nosuchmaster\""),
        "{err}"
    );
    assert!(!err.to_string().contains(PASSWORD), "{err}");

    // A plain Redis given as a sentinel: a configuration error.
    let plain = TestRedis::start();
    let url = format!("sentinel://127.0.0.1:{}", plain.port());
    let cfg = config(&url, &[]);
    let err = Stores::connect(&cfg, WAITS)
        .unwrap()
        .check(&cfg)
        .await
        .unwrap_err();
    assert!(err.reason.contains("is not a sentinel"), "{err}");

    // A master the sentinels name at an address where nothing listens: an outage, reported
    // within a bound (the process starts and is not ready), not a configuration error.
    let cfg = config(&s.url(), &[("REDIS_SENTINEL_MASTER", GHOST)]);
    let stores = Stores::connect(&cfg, WAITS).unwrap();
    stores.check(&cfg).await.unwrap();
    let started = Instant::now();
    let err = celery_redis::conn::ping(&stores.redis, Duration::from_secs(10))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(err.to_string().contains("does not answer"), "{err}");
    let unresolved = stores
        .redis
        .resolve_error()
        .await
        .expect("the resolution failed");
    assert!(
        matches!(unresolved, ResolveError::NoMaster(_)),
        "an outage, not a configuration error: {unresolved}"
    );

    // Sentinels that are all down: an outage too, named without the password.
    let dead = format!(
        "sentinel://:{PASSWORD}@127.0.0.1:{};sentinel://127.0.0.1:{}",
        testkit::free_port(),
        testkit::free_port()
    );
    let cfg = config(&dead, &[]);
    let stores = Stores::connect(&cfg, WAITS).unwrap();
    stores.check(&cfg).await.unwrap();
    let err = celery_redis::conn::ping(&stores.redis, Duration::from_secs(10))
        .await
        .unwrap_err();
    assert!(!err.to_string().contains(PASSWORD), "{err}");
    assert!(!format!("{err:?}").contains(PASSWORD), "{err:?}");
}
