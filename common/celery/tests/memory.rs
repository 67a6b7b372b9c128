//! Redis and its memory, against a real redis-server: what the broker does while Redis refuses
//! writes for lack of memory (`maxmemory` reached under `noeviction`), restores of a large
//! backlog, and the eviction check of every (re)connection, over RESP2 and RESP3.

use celery_redis::broker::Visibility;
use std::time::Duration;

use celery_redis::broker::{Broker, Claim, Delivery};
use celery_redis::config::RedisConfig;
use celery_redis::conn::{Conn, Waits};
use celery_redis::eviction::Unconfirmed;
use celery_redis::keys;
use celery_redis::protocol::TaskMessage;
use celery_redis::refusal::{nothing_written, refused_for_memory};
use celery_redis::result::{ResultMeta, TaskState};
use celery_redis::stores::Stores;
use redis::AsyncCommands;
use serde_json::{json, Map};
use testkit::{redis::free_port, TestRedis};

mod common;
use common::claim;

fn task() -> TaskMessage {
    TaskMessage::new("process_order", "celery", Map::new())
}

/// Puts Redis out of memory (`maxmemory` far below what it uses) or back.
async fn out_of_memory(conn: &mut Conn, on: bool) {
    let limit = if on { "1" } else { "0" };
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(limit)
        .query_async::<()>(conn)
        .await
        .unwrap();
}

fn waits() -> Waits {
    Waits {
        response: Some(Duration::from_secs(5)),
        connect_retries: 0,
    }
}

fn config(url: &str, allow_eviction: bool) -> RedisConfig {
    let vars = [
        ("REDIS_URL", url.to_owned()),
        ("ALLOW_EVICTION", allow_eviction.to_string()),
    ];
    RedisConfig::from_source(&move |k: &str| {
        vars.iter()
            .find(|(name, _)| *name == k)
            .map(|(_, v)| v.clone())
    })
    .unwrap()
}

#[tokio::test]
async fn a_claim_while_redis_is_out_of_memory_takes_nothing() {
    let redis = TestRedis::start();
    let mut conn = redis.manager().await;
    let broker = Broker::new(conn.clone(), "celery", "test@host");
    broker.publish(&task()).await.unwrap();
    out_of_memory(&mut conn, true).await;

    let e = broker.claim().await.unwrap_err();
    assert!(refused_for_memory(&e), "{e}");
    assert!(nothing_written(&e), "{e}");
    assert_eq!(
        conn.llen::<_, i64>("celery").await.unwrap(),
        1,
        "still queued"
    );
    assert_eq!(conn.hlen::<_, i64>(keys::UNACKED).await.unwrap(), 0);
    assert_eq!(conn.zcard::<_, i64>(keys::UNACKED_INDEX).await.unwrap(), 0);

    out_of_memory(&mut conn, false).await;
    claim(&broker).await;
    assert_eq!(conn.llen::<_, i64>("celery").await.unwrap(), 0);
}

