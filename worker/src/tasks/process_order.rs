//! `process_order`: total the order, reserve its stock once, and notify the customer when confirmed.

use celery_redis::protocol::{Body, TaskMessage};
use shop::contracts::{
    notification, Channel, Contract, OrderOutcome, OrderStatus, ProcessOrder, SendNotification,
};
use shop::inventory;
use uuid::Uuid;

use super::{Output, Request, TaskError};
use crate::context::Context;

pub async fn run(ctx: &Context, req: &Request, body: &Body) -> Result<Output, TaskError> {
    let order = ProcessOrder::from_call(&body.args, &body.kwargs)?;
    // Validation has already refused orders whose total overflows.
    let total_cents = order.total_cents().unwrap_or(i64::MAX);
    // The reservation is the order's effect: once asked for, the order runs to its end (its
    // result and the confirmation), whatever terminate or time limit comes meanwhile.
    req.commit()?;
    let reservation =
        inventory::reserve(&ctx.redis, &order.order_id, &order.items, ctx.retention).await?;
    let outcome = OrderOutcome {
        order_id: order.order_id.clone(),
        status: reservation.status,
        total_cents,
        reason: reservation.reason,
    };
    let mut children = Vec::new();
    if outcome.status == OrderStatus::Confirmed {
        children.push(confirmation(ctx, req, &order, total_cents));
    }
    let value = serde_json::to_value(&outcome).map_err(|e| TaskError::Transient(e.to_string()))?;
    Ok(Output { value, children })
}

/// The customer's confirmation, sent as a chained task (parent and root set as Celery does) in
/// the order's trace. Its ids derive from the order task's id, so a redelivered order sends the
/// same notification.
fn confirmation(
    ctx: &Context,
    req: &Request,
    order: &ProcessOrder,
    total_cents: i64,
) -> TaskMessage {
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
    let mut msg = TaskMessage::new(
        SendNotification::NAME,
        ctx.broker.route(SendNotification::NAME),
        note.to_kwargs(),
    )
    .child_of(&req.id, &req.root_id);
    msg.id = Uuid::new_v5(
        &Uuid::NAMESPACE_OID,
        format!("{}/confirmation", req.id).as_bytes(),
    )
    .to_string();
    crate::canvas::traced(msg)
}
