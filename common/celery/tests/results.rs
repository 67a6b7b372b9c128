//! The result backend against a real redis-server: Celery's key, TTL, PUBLISH, the SUCCESS
//! guard, and a wait that subscribes before it reads.

use std::time::Duration;

use celery_redis::broker::{Broker, Claim};
use celery_redis::keys;
use celery_redis::protocol::{Envelope, TaskMessage};
use celery_redis::result::{ExceptionInfo, ResultError, ResultMeta, TaskState};
use futures_util::StreamExt;
use redis::AsyncCommands;
use serde_json::{json, Map, Value};
use testkit::TestRedis;

/// Resolves once somebody is subscribed to `channel` (the event a publisher needs to wait for).
async fn subscribed(conn: &mut celery_redis::conn::Conn, channel: &str) {
    loop {
        let (_, n): (String, i64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(channel)
            .query_async(conn)
            .await
            .unwrap();
        if n > 0 {
            return;
        }
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn store_writes_celerys_key_with_ttl_and_publishes_the_same_json() {
    let redis = TestRedis::start();
    let results = redis.results(Duration::from_secs(86_400)).await;
    let mut pubsub = redis.client().get_async_pubsub().await.unwrap();
    pubsub.subscribe(keys::task_meta("t-1")).await.unwrap();

    let meta =
        ResultMeta::success("t-1", json!({"total_cents": 750})).with_request(Some("p-1"), None);
    assert!(results.store(&meta).await.unwrap());

    let mut conn = redis.manager().await;
    let stored: String = conn.get(keys::task_meta("t-1")).await.unwrap();
    let ttl: i64 = conn.ttl(keys::task_meta("t-1")).await.unwrap();
    assert!((86_390..=86_400).contains(&ttl), "ttl {ttl}");
    let published: String = pubsub
        .on_message()
        .next()
        .await
        .unwrap()
        .get_payload()
        .unwrap();
    assert_eq!(published, stored);
    let v: Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(v["status"], "SUCCESS");
    assert_eq!(v["task_id"], "t-1");
    assert_eq!(v["parent_id"], "p-1");
    assert_eq!(v["children"], json!([]));
}

#[tokio::test]
async fn zero_expiry_keeps_results_forever() {
    let redis = TestRedis::start();
    let results = redis.results(Duration::from_secs(0)).await;
    results
        .store(&ResultMeta::success("t", json!(1)))
        .await
        .unwrap();
    let ttl: i64 = redis
        .manager()
        .await
        .ttl(keys::task_meta("t"))
        .await
        .unwrap();
    assert_eq!(ttl, -1);
}

#[tokio::test]
async fn a_success_is_never_overwritten() {
    let redis = TestRedis::start();
    let results = redis.results(Duration::from_secs(60)).await;
    assert!(results
        .store(&ResultMeta::started("t", "node"))
        .await
        .unwrap());
    assert!(results
        .store(&ResultMeta::success("t", json!("first")))
        .await
        .unwrap());
    let exc = ExceptionInfo::new("builtins", "ValueError", "late");
    assert!(!results
        .store(&ResultMeta::failure("t", &exc, None))
        .await
        .unwrap());
    assert!(!results
        .store(&ResultMeta::started("t", "node"))
        .await
        .unwrap());
    let meta = results.get("t").await.unwrap();
    assert_eq!(
        (meta.status, meta.result),
        (TaskState::Success, json!("first"))
    );
}

#[tokio::test]
async fn finish_publishes_stores_and_acks_in_one_step_and_only_once() {
    let redis = TestRedis::start();
    let mut conn = redis.manager().await;
    let results = redis.results(Duration::from_secs(60)).await;
    let broker = Broker::new(conn.clone(), "celery", "test@host");
    let held = |broker: Broker| async move {
        match broker.claim().await.unwrap() {
            Some(Claim::Message(d)) => d,
            other => panic!("expected a message, got {other:?}"),
        }
    };
    let child = TaskMessage::new("send_notification", "celery", Map::new());

    broker
        .publish(&TaskMessage::new("process_order", "celery", Map::new()))
        .await
        .unwrap();
    let first = held(broker.clone()).await;
    let meta = ResultMeta::success("t", json!(1)).with_children(std::slice::from_ref(&child.id));
    assert!(broker
        .finish(
            &results,
            Some(&first.tag),
            Some(&meta),
            std::slice::from_ref(&child)
        )
        .await
        .unwrap());
    assert_eq!(results.get("t").await.unwrap().status, TaskState::Success);
    assert_eq!(
        conn.hlen::<_, i64>(keys::UNACKED).await.unwrap(),
        0,
        "acked"
    );
    let queued: Vec<String> = conn.lrange("celery", 0, -1).await.unwrap();
    let ids: Vec<String> = queued
        .iter()
        .map(|raw| Envelope::from_json(raw.as_bytes()).unwrap().headers.id)
        .collect();
    assert_eq!(ids, vec![child.id.clone()]);

    // The same task delivered again (say its lease was lost): the SUCCESS stands, the child is
    // not sent a second time, and this delivery is acked too.
    conn.del::<_, ()>("celery").await.unwrap();
    broker
        .publish(&TaskMessage::new("process_order", "celery", Map::new()))
        .await
        .unwrap();
    let again = held(broker.clone()).await;
    let meta = ResultMeta::success("t", json!(2)).with_children(std::slice::from_ref(&child.id));
    assert!(!broker
        .finish(&results, Some(&again.tag), Some(&meta), &[child])
        .await
        .unwrap());
    assert_eq!(results.get("t").await.unwrap().result, json!(1));
    assert_eq!(conn.llen::<_, i64>("celery").await.unwrap(), 0);
    assert_eq!(conn.hlen::<_, i64>(keys::UNACKED).await.unwrap(), 0);
}

#[tokio::test]
async fn unknown_ids_read_as_pending() {
    let redis = TestRedis::start();
    let meta = redis
        .results(Duration::from_secs(60))
        .await
        .get("nobody")
        .await
        .unwrap();
    assert_eq!(meta.status, TaskState::Pending);
}

#[tokio::test]
async fn wait_sees_a_result_stored_after_it_subscribed() {
    let redis = TestRedis::start();
    let results = redis.results(Duration::from_secs(60)).await;
    let waiter = {
        let results = results.clone();
        tokio::spawn(async move { results.wait("t-2", Duration::from_secs(20)).await })
    };
    let mut conn = redis.manager().await;
    subscribed(&mut conn, &keys::task_meta("t-2")).await;
    // A non-ready state first: the wait keeps waiting through it.
    results
        .store(&ResultMeta::started("t-2", "n"))
        .await
        .unwrap();
    results
        .store(&ResultMeta::success("t-2", json!({"ok": true})))
        .await
        .unwrap();
    let meta = waiter.await.unwrap().unwrap();
    assert_eq!(meta.status, TaskState::Success);
    assert_eq!(meta.result, json!({"ok": true}));
}

#[tokio::test]
async fn wait_returns_at_once_when_the_result_is_already_there() {
    let redis = TestRedis::start();
    let results = redis.results(Duration::from_secs(60)).await;
    let exc = ExceptionInfo::new("builtins", "ValueError", "bad");
    results
        .store(&ResultMeta::failure("t-3", &exc, None))
        .await
        .unwrap();
    let meta = results.wait("t-3", Duration::from_secs(20)).await.unwrap();
    assert_eq!(meta.exception().unwrap(), exc);
}

#[tokio::test]
async fn wait_times_out_without_a_ready_state() {
    let redis = TestRedis::start();
    let err = redis
        .results(Duration::from_secs(60))
        .await
        .wait("never", Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(matches!(err, ResultError::Timeout(_)));
}

#[tokio::test]
async fn compressed_values_are_reported_not_misread() {
    let redis = TestRedis::start();
    let mut conn = redis.manager().await;
    let value = b"\x00celery-compressed\x00application/x-gzip\x00xyz".to_vec();
    conn.set::<_, _, ()>(keys::task_meta("z"), value)
        .await
        .unwrap();
    let err = redis
        .results(Duration::from_secs(60))
        .await
        .get("z")
        .await
        .unwrap_err();
    assert!(matches!(err, ResultError::Compressed));
}

/// The most memory the server process has held so far (`VmHWM`, in KiB).
fn peak_kib(redis: &TestRedis) -> i64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", redis.pid())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

// Issue 19, item 11: a revoke stores REVOKED for the ids that run nowhere, up to a thousand per
// request; the script read each stored result whole and decoded it, so one big result (any
// producer can write one) cost Redis many times its size in Lua memory (a list of numbers
// decodes into a table of 16 bytes per element, outside `maxmemory`) and its decoding time.
// It reads the state from the head of the value now, and leaves alone what it cannot read.
#[tokio::test]
async fn revoke_unstarted_writes_only_where_nothing_started_reading_a_results_head_only() {
    let redis = TestRedis::start();
    let results = redis.results(Duration::from_secs(3600)).await;
    let mut conn = redis.manager().await;
    // 8 MB of `0,`: 4 million elements.
    let big = format!(
        r#"{{"status": "PENDING", "result": [{}0]}}"#,
        "0,".repeat(4 << 20)
    );
    for (id, value) in [
        (
            "pending",
            r#"{"status": "PENDING", "result": null}"#.to_owned(),
        ),
        ("retry", r#"{"status":"RETRY","result":null}"#.to_owned()),
        (
            "started",
            r#"{"status": "STARTED", "result": {"pid": 1}}"#.to_owned(),
        ),
        ("success", r#"{"status":"SUCCESS","result":1}"#.to_owned()),
        ("junk", "not json".to_owned()),
        ("big", big),
    ] {
        let _: () = conn.set(keys::task_meta(id), value).await.unwrap();
    }
    let _: () = conn.lpush(keys::task_meta("list"), "x").await.unwrap();
    let before = peak_kib(&redis);
    let ids = [
        "missing", "pending", "retry", "started", "success", "junk", "list", "big",
    ];
    let written = results.revoke_unstarted(&ids).await.unwrap();
    let grew = peak_kib(&redis) - before;
    assert_eq!(
        written, 4,
        "missing, pending, retry and big are stored REVOKED"
    );
    for (id, state) in [
        ("missing", TaskState::Revoked),
        ("pending", TaskState::Revoked),
        ("retry", TaskState::Revoked),
        ("big", TaskState::Revoked),
        ("started", TaskState::Started),
        ("success", TaskState::Success),
    ] {
        assert_eq!(results.get(id).await.unwrap().status, state, "{id}");
    }
    let junk: String = conn.get(keys::task_meta("junk")).await.unwrap();
    assert_eq!(junk, "not json");
    assert!(
        grew < 16 << 10,
        "the server's peak memory grew by {grew} KiB reading an 8 MB result"
    );
}
