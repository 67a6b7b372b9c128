//! A task name this worker does not run. By default Celery's answer: FAILURE `NotRegistered`.
//! On a queue shared with Python workers (`UNKNOWN_TASK_HANDBACKS=N`), it is handed back to
//! its queue after `UNKNOWN_TASK_HANDBACK_DELAY_MS` for another worker of the fleet, at most N
//! times (counted in the message), then failed and dead-lettered with the reason.

use celery_redis::broker::{DeadLetter, Delivery};
use celery_redis::protocol::{Envelope, Message};
use celery_redis::result::ExceptionInfo;
use serde_json::Value;

use super::ending::{self, ExecuteError};
use crate::context::Context;

/// The header counting how often Rust workers handed a message back (Python workers ignore
/// headers they do not know).
pub const HANDBACKS: &str = "fleet_handbacks";

/// Handles a delivery of a task this worker does not run: handed back while the message's
/// count is below the setting, else FAILURE `NotRegistered` and a dead letter.
pub async fn hand_back_or_fail(
    ctx: &Context,
    msg: &Message,
    delivery: &Delivery,
) -> Result<(), ExecuteError> {
    let done = handbacks_of(&msg.envelope);
    if done < u64::from(ctx.unknown.handbacks) {
        let replacement = handed_back(&msg.envelope, done.saturating_add(1));
        log::info!(
            "task {} [{}] is not registered here; handed back to {} for another worker ({} of {})",
            msg.task(),
            msg.id(),
            delivery.queue,
            done.saturating_add(1),
            ctx.unknown.handbacks
        );
        ctx.broker
            .retry(delivery, &replacement.to_json(), ctx.unknown.delay)
            .await?;
        ctx.scheduled.notify_one();
        return Ok(());
    }
    let exc = not_registered(msg);
    ending::fail(ctx, msg, &exc, None).await?;
    crate::report::failed(ctx, msg, &delivery.queue, &exc, false);
    let mut entry = DeadLetter::new(
        format!(
            "task {} is not registered on any worker that took it ({done} hand-backs)",
            msg.task()
        ),
        delivery.raw.clone(),
    )
    .in_queue(&delivery.queue);
    entry.task = Some(msg.task().to_owned());
    entry.task_id = Some(msg.id().to_owned());
    entry.at = delivery.taken_at;
    ctx.broker.dead_letter(delivery, &entry).await?;
    Ok(())
}

/// Celery's exception for a name the worker does not know.
pub fn not_registered(msg: &Message) -> ExceptionInfo {
    ExceptionInfo::new("celery.exceptions", "NotRegistered", msg.task())
}

/// How often the message was handed back already (absent or junk: 0).
fn handbacks_of(env: &Envelope) -> u64 {
    env.headers
        .extra
        .get(HANDBACKS)
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// The message as it goes back: its count raised, a new delivery tag (the old one is
/// acknowledged in the same step), no redelivered flags.
fn handed_back(env: &Envelope, count: u64) -> Envelope {
    let mut env = env.clone();
    env.headers
        .extra
        .insert(HANDBACKS.into(), Value::from(count));
    env.headers.extra.remove("redelivered");
    if let Some(info) = env.properties.delivery_info.as_mut() {
        info.extra.remove("redelivered");
    }
    env.properties.delivery_tag = Some(uuid::Uuid::new_v4().to_string());
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use celery_redis::protocol::TaskMessage;

    #[test]
    fn the_count_travels_in_the_message_and_junk_counts_as_none() {
        let env = TaskMessage::new("py_only", "celery", Default::default())
            .to_envelope("t@h")
            .unwrap();
        assert_eq!(handbacks_of(&env), 0);
        let once = handed_back(&env, 1);
        assert_eq!(handbacks_of(&once), 1);
        assert_ne!(once.delivery_tag(), env.delivery_tag());
        assert_eq!(once.headers.id, env.headers.id);
        let mut junk = env.clone();
        junk.headers
            .extra
            .insert(HANDBACKS.into(), Value::from("lots"));
        assert_eq!(handbacks_of(&junk), 0);
        junk.headers.extra.insert(HANDBACKS.into(), Value::from(-3));
        assert_eq!(handbacks_of(&junk), 0);
    }
}
