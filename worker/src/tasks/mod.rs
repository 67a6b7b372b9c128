//! The task registry: which names this worker runs, what a task returns, and the one thing a
//! task tells the runtime: its point of no return ([`Request::commit`]).

use std::sync::Arc;
use std::time::Duration;

use celery_redis::protocol::{Body, TaskMessage};
use celery_redis::result::ExceptionInfo;
use serde_json::Value;
use shop::contracts::{PROCESS_ORDER, SEND_NOTIFICATION};
use shop::validation::ValidationErrors;
use tokio::sync::OwnedSemaphorePermit;

use crate::context::Context;
use crate::stop::{Stop, Stopped};

pub mod process_order;
pub mod send_notification;

/// Every task name this worker runs, sorted (`inspect registered`).
pub const NAMES: &[&str] = &[PROCESS_ORDER, SEND_NOTIFICATION];

/// The running task's identity, from its headers, and its stop.
#[derive(Debug, Clone)]
pub struct Request {
    pub id: String,
    pub root_id: String,
    pub stop: Arc<Stop>,
}

impl Request {
    /// The task's point of no return, called just before its effect (a write that must not be
    /// left without the task's result): from here a terminate or a time limit no longer stops
    /// it. `Err` when one came first: the task returns it without applying its effect, and is
    /// stored REVOKED (or failed by its time limit). Before this call a task may be dropped at
    /// any await point, so nothing before it may change anything.
    pub fn commit(&self) -> Result<(), TaskError> {
        self.stop.commit().map_err(TaskError::Stopped)
    }
}

/// A task's return value and the tasks it sends on (published before its result is stored).
#[derive(Debug)]
pub struct Output {
    pub value: Value,
    pub children: Vec<TaskMessage>,
}

/// Why a task did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// The task failed for good: stored as FAILURE with this exception.
    #[error("{}: {}", .0.exc_type, .0.message())]
    Failed(ExceptionInfo),
    /// The task failed in a way that may pass (a webhook timeout, a 5xx): it is re-sent the
    /// Celery way (same id, `retries + 1`, an eta) until the retry budget is spent.
    #[error("retry after {}: {}", .0.exc_type, .0.message())]
    Retry(ExceptionInfo),
    /// A dependency (Redis) failed: nothing is stored, the message is not acknowledged and comes
    /// back after the visibility timeout.
    #[error("transient: {0}")]
    Transient(String),
    /// Redis refused a write for lack of memory before writing anything (see
    /// `celery_redis::refusal`): the message goes back to its queue at once.
    #[error("redis is out of memory: {0}")]
    NoMemory(String),
    /// Stopped before its point of no return (see [`Request::commit`]).
    #[error("{0}")]
    Stopped(Stopped),
}

impl From<ValidationErrors> for TaskError {
    /// Invalid arguments are a `ValueError`, so Python callers can `except ValueError`.
    fn from(e: ValidationErrors) -> Self {
        TaskError::Failed(ExceptionInfo::new("builtins", "ValueError", e.to_string()))
    }
}

impl From<redis::RedisError> for TaskError {
    fn from(e: redis::RedisError) -> Self {
        if celery_redis::refusal::refused_for_memory(&e) {
            return TaskError::NoMemory(e.to_string());
        }
        TaskError::Transient(e.to_string())
    }
}

/// What a task holds besides its slot while it runs: a webhook notification one of the
/// `WEBHOOK_CONCURRENCY` places (until it ends). `Err` with a delay when none is free: the
/// delivery goes back to the schedule for that long instead of waiting in a slot.
pub fn admit(
    ctx: &Context,
    name: &str,
    body: &Body,
) -> Result<Option<OwnedSemaphorePermit>, Duration> {
    if name == SEND_NOTIFICATION && send_notification::posts_webhook(body) {
        return match ctx.webhooks.place() {
            Some(place) => Ok(Some(place)),
            None => Err(ctx.webhooks.busy_delay()),
        };
    }
    Ok(None)
}

/// Runs the named task, or `None` when this worker does not know the name.
pub async fn dispatch(
    ctx: &Context,
    name: &str,
    req: &Request,
    body: &Body,
) -> Option<Result<Output, TaskError>> {
    match name {
        PROCESS_ORDER => Some(process_order::run(ctx, req, body).await),
        SEND_NOTIFICATION => Some(send_notification::run(ctx, req, body).await),
        _ => None,
    }
}
