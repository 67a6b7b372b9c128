//! What one message may cost the worker, against the worker in-process: messages that decode
//! into too much are dead-lettered (a bounded entry) with a FAILURE, and a message restores
//! keep giving back (its workers died) is dead-lettered after `MESSAGE_MAX_DELIVERIES`.
//! The same bombs against a real worker under a memory cap: `faults.rs`.

use celery_redis::broker::Visibility;
use std::time::Duration;

use crate::support::raw::push_raw;
use crate::support::shop::small_order;
use crate::support::{start, start_on, Running};
use celery_redis::broker::dead::DEAD_RAW_KEEP;
use celery_redis::broker::{Broker, Claim};
use celery_redis::keys;
use celery_redis::protocol::TaskMessage;
use celery_redis::result::TaskState;
use redis::AsyncCommands;
use serde_json::json;
use testkit::TestRedis;

/// The FAILURE message stored for `id`.
async fn failure(w: &Running, id: &str) -> String {
    let meta = w.result(id).await;
    assert_eq!(meta.status, TaskState::Failure, "{id}");
    meta.exception().unwrap().message()
}

#[tokio::test]
async fn messages_that_decode_into_too_much_are_dead_lettered_bounded_with_a_failure() {
    let w = start(&[]).await;
    w.conn
        .clone()
        .set::<_, _, ()>(shop::keys::stock("A"), 10)
        .await
        .unwrap();
    let bomb = crate::bombs::zlib_bomb("zlib-bomb");
    let values = crate::bombs::plain_zeros("values-bomb", 900 * 1024);
    let large = crate::bombs::plain_zeros("too-large", 2 * 1024 * 1024);
    for raw in [&bomb, &values, &large] {
        push_raw(&w, raw).await;
    }
    assert_eq!(
        failure(&w, "zlib-bomb").await,
        "decompressed body is larger than 1048576 bytes"
    );
    assert_eq!(
        failure(&w, "values-bomb").await,
        "body holds more than 65536 JSON values"
    );
    let reason = failure(&w, "too-large").await;
    assert!(
        reason.starts_with("message is larger than 1048576 bytes"),
        "{reason}"
    );
    let ok = w
        .send("process_order", json!(small_order("after-the-bombs")))
        .await;
    assert_eq!(w.result(&ok.id).await.status, TaskState::Success);
    let broker = w.broker.clone();
    let stopped = w.stop().await;
    stopped.all_acknowledged();
    let dead = broker.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 3);
    for (id, raw) in [
        ("too-large", &large),
        ("values-bomb", &values),
        ("zlib-bomb", &bomb),
    ] {
        let entry = dead.iter().find(|d| d.task_id.as_deref() == Some(id));
        let entry = entry.unwrap_or_else(|| panic!("no dead letter for {id}"));
        assert_eq!(entry.raw.len(), DEAD_RAW_KEEP, "{}", entry.reason);
        assert!(raw.starts_with(&entry.raw));
        assert_eq!(entry.raw_bytes, Some(raw.len() as u64));
        assert_eq!(entry.queue.as_deref(), Some("celery"));
    }
}

#[tokio::test]
async fn a_message_restored_past_its_limit_is_dead_lettered_with_a_failure_and_can_be_requeued() {
    let redis = TestRedis::start();
    let mut conn = redis.manager().await;
    shop::inventory::set_stock(&conn, "A", 10).await.unwrap();
    // Three workers took it in turn and died holding it (their leases lapsed, a restore gave it
    // back each time), before this worker starts.
    let dying = Broker::new(conn.clone(), "celery", "dying@host");
    let msg = TaskMessage::new("process_order", "celery", small_order("doomed"));
    dying.publish(&msg).await.unwrap();
    for delivery in 1..=3 {
        let Some(Claim::Message(d)) = dying.claim().await.unwrap() else {
            panic!("expected the message");
        };
        assert_eq!(d.deliveries, delivery);
        conn.zadd::<_, _, _, ()>(keys::UNACKED_INDEX, &d.tag, 1.0)
            .await
            .unwrap();
        let restored = dying
            .restore_expired(Visibility::both(Duration::from_secs(1)))
            .await;
        assert_eq!(restored.unwrap(), 1);
    }
    let url = redis.url();
    let w = start_on(redis, &url, &[("MESSAGE_MAX_DELIVERIES", "3")]).await;
    assert_eq!(
        failure(&w, &msg.id).await,
        "delivered 4 times without finishing (at most 3): each worker that took it died or lost its lease"
    );
    let meta = w.result(&msg.id).await;
    assert_eq!(meta.exception().unwrap().exc_type, "WorkerLostError");
    let dead = w.broker.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].task_id.as_deref(), Some(msg.id.as_str()));
    assert_eq!(dead[0].raw_bytes, None, "kept whole, so it can be requeued");
    let stock: i64 = conn.get(shop::keys::stock("A")).await.unwrap();
    assert_eq!(stock, 10, "it never ran");
    // Requeued by an operator, it starts counting again: it runs.
    assert_eq!(w.broker.requeue_dead(0).await.unwrap(), 1);
    let success = |s: &TaskState| *s == TaskState::Success;
    w.results
        .wait_for(&msg.id, crate::support::WAIT, success)
        .await
        .unwrap();
    w.stop().await.all_acknowledged();
}
