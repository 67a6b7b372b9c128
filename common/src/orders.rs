//! Orders as the order service sees them: accepted once per order id, read back by id.

use redis::aio::ConnectionManager;
use redis::{AsyncCommands, RedisResult};

use crate::keys;
use crate::protocol::TaskMessage;
use crate::queue::Broker;
use crate::tasks::{Contract, ProcessOrder};

/// Enqueues `process_order` for this order unless the order id was accepted before. Returns
/// the task id that processes the order, and whether this call enqueued it.
pub async fn submit(broker: &Broker, order: &ProcessOrder) -> RedisResult<(String, bool)> {
    let msg = TaskMessage::new(ProcessOrder::NAME, broker.queue(), order.to_kwargs());
    let owner = broker
        .publish_once(&keys::order_task(&order.order_id), &msg)
        .await?;
    let created = owner == msg.id;
    Ok((owner, created))
}

/// The task that processes an order, if the order was ever accepted.
pub async fn task_of(conn: &ConnectionManager, order_id: &str) -> RedisResult<Option<String>> {
    conn.clone().get(keys::order_task(order_id)).await
}
