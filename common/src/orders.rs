//! Orders as the order service sees them: accepted once per order id, read back by id.

use redis::aio::ConnectionManager;
use redis::{AsyncCommands, RedisResult};

use crate::keys;
use crate::protocol::TaskMessage;
use crate::queue::{Broker, Submitted};
use crate::tasks::{Contract, ProcessOrder};

/// Enqueues `process_order` for this order unless the order id was accepted before or the
/// queue is full.
pub async fn submit(broker: &Broker, order: &ProcessOrder) -> RedisResult<Submitted> {
    let msg = TaskMessage::new(ProcessOrder::NAME, broker.queue(), order.to_kwargs());
    broker
        .publish_once(&keys::order_task(&order.order_id), &msg)
        .await
}

/// The task that processes an order, if the order was ever accepted.
pub async fn task_of(conn: &ConnectionManager, order_id: &str) -> RedisResult<Option<String>> {
    conn.clone().get(keys::order_task(order_id)).await
}
