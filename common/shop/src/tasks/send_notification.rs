//! `send_notification`: deliver once per notification id, through the log or a webhook.

use std::time::Duration;

use celery_redis::clock;
use celery_redis::conn::Conn;
use celery_redis::result::ExceptionInfo;
use celery_redis::task::{Deps, Place, Task, TaskContext, TaskError};
use serde_json::{json, Map, Value};

use super::Retention;
use crate::contracts::{Channel, Contract, SendNotification};
use crate::notifications::{self, Delivery};
use crate::webhook::Webhooks;

/// The `send_notification` task.
pub struct SendNotificationTask;

impl Task for SendNotificationTask {
    const NAME: &'static str = SendNotification::NAME;
    const PARAMS: &'static [&'static str] = SendNotification::PARAMS;
    type Args = SendNotification;
    type Output = Value;

    fn decode(args: &[Value], kwargs: &Map<String, Value>) -> Result<SendNotification, TaskError> {
        Ok(SendNotification::from_call(args, kwargs)?)
    }

    /// A webhook notification holds one of the `WEBHOOK_CONCURRENCY` places until it ends;
    /// when none is free it waits in the schedule, not in a slot.
    fn admit(deps: &Deps, args: &[Value], kwargs: &Map<String, Value>) -> Result<Place, Duration> {
        match deps.get::<Webhooks>() {
            Some(hooks) if posts_webhook(args, kwargs) => match hooks.place() {
                Some(place) => Ok(Some(Box::new(place))),
                None => Err(hooks.busy_delay()),
            },
            _ => Ok(None),
        }
    }

    async fn run(ctx: &TaskContext<'_>, n: SendNotification) -> Result<Value, TaskError> {
        let redis = ctx.dep::<Conn>()?;
        if let Some(done) = notifications::delivery(redis, &n.notification_id).await? {
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
            ctx.dep::<Webhooks>()?
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
        ctx.commit()?;
        let delivery = Delivery {
            notification_id: n.notification_id,
            recipient: n.recipient,
            channel: n.channel,
            subject: n.subject,
            body: n.body,
            url: n.url,
            task_id: ctx.id().to_owned(),
            delivered_at: clock::now_iso(),
        };
        let first = notifications::record(redis, &delivery, ctx.dep::<Retention>()?.0).await?;
        Ok(output(&delivery, first))
    }
}

/// Whether the call asks for the webhook channel, read from its arguments without validating
/// them (the run does): what [`SendNotificationTask::admit`] needs before the task starts.
pub fn posts_webhook(args: &[Value], kwargs: &Map<String, Value>) -> bool {
    let position = SendNotification::PARAMS
        .iter()
        .position(|p| *p == "channel");
    let channel = kwargs
        .get("channel")
        .or_else(|| position.and_then(|i| args.get(i)));
    channel.and_then(Value::as_str) == Some("webhook")
}

fn output(d: &Delivery, first: bool) -> Value {
    json!({
        "notification_id": d.notification_id, "status": "delivered", "channel": d.channel,
        "delivered_at": d.delivered_at, "duplicate": !first,
    })
}
