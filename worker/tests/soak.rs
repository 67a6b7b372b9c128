//! Soak: 100,000 orders through the real worker with a short retention; Redis's memory must
//! level off instead of growing with every order (idempotency keys, reservations, results,
//! delivery records and recipient lists all expire). Ignored by the plain test command (about
//! a minute); CI runs it: `cargo test -p worker --test soak -- --ignored --nocapture`.

use std::time::Duration;

use celery_redis::broker::{Broker, Submitted};
use futures_util::StreamExt;
use serde_json::json;
use shop::contracts::{Contract, ProcessOrder};
use testkit::Stack;

const ROUNDS: usize = 10;
const PER_ROUND: usize = 10_000;
const RETENTION_SECS: &str = "2";

async fn used_memory(conn: &mut celery_redis::conn::Conn) -> u64 {
    testkit::info_number(conn, "memory", "used_memory").await
}

#[tokio::test]
#[ignore = "a soak of 100,000 orders (about a minute); CI runs it"]
async fn memory_levels_off_over_100000_orders_with_a_short_retention() {
    let stack = Stack::new(env!("CARGO_BIN_EXE_worker"));
    let redis = &stack.redis;
    let mut conn = redis.manager().await;
    shop::inventory::set_stock(&conn, "A", 1_000_000_000_000)
        .await
        .unwrap();
    let env = [
        ("WORKER_CONCURRENCY", "64".to_owned()),
        ("WORKER_TRACK_STARTED", "false".to_owned()),
        ("RESULT_EXPIRES_SECS", RETENTION_SECS.to_owned()),
        ("RETENTION_SECS", RETENTION_SECS.to_owned()),
        ("RUST_LOG", "warn,worker::worker=info".to_owned()),
    ];
    let _worker = stack.worker(&env);
    let broker =
        Broker::new(conn.clone(), "celery", "soak@test").with_retention(Duration::from_secs(2));
    // Every order ends in two SUCCESS results (the order's and its confirmation's).
    let mut pubsub = redis.client().get_async_pubsub().await.unwrap();
    pubsub.psubscribe("celery-task-meta-*").await.unwrap();
    let mut results = pubsub.into_on_message();

    let mut samples = Vec::new();
    for round in 0..ROUNDS {
        let orders: Vec<ProcessOrder> = (0..PER_ROUND)
            .map(|i| {
                ProcessOrder::from_kwargs(
                    json!({"order_id": format!("soak-{round}-{i}"),
                           "customer": {"id": "c-1", "email": format!("c{}@example.com", i % 50)},
                           "items": [{"sku": "A", "quantity": 1, "unit_price_cents": 100}]})
                    .as_object()
                    .unwrap(),
                )
                .unwrap()
            })
            .collect();
        for chunk in orders.chunks(500) {
            let sent = futures_util::future::join_all(
                chunk.iter().map(|o| shop::submission::submit(&broker, o)),
            )
            .await;
            for s in sent {
                assert!(matches!(s.unwrap(), Submitted::Created(_)));
            }
        }
        let mut done = 0;
        while done < 2 * PER_ROUND {
            let msg = tokio::time::timeout(Duration::from_secs(60), results.next())
                .await
                .expect("results keep coming")
                .expect("pub/sub open");
            if msg
                .get_payload_bytes()
                .starts_with(br#"{"status":"SUCCESS""#)
            {
                done += 1;
            }
        }
        let memory = used_memory(&mut conn).await;
        let keys: u64 = redis::cmd("DBSIZE").query_async(&mut conn).await.unwrap();
        eprintln!(
            "soak round={} orders={} used_memory={} keys={}",
            round + 1,
            (round + 1) * PER_ROUND,
            memory,
            keys
        );
        samples.push((memory, keys));
    }
    // Levelled off: the last rounds use no more than half again what the middle rounds used,
    // and far fewer keys than the ~500,000 the run wrote.
    let middle = samples[2..5].iter().map(|s| s.0).max().unwrap();
    let last = samples[ROUNDS - 1].0;
    assert!(
        last <= middle + middle / 2,
        "used_memory grew from {middle} to {last}: {samples:?}"
    );
    assert!(samples[ROUNDS - 1].1 < 200_000, "keys pile up: {samples:?}");
}
