//! How a task that ran ends: SUCCESS (with what it sends on) or FAILURE (with its errbacks),
//! through the broker's one way to end a task ([`celery_redis::broker::Broker::finish`]), with
//! a chord header member's part of its chord ([`super::chord`]).

use celery_redis::protocol::{Message, TaskMessage};
use celery_redis::result::{ExceptionInfo, Extended, ResultError, ResultMeta};
use serde_json::Value;

use super::canvas;
use crate::context::Context;
use celery_redis::task::Output;

/// Why a delivery could not be finished; the message stays in `unacked`.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    /// A Redis call of the broker failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The result backend failed (a Redis call, or a stored value it cannot read).
    #[error("result backend: {0}")]
    Result(#[from] ResultError),
    /// Task {0} failed on a dependency (Redis) or found no thread: left unacknowledged; {1}.
    #[error("task {0} hit a transient error: {1}")]
    Transient(String, String),
    /// Redis refused a write of task {0} for lack of memory, before writing anything.
    #[error("task {0}: redis is out of memory: {1}")]
    NoMemory(String, String),
}

impl ExecuteError {
    /// Redis refused a write for lack of memory and nothing of it was written: the delivery
    /// is handed back at once (the hand-back itself is allowed while Redis is out of memory)
    /// instead of waiting for its lease to expire.
    pub fn refused_for_memory(&self) -> bool {
        use celery_redis::refusal::refused_for_memory;
        match self {
            ExecuteError::Redis(e) | ExecuteError::Result(ResultError::Redis(e)) => {
                refused_for_memory(e)
            }
            ExecuteError::NoMemory(..) => true,
            ExecuteError::Result(_) | ExecuteError::Transient(..) => false,
        }
    }
}

/// `meta` with the request's `parent_id`/`group_id`, as Celery stores them, and with
/// `RESULT_EXTENDED` the request's name, args, kwargs, worker, retries and queue; `None` when
/// the message or its task asked for no result (`ignore_result`).
fn result_of(ctx: &Context, msg: &Message, meta: ResultMeta) -> Option<ResultMeta> {
    let headers = &msg.envelope.headers;
    let task = ctx.tasks.get(msg.task());
    if headers.ignore_result || task.is_some_and(|t| t.options().ignore_result) {
        return None;
    }
    let meta = meta.with_request(headers.parent_id.as_deref(), headers.group.as_deref());
    Some(match ctx.result_extended {
        false => meta,
        true => meta.with_extended(Extended {
            name: msg.task(),
            args: &msg.body.args,
            kwargs: &msg.body.kwargs,
            worker: &ctx.node,
            retries: headers.retries,
            queue: msg.envelope.routing_key(),
        }),
    })
}

/// Ends the task: publishes `publish`, stores `meta` and acknowledges `ack`, as one step when
/// the broker can (see `Broker::finish`). A chord header member joins its chord first; the one
/// that completes it publishes the chord's body (or fails it) in the same step
/// ([`super::chord`]).
pub async fn end(
    ctx: &Context,
    msg: &Message,
    meta: ResultMeta,
    ack: Option<&str>,
    publish: &[TaskMessage],
) -> Result<(), ExecuteError> {
    let chord = super::chord::member_end(ctx, msg, &meta).await?;
    let result = result_of(ctx, msg, meta);
    ctx.broker
        .finish_with(&ctx.results, ack, result.as_ref(), publish, chord.as_ref())
        .await?;
    Ok(())
}

/// Records a state that ends nothing (STARTED, RETRY), unless the message asked for no result.
pub async fn record(ctx: &Context, msg: &Message, meta: ResultMeta) -> Result<(), ExecuteError> {
    if let Some(meta) = result_of(ctx, msg, meta) {
        ctx.results.store(&meta).await?;
    }
    Ok(())
}

/// Stores SUCCESS naming what the task sends on (its own children, then callbacks and the next
/// chain step), which is published first, as Celery does. A canvas refused (out of bounds, or a
/// chord) sends nothing of it and ends the task in FAILURE saying why, with its errbacks.
pub async fn succeed(
    ctx: &Context,
    msg: &Message,
    output: Output,
    ack: Option<&str>,
) -> Result<(), ExecuteError> {
    let sent = match canvas::on_success(msg, &output.value, ctx.broker.routes()) {
        Ok(sent) => sent,
        Err(refused) => return fail(ctx, msg, &refused.exception(), ack).await,
    };
    let mut children: Vec<Value> = output
        .children
        .iter()
        .map(|c| serde_json::json!([[c.id, null], null]))
        .collect();
    children.extend(sent.children);
    let mut meta = ResultMeta::success(msg.id(), output.value);
    meta.children = Some(Value::Array(children));
    let mut publish = output.children;
    publish.extend(sent.messages);
    set_chord_sizes(ctx, &sent.chord_sizes).await?;
    end(ctx, msg, meta, ack, &publish).await
}

/// Celery's `set_chord_size` for each chord whose header the task sends, before the header is
/// published: `.s` holds the size for the join (with the results' lifetime), a `.c` claim left
/// by an earlier run of the same chord is dropped.
async fn set_chord_sizes(ctx: &Context, sizes: &[(String, u64)]) -> Result<(), ExecuteError> {
    if sizes.is_empty() {
        return Ok(());
    }
    let ttl = ctx.results.expires_secs();
    let mut pipe = redis::pipe();
    pipe.atomic();
    for (group_id, size) in sizes {
        let group = format!("celery-taskset-meta-{group_id}");
        pipe.del(format!("{group}.c")).ignore();
        match ttl {
            0 => pipe.set(format!("{group}.s"), size).ignore(),
            _ => pipe.set_ex(format!("{group}.s"), size, ttl).ignore(),
        };
    }
    let () = pipe
        .query_async(&mut ctx.results.connection().clone())
        .await?;
    Ok(())
}

/// Publishes the errbacks, then stores FAILURE (errbacks out of bounds are not sent: logged).
pub async fn fail(
    ctx: &Context,
    msg: &Message,
    exc: &ExceptionInfo,
    ack: Option<&str>,
) -> Result<(), ExecuteError> {
    // Celery's line for a failure, at ERROR as Celery logs it.
    log::error!(
        "Task {}[{}] raised unexpected: {}",
        msg.task(),
        msg.id(),
        celery_redis::protocol::pyrepr::exception_repr(&exc.exc_type, &exc.exc_message)
    );
    let traceback = Some(format!("{}: {}", exc.exc_type, exc.message()));
    let meta = ResultMeta::failure(msg.id(), exc, traceback);
    let errbacks = canvas::on_failure(msg, ctx.broker.routes()).unwrap_or_else(|refused| {
        log::error!(
            "Task {}[{}]: errbacks not sent: {refused}",
            msg.task(),
            msg.id()
        );
        Vec::new()
    });
    end(ctx, msg, meta, ack, &errbacks).await
}