#[tokio::test]
async fn while_redis_is_out_of_memory_a_held_delivery_goes_back_or_ends_but_no_state_is_stored() {
    let redis = TestRedis::start();
    let mut conn = redis.manager().await;
    let broker = Broker::new(conn.clone(), "celery", "test@host");
    let results = redis.results(Duration::from_secs(60)).await;
    let (back, ended) = (task(), task());
    broker.publish(&back).await.unwrap();
    broker.publish(&ended).await.unwrap();
    let first = claim(&broker).await;
    let second = claim(&broker).await;
    out_of_memory(&mut conn, true).await;

    // STARTED (a state that ends nothing) is refused whole: nothing written.
    let e = results
        .store(&ResultMeta::started(&id_of(&first), "w@h"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("OOM"), "{e}");
    assert!(conn
        .get::<_, Option<String>>(keys::task_meta(&id_of(&first)))
        .await
        .unwrap()
        .is_none());

    // The hand-back runs: its first write frees what the message held in `unacked`.
    assert!(broker.requeue(&first).await.unwrap());
    assert_eq!(conn.llen::<_, i64>("celery").await.unwrap(), 1);

    // A task whose effect is done ends: result and ack in one step.
    let success = ResultMeta::success(&id_of(&second), json!(1));
    assert!(broker
        .finish(&results, Some(&second.tag), Some(&success), &[])
        .await
        .unwrap());
    assert_eq!(conn.hlen::<_, i64>(keys::UNACKED).await.unwrap(), 0);
    assert_eq!(
        results.get(&id_of(&second)).await.unwrap().status,
        TaskState::Success
    );
}

fn id_of(d: &Delivery) -> String {
    let v: serde_json::Value = serde_json::from_str(&d.raw).unwrap();
    v["headers"]["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn one_restore_gives_back_a_backlog_of_five_thousand_expired_deliveries() {
    const BACKLOG: usize = 5_000;
    let redis = TestRedis::start();
    let mut conn = redis.manager().await;
    let broker = Broker::new(conn.clone(), "celery", "test@host");
    let msgs: Vec<TaskMessage> = (0..BACKLOG).map(|_| task()).collect();
    broker.publish_many(&msgs).await.unwrap();
    let mut tags = Vec::new();
    while tags.len() < BACKLOG {
        for c in broker.claim_many(500).await.unwrap() {
            match c {
                Claim::Message(d) => tags.push(d.tag),
                other => panic!("{other:?}"),
            }
        }
    }
    // Every lease is long expired (their worker died).
    let aged: Vec<(f64, &str)> = tags.iter().map(|t| (0.0, t.as_str())).collect();
    conn.zadd_multiple::<_, _, _, ()>(keys::UNACKED_INDEX, &aged)
        .await
        .unwrap();

    let restored = broker
        .restore_expired(Visibility::both(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(restored, BACKLOG);
    assert_eq!(conn.llen::<_, usize>("celery").await.unwrap(), BACKLOG);
    assert_eq!(conn.hlen::<_, i64>(keys::UNACKED).await.unwrap(), 0);
    assert!(conn
        .get::<_, Option<String>>(keys::UNACKED_MUTEX)
        .await
        .unwrap()
        .is_none());
}

/// A connection confirmed, its Redis restarted with an evicting policy: the next confirmation
/// asks again and refuses. The connection is found dead by the next call (the ping here; in a
/// worker, whatever it sends next), which makes the manager reconnect.
async fn reconnect_to_an_evicting_redis(url_suffix: &str) {
    let mut redis = TestRedis::start();
    let url = format!("{}{url_suffix}", redis.url());
    let stores = Stores::connect(&config(&url, false), waits()).unwrap();
    stores.check(&config(&url, false)).await.unwrap();
    stores.confirm().await.unwrap();

    redis.restart_with(&["--maxmemory-policy", "allkeys-lru"]);
    let dead = celery_redis::conn::ping(&stores.redis, Duration::from_secs(5)).await;
    assert!(dead.is_err(), "the first call meets the dead connection");
    match stores.confirm().await {
        Err(Unconfirmed::Refused { var, reason }) => {
            assert_eq!(var, "ALLOW_EVICTION");
            assert!(reason.contains("allkeys-lru"), "{reason}");
            assert!(reason.contains("REDIS_URL"), "{reason}");
        }
        other => panic!("{url_suffix}: expected a refusal, got {other:?}"),
    }

    // The policy changes back without a reconnection: asked again until confirmed.
    redis.config_set("maxmemory-policy", "noeviction").await;
    stores.confirm().await.unwrap();
}

#[tokio::test]
async fn a_redis_restarted_with_an_evicting_policy_is_refused_on_reconnection() {
    reconnect_to_an_evicting_redis("").await;
}

#[tokio::test]
async fn over_resp3_too_a_reconnection_is_checked() {
    reconnect_to_an_evicting_redis("?protocol=resp3").await;
}

#[tokio::test]
async fn the_start_up_check_refuses_an_evicting_redis_over_resp3() {
    let redis = TestRedis::start_with(&["--maxmemory-policy", "volatile-lru"]);
    let url = format!("{}?protocol=resp3", redis.url());
    let stores = Stores::connect(&config(&url, false), waits()).unwrap();
    let e = stores.check(&config(&url, false)).await.unwrap_err();
    assert_eq!(e.var, "ALLOW_EVICTION");
    assert!(e.reason.contains("volatile-lru"), "{}", e.reason);

    let allowed = Stores::connect(&config(&url, true), waits()).unwrap();
    allowed.check(&config(&url, true)).await.unwrap();
    allowed.confirm().await.unwrap();
}

#[tokio::test]
async fn a_redis_down_at_start_is_not_trusted_until_it_answers_with_its_policy() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}/0");
    let stores = Stores::connect(&config(&url, false), waits()).unwrap();
    // Down at start: the process starts (no configuration error) but takes no work.
    stores.check(&config(&url, false)).await.unwrap();
    assert!(matches!(
        stores.confirm().await,
        Err(Unconfirmed::Unasked { .. })
    ));

    let port_arg = port.to_string();
    let _redis =
        TestRedis::start_with(&["--port", &port_arg, "--maxmemory-policy", "allkeys-random"]);
    let e = stores.confirm().await.unwrap_err().to_string();
    assert!(e.contains("allkeys-random"), "{e}");
}
