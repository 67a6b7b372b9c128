//! The task API: what a task is ([`Task`]: its Celery name, typed arguments, an async `run`,
//! its [`Options`]), what it may see and do while it runs ([`TaskContext`]) and how tasks are
//! registered with a worker ([`Tasks`]). A worker runs what its [`Tasks`] table holds; nothing
//! here knows which tasks exist. "Write a task" (docs/tasks.md) shows one.
//!
//! - this file: [`Task`], [`Options`], [`TaskError`], [`Output`];
//! - [`args`] — Celery's args/kwargs bound to the parameter names and decoded (serde), with
//!   Python's argument errors;
//! - [`context`] — [`TaskContext`] (the request, tasks sent on, the point of no return, the
//!   task's dependencies) and [`Deps`];
//! - [`table`] — [`Tasks`], the registered tasks by name;
//! - [`stop`] — whether a running task may still be stopped ([`Stop`]);
//! - [`rate`], [`fleet`] — rate limits: Celery's rate strings and per-worker bucket, and the
//!   fleet-wide limit shared through Redis.

use std::future::Future;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::protocol::TaskMessage;
use crate::result::ExceptionInfo;

pub mod args;
pub mod context;
pub mod fleet;
pub mod rate;
pub mod stop;
pub mod table;

pub use context::{Deps, TaskContext};
pub use stop::{Stop, Stopped};
pub use table::{Place, Registered, Tasks};

/// A task: one type per Celery task name. The runtime decodes its arguments once
/// ([`Task::decode`]), runs it, stores what it returns (serialized as JSON) and sends on what
/// it sent with [`TaskContext::send`].
pub trait Task: Send + Sync + 'static {
    /// Its Celery name (`@app.task(name=...)`).
    const NAME: &'static str;
    /// Its parameter names, in positional order: a Celery `args` list binds onto them.
    const PARAMS: &'static [&'static str];
    /// Its arguments, decoded from the call's args and kwargs (usually a struct whose fields
    /// are [`Task::PARAMS`]).
    type Args: DeserializeOwned + Send;
    /// What it returns: stored as the task's result.
    type Output: Serialize + Send;

    /// Its options (Celery's task attributes); the defaults take the worker's settings.
    fn options() -> Options {
        Options::default()
    }

    /// Decodes a call's arguments: by default Python's binding of `args` onto
    /// [`Task::PARAMS`] and `kwargs` by name (TypeError when they do not fit), then serde
    /// (ValueError for a value of the wrong shape). Override it to validate more.
    fn decode(args: &[Value], kwargs: &Map<String, Value>) -> Result<Self::Args, TaskError> {
        args::decode(Self::NAME, Self::PARAMS, args, kwargs)
    }

    /// What the task must hold besides its worker slot while it runs (e.g. one of a bounded
    /// number of connections), asked before it starts: `Ok(None)` when nothing, `Err(delay)`
    /// when none is free (the delivery is scheduled again after `delay`, holding no slot).
    fn admit(deps: &Deps, args: &[Value], kwargs: &Map<String, Value>) -> Result<Place, Duration> {
        let _ = (deps, args, kwargs);
        Ok(None)
    }

    /// Runs the task. Before [`TaskContext::commit`] it may be dropped at any await (a
    /// terminate, its time limit), so nothing before that call may change anything.
    fn run(
        ctx: &TaskContext<'_>,
        args: Self::Args,
    ) -> impl Future<Output = Result<Self::Output, TaskError>> + Send;
}

/// A task's options, with Celery's meanings; `None` takes the worker's setting. A message's
/// own `timelimit` and `retries` headers still win, as in Celery.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Options {
    /// Most retries after a [`TaskError::Retry`] (the worker's `TASK_MAX_RETRIES` if `None`).
    pub max_retries: Option<u32>,
    /// Acknowledge after the task ends rather than when it starts (`WORKER_ACKS_LATE`).
    pub acks_late: Option<bool>,
    /// Store no result (as if every call had `ignore_result=True`).
    pub ignore_result: bool,
    /// Store STARTED when it starts (`WORKER_TRACK_STARTED`).
    pub track_started: Option<bool>,
    /// The queue it is sent to when no route names it (Celery's `queue` attribute).
    pub queue: Option<&'static str>,
    /// Hard time limit in seconds (TimeLimitExceeded), unless the message sets one.
    pub time_limit: Option<f64>,
    /// Soft time limit in seconds (SoftTimeLimitExceeded), unless the message sets one.
    pub soft_time_limit: Option<f64>,
    /// The first retry's delay after a [`TaskError::Retry`], doubled for each next one
    /// (Celery's `retry_backoff`; the worker's `TASK_RETRY_BACKOFF_MS` if `None`).
    pub retry_backoff: Option<Duration>,
    /// No retry waits longer (Celery's `retry_backoff_max`; 600 s if `None`).
    pub retry_backoff_max: Option<Duration>,
    /// Full jitter: each retry waits a random part of its backoff (Celery's `retry_jitter`,
    /// on if `None`), so that many tasks failing together do not retry together.
    pub retry_jitter: Option<bool>,
    /// Its `run` computes or blocks (CPU work, a blocking library): it runs on a thread of its
    /// own, off the threads that renew leases, send heartbeats and answer remote control and
    /// `/metrics`, which an `async` task that does not await would starve.
    pub blocking: bool,
    /// Most starts per worker (Celery's `rate_limit`: `"10/s"`, `"100/m"`, `"5/h"`, a number
    /// per second), see [`rate::parse`]; remote control's `rate_limit` changes it.
    pub rate_limit: Option<&'static str>,
    /// Most starts by all workers together (same strings), counted in Redis ([`fleet`]).
    pub fleet_rate_limit: Option<&'static str>,
}

/// A task's return value and the tasks it sends on (published before its result is stored).
#[derive(Debug)]
pub struct Output {
    /// What `run` returned, as JSON: the stored result.
    pub value: Value,
    /// What it sent with [`TaskContext::send`], in order.
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
    /// As [`TaskError::Retry`], re-sent after this countdown rather than the backoff (Celery's
    /// `self.retry(countdown=...)`); the retry budget still counts it.
    #[error("retry in {:.3}s after {}: {}", .1.as_secs_f64(), .0.exc_type, .0.message())]
    RetryAfter(ExceptionInfo, Duration),
    /// A dependency (Redis) failed: nothing is stored, the message is not acknowledged and comes
    /// back after the visibility timeout.
    #[error("transient: {0}")]
    Transient(String),
    /// Redis refused a write for lack of memory before writing anything (see
    /// [`crate::refusal`]): the message goes back to its queue at once.
    #[error("redis is out of memory: {0}")]
    NoMemory(String),
    /// Stopped before its point of no return (see [`TaskContext::commit`]).
    #[error("{0}")]
    Stopped(Stopped),
}

impl TaskError {
    /// A Python builtin exception (`TypeError`, `ValueError`, ...), stored as FAILURE.
    pub fn builtin(exc_type: &str, message: impl Into<String>) -> Self {
        TaskError::Failed(ExceptionInfo::new("builtins", exc_type, message.into()))
    }
}

impl From<redis::RedisError> for TaskError {
    fn from(e: redis::RedisError) -> Self {
        if crate::refusal::refused_for_memory(&e) {
            return TaskError::NoMemory(e.to_string());
        }
        TaskError::Transient(e.to_string())
    }
}
