//! TODO

use crate::support::Running;
use celery_redis::result::TaskState;
use redis::AsyncCommands;
use serde_json::{json, Map, Value};

pub fn small_order(order_id: &str) -> Map<String, Value> {
    json!({"order_id": order_id, "customer": {"id": "c-1", "email": "ada@example.com"},
           "items": [{"sku": "A", "quantity": 1, "unit_price_cents": 250}]})
    .as_object()
    .cloned()
    .unwrap_or_default()
}

pub async fn push_raw(w: &Running, raw: &str) {
    w.conn
        .clone()
        .lpush::<_, _, ()>("celery", raw)
        .await
        .unwrap();
}

/// Orders sent after the attack still run: the queue and `unacked` are intact.
pub async fn later_orders_still_run(w: &Running) {
    w.conn
        .clone()
        .set::<_, _, ()>(shop::keys::stock("A"), 100)
        .await
        .unwrap();
    for i in 0..3 {
        let msg = w
            .send("process_order", json!(small_order(&format!("later-{i}"))))
            .await;
        assert_eq!(w.result(&msg.id).await.status, TaskState::Success);
    }
}
