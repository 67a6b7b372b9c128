//! A retried task, carried out the Celery way: re-sent with the same id while the retry budget
//! lasts ([`retry`]), given up (FAILURE and a dead letter) after it ([`give_up`]); when is
//! [`super::decide::end`]'s to say, with the task's [`policy`].

use std::time::Duration;

use celery_redis::broker::{DeadLetter, Delivery};
use celery_redis::clock;
use celery_redis::protocol::{Envelope, Message};
use celery_redis::result::{ExceptionInfo, ResultMeta, TaskState};
use time::OffsetDateTime;

use celery_redis::task::{Options, Registered};

use super::decide::RetryPolicy;
use super::ending::{self, ExecuteError};
use crate::context::Context;

/// Celery's `retry_backoff_max` default: no retry waits longer unless the task says so.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(600);

/// How retries of `task` are counted and spaced: its options over the worker's settings.
pub fn policy(ctx: &Context, task: Option<&Registered>) -> RetryPolicy {
    let options = task.map(Registered::options);
    let option = |f: fn(&Options) -> Option<Duration>| options.and_then(f);
    RetryPolicy {
        max_retries: options
            .and_then(|o| o.max_retries)
            .unwrap_or(ctx.max_retries),
        backoff: option(|o| o.retry_backoff).unwrap_or(ctx.retry_backoff),
        backoff_max: option(|o| o.retry_backoff_max).unwrap_or(MAX_RETRY_DELAY),
        jitter: options.and_then(|o| o.retry_jitter).unwrap_or(true),
    }
}

/// The retry budget is spent: FAILURE, and the message goes to the dead-letter list with the
/// reason and the attempt count (acknowledged in the same step).
pub async fn give_up(
    ctx: &Context,
    msg: &Message,
    delivery: &Delivery,
    exc: &ExceptionInfo,
    attempts: i64,
) -> Result<(), ExecuteError> {
    ending::fail(ctx, msg, exc, None).await?;
    crate::report::failed(ctx, msg, &delivery.queue, exc, false);
    let mut entry = DeadLetter::new(
        format!(
            "gave up after {attempts} attempts: {}: {}",
            exc.exc_type,
            exc.message()
        ),
        delivery.raw.clone(),
    )
    .in_queue(&delivery.queue);
    entry.task = Some(msg.task().to_owned());
    entry.task_id = Some(msg.id().to_owned());
    entry.at = delivery.taken_at;
    entry.attempts = Some(attempts);
    ctx.broker.dead_letter(delivery, &entry).await?;
    Ok(())
}

/// Stores RETRY and, in one step, acknowledges this message and schedules its retry after
/// `delay` (same id, `retries + 1`, `parent_id` = its own id, a new delivery tag).
pub async fn retry(
    ctx: &Context,
    msg: &Message,
    delivery: &Delivery,
    exc: &ExceptionInfo,
    delay: Duration,
) -> Result<(), ExecuteError> {
    let attempts = msg.envelope.headers.retries.max(0).saturating_add(1);
    let replacement = retry_envelope(msg, OffsetDateTime::now_utc() + delay);
    log::info!(
        "Task {}[{}] retry {attempts}: Retry in {:.3}s: {}",
        msg.task(),
        msg.id(),
        delay.as_secs_f64(),
        exc.message()
    );
    let mut meta = ResultMeta::failure(
        msg.id(),
        exc,
        Some(format!(
            "Retry in {:.3}s: {}",
            delay.as_secs_f64(),
            exc.message()
        )),
    );
    meta.status = TaskState::Retry;
    meta.date_done = None;
    ending::record(ctx, msg, meta.with_children(&[msg.id().to_owned()])).await?;
    ctx.broker
        .retry(delivery, &replacement.to_json(), delay)
        .await?;
    crate::report::failed(ctx, msg, &delivery.queue, exc, true);
    ctx.scheduled.notify_one();
    Ok(())
}

/// The message Celery's `Task.retry` sends.
fn retry_envelope(msg: &Message, eta: OffsetDateTime) -> Envelope {
    let mut env = msg.envelope.clone();
    env.headers.retries = env.headers.retries.max(0).saturating_add(1);
    env.headers.eta = Some(clock::to_celery_iso(eta));
    env.headers.parent_id = Some(msg.id().to_owned());
    env.headers.extra.remove("redelivered");
    if let Some(info) = env.properties.delivery_info.as_mut() {
        info.extra.remove("redelivered");
    }
    env.properties.delivery_tag = Some(uuid::Uuid::new_v4().to_string());
    env
}
