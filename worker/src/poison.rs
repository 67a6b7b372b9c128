//! A message that cannot be run goes to the dead-letter list with the reason (acknowledged in
//! the same step); if its task id is readable at all, the id gets a FAILURE so no caller waits
//! forever.

use celery_redis::broker::dead::readable_task;
use celery_redis::broker::{DeadLetter, Delivery};
use celery_redis::protocol::DecodeError;
use celery_redis::result::{ExceptionInfo, ResultMeta};

use crate::context::Context;
use crate::ending::ExecuteError;

/// Dead-letters a held delivery that does not decode, with a FAILURE for its id if readable.
pub async fn dead_letter(
    ctx: &Context,
    delivery: &Delivery,
    err: DecodeError,
) -> Result<(), ExecuteError> {
    log::warn!("dead-lettering message {}: {err}", delivery.tag);
    let mut entry =
        DeadLetter::about(err.to_string(), delivery.raw.clone()).in_queue(&delivery.queue);
    entry.at = delivery.taken_at;
    let exc_type = match err {
        DecodeError::ContentType(_) => "ContentDisallowed",
        _ => "DecodeError",
    };
    let task = entry.task.as_deref();
    store_failure(
        ctx,
        entry.task_id.as_deref(),
        task,
        exc_type,
        &err.to_string(),
    )
    .await?;
    ctx.broker.dead_letter(delivery, &entry).await?;
    Ok(())
}

/// Dead-letters a held delivery whose run panicked, with a FAILURE for its id if readable.
pub async fn panicked(ctx: &Context, delivery: &Delivery) -> Result<(), ExecuteError> {
    let reason = "the worker panicked running it";
    log::error!("dead-lettering message {}: {reason}", delivery.tag);
    let mut entry = DeadLetter::about(reason, delivery.raw.clone()).in_queue(&delivery.queue);
    entry.at = delivery.taken_at;
    let task = entry.task.as_deref();
    store_failure(
        ctx,
        entry.task_id.as_deref(),
        task,
        "WorkerLostError",
        reason,
    )
    .await?;
    ctx.broker.dead_letter(delivery, &entry).await?;
    Ok(())
}

/// Dead-letters a claimed entry that is not UTF-8 (the claim could not hand it over).
pub async fn unreadable(ctx: &Context, tag: &[u8], raw: &str, queue: &str) {
    log::warn!("dead-lettering an entry of {queue} that is not valid UTF-8");
    if let Err(e) = ctx.broker.dead_letter_unreadable(tag, raw, queue).await {
        log::warn!("could not dead-letter it ({e}); it comes back after the visibility timeout");
    }
}

/// Reports an entry the claim itself dead-lettered: FAILURE for its id, when readable.
pub async fn claimed_dead(ctx: &Context, raw: &str, reason: &str) {
    log::warn!("dead-lettered an undecodable queue entry: {reason}");
    if let Err(e) = fail_readable(ctx, raw, reason).await {
        log::warn!("could not store FAILURE for a dead-lettered entry: {e}");
    }
}

/// Stores a FAILURE for an entry the claim already dead-lettered, when its id is readable.
pub async fn fail_readable(ctx: &Context, raw: &str, reason: &str) -> Result<(), ExecuteError> {
    let (task, id) = readable_task(raw);
    store_failure(ctx, id.as_deref(), task.as_deref(), "DecodeError", reason).await
}

async fn store_failure(
    ctx: &Context,
    id: Option<&str>,
    task: Option<&str>,
    exc_type: &str,
    reason: &str,
) -> Result<(), ExecuteError> {
    if let Some(id) = id {
        let exc = ExceptionInfo::new("kombu.exceptions", exc_type, reason);
        ctx.results
            .store(&ResultMeta::failure(id, &exc, None))
            .await?;
        crate::report::rejected(ctx, id, task);
    }
    Ok(())
}
