//! The one call that carries out how a run ended ([`super::decide::End`]): stores its state,
//! acknowledges it (with the state when acks are late), publishes what it sends on, and
//! reports it (the log line Celery writes, the task event, the metrics).

use std::time::Instant;

use celery_redis::broker::Delivery;
use celery_redis::protocol::{pyrepr, Message};
use celery_redis::result::ResultMeta;

use super::decide::End;
use super::ending::{self, ExecuteError};
use super::retry;
use crate::context::Context;
use crate::report;

/// Carries out `end` for the run of `msg` that `began` then; `ack` is the delivery's tag when
/// the acknowledgement goes with the final state (acks late), `None` when it was sent at start.
pub async fn end(
    ctx: &Context,
    delivery: &Delivery,
    msg: &Message,
    end: End,
    ack: Option<&str>,
    began: Instant,
) -> Result<(), ExecuteError> {
    let queue = &delivery.queue;
    match end {
        End::Succeeded(output) => {
            let shown = ctx.events.task_events().then(|| output.value.clone());
            // Celery's line, its result's repr made only when the line is written.
            let said = log::log_enabled!(log::Level::Info).then(|| pyrepr::repr(&output.value));
            ending::succeed(ctx, msg, output, ack).await?;
            let runtime = began.elapsed().as_secs_f64();
            if let Some(result) = said {
                log::info!(
                    "Task {}[{}] succeeded in {runtime:.6}s: {result}",
                    msg.task(),
                    msg.id()
                );
            }
            report::succeeded(ctx, msg, queue, shown.as_ref(), runtime);
        }
        End::Failed { exc, timeout } => {
            if timeout {
                log::warn!(
                    "task {} [{}] exceeded its time limit: {}",
                    msg.task(),
                    msg.id(),
                    pyrepr::exception_repr(&exc.exc_type, &exc.exc_message)
                );
            }
            ending::fail(ctx, msg, &exc, ack).await?;
            report::failed(ctx, msg, queue, &exc, false);
        }
        End::Retry { exc, delay } => retry::retry(ctx, msg, delivery, &exc, delay).await?,
        End::GaveUp { exc, attempts } => retry::give_up(ctx, msg, delivery, &exc, attempts).await?,
        End::Terminated(signum) => {
            log::warn!("task {} [{}] terminated by a revoke", msg.task(), msg.id());
            let revoked = ResultMeta::revoked(msg.id(), "terminated");
            ending::end(ctx, msg, revoked, ack, &[]).await?;
            report::revoked(ctx, msg, queue, Some(signum), false);
        }
        End::Unfinished { no_memory, why } => {
            let id = msg.id().to_owned();
            return Err(match no_memory {
                true => ExecuteError::NoMemory(id, why),
                false => ExecuteError::Transient(id, why),
            });
        }
    }
    Ok(())
}
