//! A blocking task (`Options::blocking`) runs on a thread of tokio's blocking pool, so that the
//! async threads (leases, heartbeats, remote control, `/metrics`, other tasks) go on meanwhile.
//! Its thread holds one of the worker's `WORKER_CONCURRENCY` thread places until it really ends:
//! a stopped task that never awaits keeps its place, so stopped tasks cannot pile up threads.

use std::sync::Arc;

use celery_redis::protocol::Message;
use celery_redis::task::{Output, Stop, TaskContext, TaskError};

use super::unknown;
use crate::context::Context;

/// Runs the task in the delivery's log and trace scope on a thread of its own, once a thread
/// place is free. A stop ends it at its next await; one that never awaits runs to its end and
/// what it returns is dropped (it cannot pass its point of no return once stopped).
pub async fn run(
    ctx: &Arc<Context>,
    queue: &str,
    msg: &Arc<Message>,
    stop: &Arc<Stop>,
) -> Result<Output, TaskError> {
    let place = tokio::select! {
        biased;
        why = stop.stopped() => return Err(TaskError::Stopped(why)),
        place = ctx.blocking_threads.clone().acquire_owned() => place
            .map_err(|e| TaskError::Transient(format!("no thread for a blocking task: {e}")))?,
    };
    let (ctx, queue, msg, stop) = (ctx.clone(), queue.to_owned(), msg.clone(), stop.clone());
    let runtime = tokio::runtime::Handle::current();
    let (fields, trace) = (observe::log::current(), observe::trace::current());
    let joined = tokio::task::spawn_blocking(move || {
        let _place = place;
        let Some(task) = ctx.tasks.get(msg.task()) else {
            return Err(TaskError::Failed(unknown::not_registered(&msg)));
        };
        let deps = ctx.tasks.deps();
        let req = TaskContext::new(&msg, &ctx.node, &queue, ctx.broker.routes(), &stop, deps);
        let run = async {
            tokio::select! {
                biased;
                why = stop.stopped() => Err(TaskError::Stopped(why)),
                outcome = task.run(&req, &msg.body) => outcome,
            }
        };
        let scoped = observe::log::scope(fields.unwrap_or_default(), run);
        runtime.block_on(observe::trace::scope(trace, scoped))
    })
    .await;
    match joined {
        Ok(outcome) => outcome,
        // The delivery's guard dead-letters a task that panicked, wherever it ran.
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(TaskError::Transient(format!("blocking task not run: {e}"))),
    }
}
