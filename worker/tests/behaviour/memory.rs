//! The worker and Redis's memory, in-process against real redis-servers: no claim while Redis
//! refuses writes for lack of memory, a delivery whose write was refused goes back to its queue
//! at once (not after the visibility timeout), and no claim on a Redis that came back with an
//! evicting policy, over RESP2 and RESP3.

use std::time::Duration;

use celery_redis::broker::Broker;
use celery_redis::refusal::refused_for_memory;
use celery_redis::result::{ResultBackend, TaskState};
use futures_util::StreamExt;
use redis::AsyncCommands;
use serde_json::{json, Map};
use testkit::TestRedis;
use worker::worker::{Step, Worker};

use crate::support::{start, WAIT};

fn worker(url: &str) -> Worker {
    crate::support::build(url, &[("WORKER_CONCURRENCY", "2")], "oom@test")
}

async fn queued(redis: &TestRedis) -> i64 {
    redis.manager().await.llen("celery").await.unwrap()
}

#[tokio::test]
async fn no_claim_while_redis_refuses_writes_for_lack_of_memory() {
    let redis = TestRedis::start();
    let mut w = worker(&redis.url());
    let broker = Broker::new(redis.manager().await, "celery", "test@host");
    let msg = celery_redis::protocol::TaskMessage::new("no_such_task", "celery", Map::new());
    broker.publish(&msg).await.unwrap();
    redis.config_set("maxmemory", "1").await;

    for _ in 0..3 {
        let e = w.step().await.unwrap_err();
        assert!(refused_for_memory(&e), "{e}");
    }
    assert_eq!(queued(&redis).await, 1, "the queue keeps the message");
    let unacked: i64 = redis
        .manager()
        .await
        .hlen(celery_redis::keys::UNACKED)
        .await
        .unwrap();
    assert_eq!(unacked, 0, "nothing taken");

    redis.config_set("maxmemory", "0").await;
    assert_eq!(w.step().await.unwrap(), Step::Started(1));
    w.shutdown().await;
}

#[tokio::test]
async fn a_delivery_whose_started_write_is_refused_for_memory_goes_back_at_once() {
    // Results on a Redis of their own, out of memory: the claim works, STARTED is refused.
    let results_redis = TestRedis::start();
    results_redis.config_set("maxmemory", "1").await;
    let results_url = results_redis.url();
    let w = start(&[
        ("RESULT_BACKEND_URL", results_url.as_str()),
        // Far longer than this test may take: nothing may wait for a lease to expire.
        ("VISIBILITY_TIMEOUT_SECS", "600"),
    ])
    .await;
    w._redis.config_set("notify-keyspace-events", "Kl").await;
    let mut events = w._redis.client().get_async_pubsub().await.unwrap();
    events.subscribe("__keyspace@0__:celery").await.unwrap();
    let mut events = events.into_on_message();

    shop::inventory::set_stock(&w.conn, "A", 5).await.unwrap();
    let msg = w
        .send(
            "process_order",
            json!({"order_id": "o-oom", "customer": {"id": "c-1", "email": "ada@example.com"},
                   "items": [{"sku": "A", "quantity": 2, "unit_price_cents": 250}]}),
        )
        .await;
    // Published (LPUSH), then handed back (RPUSH) once its STARTED write was refused.
    let handed_back = async {
        while let Some(event) = events.next().await {
            if event.get_payload::<String>().unwrap() == "rpush" {
                return;
            }
        }
    };
    tokio::time::timeout(WAIT, handed_back)
        .await
        .expect("handed back at once, not after the visibility timeout");

    results_redis.config_set("maxmemory", "0").await;
    let results = ResultBackend::new(
        results_redis.manager().await,
        results_redis.client(),
        Duration::from_secs(60),
        false,
    );
    let done = results.wait(&msg.id, WAIT).await.unwrap();
    assert_eq!(done.status, TaskState::Success, "{done:?}");
    assert_eq!(done.result["status"], "confirmed");
    let stock: i64 = w.conn.clone().get(shop::keys::stock("A")).await.unwrap();
    assert_eq!(stock, 3, "reserved once");
    let stopped = w.stop().await;
    assert_eq!(stopped.unacked, 0);
}

async fn no_claim_after_a_restart_with_an_evicting_policy(url_suffix: &str) {
    let mut redis = TestRedis::start();
    let mut w = worker(&format!("{}{url_suffix}", redis.url()));
    assert_eq!(w.step().await.unwrap(), Step::Idle);

    redis.restart_with(&["--maxmemory-policy", "allkeys-lru"]);
    let broker = Broker::new(redis.manager().await, "celery", "test@host");
    let msg = celery_redis::protocol::TaskMessage::new("no_such_task", "celery", Map::new());
    broker.publish(&msg).await.unwrap();
    // The first step meets the dead connection; the next asks the new server.
    let _ = w.step().await;
    let e = w.step().await.unwrap_err().to_string();
    assert!(e.contains("allkeys-lru") && e.contains("REDIS_URL"), "{e}");
    assert_eq!(queued(&redis).await, 1, "nothing taken");

    redis.config_set("maxmemory-policy", "noeviction").await;
    assert_eq!(w.step().await.unwrap(), Step::Started(1));
    w.shutdown().await;
}

#[tokio::test]
async fn no_claim_on_a_redis_restarted_with_an_evicting_policy() {
    no_claim_after_a_restart_with_an_evicting_policy("").await;
}

#[tokio::test]
async fn no_claim_on_a_redis_restarted_with_an_evicting_policy_over_resp3() {
    no_claim_after_a_restart_with_an_evicting_policy("?protocol=resp3").await;
}
