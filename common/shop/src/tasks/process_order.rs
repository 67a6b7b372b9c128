//! `process_order`: total the order, reserve its stock once, and notify the customer when confirmed.

use celery_redis::conn::Conn;
use celery_redis::task::{Task, TaskContext, TaskError};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::Retention;
use crate::contracts::{
    notification, Channel, Contract, OrderOutcome, OrderStatus, ProcessOrder, SendNotification,
};
use crate::inventory::Inventory;

/// The `process_order` task.
pub struct ProcessOrderTask;

impl Task for ProcessOrderTask {
    const NAME: &'static str = ProcessOrder::NAME;
    const PARAMS: &'static [&'static str] = ProcessOrder::PARAMS;
    type Args = ProcessOrder;
    type Output = OrderOutcome;

    fn decode(args: &[Value], kwargs: &Map<String, Value>) -> Result<ProcessOrder, TaskError> {
        Ok(ProcessOrder::from_call(args, kwargs)?)
    }

    async fn run(ctx: &TaskContext<'_>, order: ProcessOrder) -> Result<OrderOutcome, TaskError> {
        let (redis, inventory) = (ctx.dep::<Conn>()?, ctx.dep::<Inventory>()?);
        let retention = ctx.dep::<Retention>()?.0;
        // Validation has already refused orders whose total overflows.
        let total_cents = order.total_cents().unwrap_or(i64::MAX);
        // The reservation is the order's effect: once asked for, the order runs to its end (its
        // result and the confirmation), whatever terminate or time limit comes meanwhile.
        ctx.commit()?;
        let reservation = inventory
            .reserve(redis, &order.order_id, &order.items, retention)
            .await?;
        let outcome = OrderOutcome {
            order_id: order.order_id.clone(),
            status: reservation.status,
            total_cents,
            reason: reservation.reason,
        };
        if outcome.status == OrderStatus::Confirmed {
            ctx.send(confirmation(ctx, &order, total_cents));
        }
        Ok(outcome)
    }
}

/// The customer's confirmation, sent as a chained task (parent and root set as Celery does) in
/// the order's trace. Its ids derive from the order task's id, so a redelivered order sends the
/// same notification.
fn confirmation(
    ctx: &TaskContext<'_>,
    order: &ProcessOrder,
    total_cents: i64,
) -> celery_redis::protocol::TaskMessage {
    let note = SendNotification {
        notification_id: notification::confirmation_id(&order.order_id),
        recipient: order.customer.email.clone(),
        channel: Channel::Log,
        subject: format!("Order {} confirmed", order.order_id),
        body: format!(
            "Your order {} of {} item(s) is confirmed. Total: {}.{:02}",
            order.order_id,
            order.items.len(),
            total_cents / 100,
            total_cents % 100
        ),
        url: None,
    };
    let mut msg = ctx.child(SendNotification::NAME, note.to_kwargs());
    let name = [ctx.id(), "/confirmation"].concat();
    msg.id = Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes()).to_string();
    msg
}
