//! A message that cannot be run goes to the dead-letter list with the reason (acknowledged in
//! the same step); if its task id is readable at all, the id gets a FAILURE so no caller waits
//! forever. The entry holds the delivery's text as it is written (no copy); one refused for its
//! size keeps only a prefix of it.

use celery_redis::broker::dead::{prefix, readable_task, DEAD_RAW_KEEP};
use celery_redis::broker::{Claim, DeadLetter, Delivery};
use celery_redis::protocol::DecodeError;
use celery_redis::result::{ExceptionInfo, ResultMeta};

use super::ending::ExecuteError;
use crate::context::Context;

/// Dead-letters a held delivery that does not decode, with a FAILURE for its id if readable.
/// One refused for its size keeps only a prefix of its text.
pub async fn dead_letter(
    ctx: &Context,
    delivery: &Delivery,
    err: DecodeError,
) -> Result<(), ExecuteError> {
    log::warn!("dead-lettering message {}: {err}", delivery.tag);
    let exc_type = match err {
        DecodeError::ContentType(_) => "ContentDisallowed",
        _ => "DecodeError",
    };
    let mut entry = entry(err.to_string(), delivery);
    let mut raw = delivery.raw.as_str();
    if err.is_over_budget() && raw.len() > DEAD_RAW_KEEP {
        entry.raw_bytes = u64::try_from(raw.len()).ok();
        raw = prefix(raw);
    }
    give_up(ctx, delivery, &entry, raw, exc_type).await
}

/// Dead-letters a held delivery whose run panicked, with a FAILURE for its id if readable.
pub async fn panicked(ctx: &Context, delivery: &Delivery) -> Result<(), ExecuteError> {
    let reason = "the worker panicked running it";
    log::error!("dead-lettering message {}: {reason}", delivery.tag);
    let entry = entry(reason.to_owned(), delivery);
    give_up(ctx, delivery, &entry, &delivery.raw, "WorkerLostError").await
}

/// Dead-letters a held delivery that restores gave back more than `max` times (each worker that
/// took it died or lost its lease), with a FAILURE for its id if readable, before decoding it.
pub async fn delivered_too_often(
    ctx: &Context,
    delivery: &Delivery,
    max: u32,
) -> Result<(), ExecuteError> {
    let reason = format!(
        "delivered {} times without finishing (at most {max}): each worker that took it died or lost its lease",
        delivery.deliveries
    );
    log::error!("dead-lettering message {}: {reason}", delivery.tag);
    let entry = entry(reason, delivery);
    give_up(ctx, delivery, &entry, &delivery.raw, "WorkerLostError").await
}

/// The dead letter of a held delivery, with its task's name and id when readable; the text is
/// added when it is written, borrowed from the delivery.
fn entry(reason: String, delivery: &Delivery) -> DeadLetter {
    let mut entry = DeadLetter::new(reason, String::new()).in_queue(&delivery.queue);
    (entry.task, entry.task_id) = readable_task(&delivery.raw);
    entry.at = delivery.taken_at;
    entry
}

/// FAILURE for the entry's id (when readable), then the dead letter holding `raw` and the ack
/// in one step.
async fn give_up(
    ctx: &Context,
    delivery: &Delivery,
    entry: &DeadLetter,
    raw: &str,
    exc_type: &str,
) -> Result<(), ExecuteError> {
    let (id, task) = (entry.task_id.as_deref(), entry.task.as_deref());
    store_failure(ctx, id, task, exc_type, &entry.reason).await?;
    ctx.broker.dead_letter_holding(delivery, entry, raw).await?;
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
pub async fn claimed_dead(ctx: &Context, claim: &Claim) {
    let Claim::DeadLettered {
        reason,
        task,
        task_id,
        ..
    } = claim
    else {
        return;
    };
    log::warn!("dead-lettered an undecodable queue entry: {reason}");
    let (id, task) = (task_id.as_deref(), task.as_deref());
    if let Err(e) = store_failure(ctx, id, task, "DecodeError", reason).await {
        log::warn!("could not store FAILURE for a dead-lettered entry: {e}");
    }
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
