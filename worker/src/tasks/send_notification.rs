//! `send_notification`: deliver once per notification id, through the log or a webhook.

use celery_redis::clock;
use celery_redis::protocol::Body;
use celery_redis::result::ExceptionInfo;
use serde_json::{json, Value};
use shop::contracts::{Channel, Contract, SendNotification};
use shop::notifications::{self, Delivery};

use super::{Output, Request, TaskError};
use crate::context::Context;

pub async fn run(ctx: &Context, req: &Request, body: &Body) -> Result<Output, TaskError> {
    let n = SendNotification::from_call(&body.args, &body.kwargs)?;
    if let Some(done) = notifications::delivery(&ctx.redis, &n.notification_id).await? {
        log::info!(
            "notification {} was delivered before; not sending again",
            n.notification_id
        );
        return Ok(output(&done, false));
    }
    if n.channel == Channel::Webhook {
        let url = n.url.as_deref().unwrap_or_default();
        let payload = json!({
            "notification_id": n.notification_id, "recipient": n.recipient,
            "subject": n.subject, "body": n.body,
        });
        ctx.webhooks
            .post(url, &n.notification_id, &payload)
            .await
            .map_err(|e| {
                let exc = ExceptionInfo::new("builtins", "RuntimeError", e.to_string());
                if e.is_transient() {
                    TaskError::Retry(exc)
                } else {
                    TaskError::Failed(exc)
                }
            })?;
    }
    // Delivered (or logged): from here it is recorded and the task ends normally. A terminate
    // during the POST cuts it; the receiver may have had it, and the `Idempotency-Key` lets it
    // drop the next attempt of the same notification.
    req.commit()?;
    let delivery = Delivery {
        notification_id: n.notification_id,
        recipient: n.recipient,
        channel: n.channel,
        subject: n.subject,
        body: n.body,
        url: n.url,
        task_id: req.id.clone(),
        delivered_at: clock::now_iso(),
    };
    let first = notifications::record(&ctx.redis, &delivery, ctx.retention).await?;
    Ok(output(&delivery, first))
}

/// Whether the call asks for the webhook channel, read from its arguments without validating
/// them (the run does): what [`super::admit`] needs before the task starts.
pub fn posts_webhook(body: &Body) -> bool {
    let position = SendNotification::PARAMS
        .iter()
        .position(|p| *p == "channel");
    let channel = body
        .kwargs
        .get("channel")
        .or_else(|| position.and_then(|i| body.args.get(i)));
    channel.and_then(Value::as_str) == Some("webhook")
}

fn output(d: &Delivery, first: bool) -> Output {
    Output {
        value: json!({
            "notification_id": d.notification_id, "status": "delivered", "channel": d.channel,
            "delivered_at": d.delivered_at, "duplicate": !first,
        }),
        children: Vec::new(),
    }
}
