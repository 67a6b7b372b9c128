//! The fleet-wide rate limit against a real redis-server: callers on separate connections (two
//! workers) share one limit, a refusal writes nothing and says how long to wait, the key sits
//! under the fleet's prefix and expires once its time has passed.

use std::time::{Duration, Instant};

use celery_redis::conn::Conn;
use celery_redis::keys::{self, Layout};
use celery_redis::task::fleet;
use celery_redis::task::rate::{self, Rate};
use redis::AsyncCommands;
use testkit::TestRedis;

fn per_second(s: &str) -> Rate {
    rate::parse(s).unwrap().unwrap()
}

async fn server_time(conn: &mut Conn) -> f64 {
    let (s, us): (f64, f64) = redis::cmd("TIME").query_async(conn).await.unwrap();
    s + us / 1e6
}

#[tokio::test]
async fn two_callers_share_one_limit() {
    let redis = TestRedis::start();
    let (mut a, b) = (redis.manager().await, redis.manager().await);
    let layout = Layout::default();
    let two = per_second("2/s");
    let now = server_time(&mut a).await;
    assert_eq!(fleet::take(&a, &layout, "t", two, now).await.unwrap(), None);
    // The other caller is refused, told to wait one interval from `now` (plus the time the
    // first call took after it).
    let wait = fleet::take(&b, &layout, "t", two, now).await.unwrap();
    let wait = wait.expect("refused");
    assert!(wait >= Duration::from_millis(500), "{wait:?}");
    assert!(wait < Duration::from_millis(600), "{wait:?}");
    // Another task has a limit of its own.
    assert_eq!(fleet::take(&b, &layout, "u", two, now).await.unwrap(), None);
    // The key holds the next allowed time and expires just after it.
    let ttl: i64 = a.pttl(keys::fleet_rate("t")).await.unwrap();
    assert!((1..=501).contains(&ttl), "{ttl}");
    // Once the wait has passed, a start is allowed again (to either caller).
    tokio::time::sleep(wait).await;
    let now = server_time(&mut a).await;
    assert_eq!(fleet::take(&b, &layout, "t", two, now).await.unwrap(), None);
    assert!(fleet::take(&a, &layout, "t", two, now)
        .await
        .unwrap()
        .is_some());
}

#[tokio::test]
async fn racing_callers_never_start_more_than_the_rate_allows() {
    let redis = TestRedis::start();
    let conns = [redis.manager().await, redis.manager().await];
    let ten = per_second("10/s");
    let began = Instant::now();
    let mut tasks = Vec::new();
    for conn in conns {
        tasks.push(tokio::spawn(async move {
            let (mut allowed, mut refused) = (0u32, 0u32);
            let layout = Layout::default();
            while began.elapsed() < Duration::from_millis(600) {
                let now = server_time(&mut conn.clone()).await;
                match fleet::take(&conn, &layout, "t", ten, now).await.unwrap() {
                    None => allowed += 1,
                    Some(_) => refused += 1,
                }
            }
            (allowed, refused)
        }));
    }
    let mut allowed = 0;
    for task in tasks {
        let (a, r) = task.await.unwrap();
        assert!(r > 0, "each caller was refused at times");
        allowed += a;
    }
    // Starts are at least 100 ms apart by the server's clock: within the elapsed time, one
    // more than its tenths at most (and half a start for the two clocks' difference).
    let most = began.elapsed().as_secs_f64() * 10.0 + 1.5;
    assert!(
        allowed >= 1 && f64::from(allowed) <= most,
        "{allowed} > {most}"
    );
}

#[tokio::test]
async fn a_wait_counts_from_the_reference_time_and_a_refusal_writes_nothing() {
    let redis = TestRedis::start();
    let mut conn = redis.manager().await;
    let layout = Layout::new(&[0, 3, 6, 9], "\x06\x16", "app:").unwrap();
    let slow = per_second("6/m");
    let now = server_time(&mut conn).await;
    assert_eq!(
        fleet::take(&conn, &layout, "t", slow, now).await.unwrap(),
        None
    );
    let kept: String = conn.get("app:fleet:rate:t").await.unwrap();
    // Taken 2 s ago: the wait counts from then, so it is 2 s longer than from now.
    let wait = fleet::take(&conn, &layout, "t", slow, now - 2.0)
        .await
        .unwrap();
    let wait = wait.unwrap().as_secs_f64();
    assert!((12.0..13.0).contains(&wait), "{wait}");
    let after: String = conn.get("app:fleet:rate:t").await.unwrap();
    assert_eq!(after, kept, "a refusal writes nothing");
    let micros: f64 = after.parse().unwrap();
    assert!(
        (micros / 1e6 - now - 10.0).abs() < 1.0,
        "{after} against {now}"
    );
    // A key of another type is an error, and left as it is.
    let _: () = conn.rpush("app:fleet:rate:l", "x").await.unwrap();
    let refused = fleet::take(&conn, &layout, "l", slow, now).await;
    assert!(refused.unwrap_err().to_string().contains("another type"));
    let len: i64 = conn.llen("app:fleet:rate:l").await.unwrap();
    assert_eq!(len, 1);
}

/// The key never legitimately holds a time more than one interval ahead: one that does (the
/// server's clock stepped back, as after a failover to a replica whose clock is behind, or
/// a value written by hand, `1e300`) is stale, not a wait of days or a number the script
/// cannot return. The start is allowed and the key holds a sane time again, expiring.
#[tokio::test]
async fn a_time_more_than_one_interval_ahead_is_stale() {
    let redis = TestRedis::start();
    let mut conn = redis.manager().await;
    let layout = Layout::default();
    let two = per_second("2/s");
    let now = server_time(&mut conn).await;
    let ahead = format!("{:.0}", (now + 86_400.0) * 1e6);
    for stale in [ahead.as_str(), "1e300", "inf"] {
        let _: () = conn.set(keys::fleet_rate("t"), stale).await.unwrap();
        let taken = fleet::take(&conn, &layout, "t", two, now).await;
        assert_eq!(taken.unwrap(), None, "{stale}");
        let ttl: i64 = conn.pttl(keys::fleet_rate("t")).await.unwrap();
        assert!((1..=501).contains(&ttl), "{stale}: {ttl}");
    }
}
