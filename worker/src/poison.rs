//! A message that cannot be run goes to the dead-letter list with the reason (acknowledged in
//! the same step); if its task id is readable, the id gets a FAILURE so no caller waits forever.

use celery_redis::broker::{DeadLetter, Delivery};
use celery_redis::protocol::{DecodeError, Envelope};
use celery_redis::result::{ExceptionInfo, ResultMeta};

use crate::context::Context;
use crate::ending::ExecuteError;

pub async fn dead_letter(
    ctx: &Context,
    delivery: &Delivery,
    err: DecodeError,
) -> Result<(), ExecuteError> {
    let env = Envelope::from_json(delivery.raw.as_bytes()).ok();
    let task_id = env
        .as_ref()
        .map(|e| e.headers.id.clone())
        .filter(|id| !id.is_empty());
    log::warn!("dead-lettering message {}: {err}", delivery.tag);
    let mut entry =
        DeadLetter::new(err.to_string(), delivery.raw.clone()).in_queue(ctx.broker.queue());
    entry.task = env.map(|e| e.headers.task);
    entry.task_id = task_id.clone();
    entry.at = delivery.taken_at;
    if let Some(id) = task_id {
        let exc_type = match err {
            DecodeError::ContentType(_) => "ContentDisallowed",
            _ => "DecodeError",
        };
        let exc = ExceptionInfo::new("kombu.exceptions", exc_type, err.to_string());
        ctx.results
            .store(&ResultMeta::failure(&id, &exc, None))
            .await?;
    }
    ctx.broker.dead_letter(delivery, &entry).await?;
    Ok(())
}
