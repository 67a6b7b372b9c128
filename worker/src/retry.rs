//! A transient failure, handled the Celery way: re-sent with the same id while the retry budget
//! lasts, given up (FAILURE and a dead letter) after it.

use std::time::Duration;

use celery_redis::broker::{DeadLetter, Delivery};
use celery_redis::clock;
use celery_redis::protocol::{Envelope, Message};
use celery_redis::result::{ExceptionInfo, ResultMeta, TaskState};
use time::OffsetDateTime;

use crate::context::Context;
use crate::ending::{self, ExecuteError};

/// Longest delay between two attempts of a retried task.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(600);

/// While the budget lasts, store RETRY and, in one step, acknowledge this message and schedule
/// its retry (same id, `retries + 1`, `parent_id` = its own id, a new delivery tag, an eta after
/// a full-jitter exponential delay). After the last attempt: FAILURE, and the message goes to
/// the dead-letter list with the reason and the attempt count.
pub async fn retry_or_give_up(
    ctx: &Context,
    msg: &Message,
    delivery: &Delivery,
    exc: ExceptionInfo,
) -> Result<(), ExecuteError> {
    let retries = msg.envelope.headers.retries.max(0);
    let attempts = retries.saturating_add(1);
    let task = ctx.tasks.get(msg.task());
    let max_retries = task.and_then(|t| t.options().max_retries);
    if retries >= i64::from(max_retries.unwrap_or(ctx.max_retries)) {
        ending::fail(ctx, msg, &exc, None).await?;
        crate::report::failed(ctx, msg, &delivery.queue, &exc, false);
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
        return Ok(());
    }
    let delay = backoff(ctx.retry_backoff, retries);
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
        &exc,
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
    crate::report::failed(ctx, msg, &delivery.queue, &exc, true);
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

/// Full jitter: random in [0, min(cap, base * 2^retries)].
fn backoff(base: Duration, retries: i64) -> Duration {
    let exp = u32::try_from(retries.clamp(0, 20)).unwrap_or(20);
    let cap = base
        .saturating_mul(2u32.saturating_pow(exp))
        .min(MAX_RETRY_DELAY);
    cap.mul_f64(fastrand::f64())
}
