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
    let id = order.order_id.as_str();
    let note = SendNotification {
        notification_id: notification::confirmation_id(id),
        recipient: order.customer.email.clone(),
        channel: Channel::Log,
        subject: ["Order ", id, " confirmed"].concat(),
        body: confirmation_body(id, order.items.len(), total_cents),
        url: None,
    };
    let mut msg = ctx.child(SendNotification::NAME, note.to_kwargs());
    let name = [ctx.id(), "/confirmation"].concat();
    msg.id = Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes()).to_string();
    msg
}

/// `Your order <id> of <n> item(s) is confirmed. Total: <units>.<cents>`, as
/// `format!("... {}.{:02}", total / 100, total % 100)` writes it, without the formatting
/// machinery (three `format!`s were a quarter of the confirmation's instructions).
fn confirmation_body(order_id: &str, items: usize, total_cents: i64) -> String {
    let mut n = itoa::Buffer::new();
    let mut body = String::with_capacity(order_id.len().saturating_add(80));
    body.push_str("Your order ");
    body.push_str(order_id);
    body.push_str(" of ");
    body.push_str(n.format(items));
    body.push_str(" item(s) is confirmed. Total: ");
    body.push_str(n.format(total_cents / 100));
    body.push('.');
    let cents = total_cents % 100;
    if (0..10).contains(&cents) {
        body.push('0');
    }
    body.push_str(n.format(cents));
    body
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_confirmation_body_is_what_format_wrote() {
        let totals = [
            i64::MIN,
            i64::MIN + 1,
            -10_001,
            -1_000,
            -199,
            -100,
            -99,
            -15,
            -10,
            -9,
            -1,
            0,
            1,
            5,
            9,
            10,
            15,
            99,
            100,
            101,
            105,
            110,
            12_345,
            1_000_000,
            i64::MAX - 1,
            i64::MAX,
        ];
        for total in totals {
            for (id, items) in [("o-1", 0), ("ünï", 1), ("order-123", usize::MAX)] {
                let expected = format!(
                    "Your order {} of {} item(s) is confirmed. Total: {}.{:02}",
                    id,
                    items,
                    total / 100,
                    total % 100
                );
                assert_eq!(super::confirmation_body(id, items, total), expected);
            }
        }
    }
}
