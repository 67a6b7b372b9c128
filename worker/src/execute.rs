//! One delivery, from the raw envelope to its end: decode, revoked, eta and expiry, STARTED, run
//! (within its time limit, unless a revoke terminates it; either stops it only before its point
//! of no return, see [`crate::stop`]), then [`crate::ending`] (success or
//! failure), [`crate::retry`] or [`crate::poison`]; [`crate::report`] sends the task events
//! along the way and [`crate::registry`] knows it runs. Redis failures leave the message
//! unacknowledged (it comes back after the visibility timeout; a write refused for lack of
//! memory hands it back at once); nothing here can crash the worker. Each delivery runs in a
//! log and trace scope ([`in_scope`]): once decoded, the task continues the W3C trace its
//! `traceparent` header carries (a new root when absent or invalid), and its ids and trace id
//! are in every log line about it.

use std::sync::Arc;
use std::time::Duration;

use std::panic::AssertUnwindSafe;

use celery_redis::broker::Delivery;
use celery_redis::clock;
use celery_redis::leases::Leases;
use celery_redis::protocol::pyrepr;
use celery_redis::protocol::Message;
use celery_redis::result::{ExceptionInfo, ResultMeta};
use celery_redis::task::{Output, Registered, TaskContext, TaskError};
use futures_util::FutureExt;
use observe::trace::{TraceContext, TRACEPARENT, TRACESTATE};
use serde_json::Value;
use tokio::sync::OwnedSemaphorePermit;

use crate::context::Context;
use crate::ending::{self, ExecuteError};
use crate::registry::Registry;
use crate::stop::{Stop, Stopped};
use crate::{poison, report, retry};

/// The whole life of one held delivery as the worker spawns it: [`handle`]d in a scope of its
/// own; a panic dead-letters it (it must not stay held and renewed forever); a write Redis
/// refused for lack of memory hands it back at once; then its lease is let go and its slot
/// (`permit`) freed. Returns whether Redis refused a write for lack of memory (the worker then
/// pauses its claims).
pub async fn guarded(
    ctx: Arc<Context>,
    leases: Leases,
    delivery: Delivery,
    permit: OwnedSemaphorePermit,
) -> bool {
    in_scope(async move {
        let run = AssertUnwindSafe(handle(&ctx, &delivery)).catch_unwind();
        let outcome = match run.await {
            Ok(outcome) => outcome,
            Err(_) => poison::panicked(&ctx, &delivery).await,
        };
        let no_memory = match outcome {
            Err(e) if e.refused_for_memory() => {
                crate::upkeep::hand_back_refused(&ctx.broker, &delivery, &e).await;
                true
            }
            Err(e) => {
                log::error!("delivery {} left unacknowledged: {e}", delivery.tag);
                false
            }
            Ok(()) => false,
        };
        leases.remove(&delivery.tag);
        drop(permit);
        no_memory
    })
    .await
}

/// Runs `delivery` (the whole of one delivery's handling) in a log and trace scope of its own,
/// which [`handle`] fills in once the message is decoded.
pub async fn in_scope<F: std::future::Future>(delivery: F) -> F::Output {
    let fields = observe::log::Fields::default();
    observe::trace::scope(None, observe::log::scope(fields, delivery)).await
}

/// The task's trace (continued from its headers, or a new root) and ids, put into the
/// enclosing [`in_scope`] so they are in every log line about it and its children carry them.
fn enter(msg: &Message) {
    let headers = &msg.envelope.headers;
    let text = |name| headers.extra.get(name).and_then(Value::as_str);
    let trace = TraceContext::continue_or_root(text(TRACEPARENT), text(TRACESTATE));
    observe::log::update(|f| {
        f.task_id = Some(observe::log::field(msg.id()));
        f.root_id = Some(observe::log::field(
            headers.root_id.as_deref().unwrap_or(msg.id()),
        ));
        f.trace_id = Some(trace.trace_id());
        f.order_id = msg
            .body
            .kwargs
            .get("order_id")
            .and_then(Value::as_str)
            .map(observe::log::field);
    });
    observe::trace::set(trace);
}

/// Handles one delivery; `delivery.taken_at` (the server's clock) is "now" for eta and expiry.
/// One delivered too often, or that does not decode within the limits, is dead-lettered.
pub async fn handle(ctx: &Context, delivery: &Delivery) -> Result<(), ExecuteError> {
    let now = delivery.taken_at;
    let limits = ctx.broker.limits();
    if delivery.deliveries > limits.max_deliveries {
        return poison::delivered_too_often(ctx, delivery, limits.max_deliveries).await;
    }
    let msg = match Message::decode_within(delivery.raw.as_bytes(), limits) {
        Ok(msg) => Arc::new(msg),
        Err(e) => return poison::dead_letter(ctx, delivery, e).await,
    };
    enter(&msg);
    report::received(ctx, &msg, &delivery.queue);
    if ctx.registry.is_revoked(msg.id()) {
        return refuse_revoked(ctx, &msg, delivery).await;
    }
    // Not ours to run, on a queue shared with another fleet's workers: handed back to them.
    let task = ctx.tasks.get(msg.task());
    if ctx.unknown.handbacks > 0 && task.is_none() {
        return crate::unknown::hand_back_or_fail(ctx, &msg, delivery).await;
    }
    let headers = &msg.envelope.headers;
    if let Some(eta) = msg.eta() {
        let due = clock::unix_seconds(eta);
        if due > now {
            log::info!(
                "task {} [{}] scheduled for {}",
                msg.task(),
                msg.id(),
                headers.eta.as_deref().unwrap_or_default()
            );
            ctx.broker.schedule(delivery, due).await?;
            ctx.registry.park(&msg, due);
            ctx.scheduled.notify_one();
            return Ok(());
        }
    }
    if msg.expires().is_some_and(|t| clock::unix_seconds(t) < now) {
        log::info!(
            "task {} [{}] expired; storing REVOKED",
            msg.task(),
            msg.id()
        );
        let revoked = ResultMeta::revoked(msg.id(), "expired");
        ending::end(ctx, &msg, revoked, Some(&delivery.tag), &[]).await?;
        report::revoked(ctx, &msg, &delivery.queue, None, true);
        return Ok(());
    }
    let _place = match task.map(|t| t.admit(ctx.tasks.deps(), &msg.body)) {
        Some(Err(delay)) => return defer(ctx, &msg, delivery, delay).await,
        Some(Ok(place)) => place,
        None => None,
    };
    let acks_late = task.and_then(|t| t.options().acks_late);
    let acks_late = acks_late.unwrap_or(ctx.acks_late);
    let mut running = Running::start(&ctx.registry, &delivery.tag, msg.clone(), !acks_late);
    running.counted = task.is_some();
    // A revoke that came between the check above and the start is honoured too.
    if ctx.registry.is_revoked(msg.id()) {
        return refuse_revoked(ctx, &msg, delivery).await;
    }
    run(ctx, delivery, &msg, task, &running).await
}

/// A task that cannot start yet (see [`Registered::admit`]) goes back to its queue's schedule for
/// `delay`, as an eta task: unchanged (no attempt counted), holding no slot meanwhile.
async fn defer(
    ctx: &Context,
    msg: &Message,
    delivery: &Delivery,
    delay: Duration,
) -> Result<(), ExecuteError> {
    log::debug!(
        "task {} [{}] waits {:.3}s for a webhook place",
        msg.task(),
        msg.id(),
        delay.as_secs_f64()
    );
    let due = delivery.taken_at + delay.as_secs_f64();
    ctx.broker.schedule(delivery, due).await?;
    ctx.registry.park(msg, due);
    ctx.scheduled.notify_one();
    Ok(())
}

/// A revoked task is never run: REVOKED, acknowledged, `task-revoked`.
async fn refuse_revoked(
    ctx: &Context,
    msg: &Message,
    delivery: &Delivery,
) -> Result<(), ExecuteError> {
    log::info!(
        "task {} [{}] was revoked; storing REVOKED without running it",
        msg.task(),
        msg.id()
    );
    let revoked = ResultMeta::revoked(msg.id(), "revoked");
    ending::end(ctx, msg, revoked, Some(&delivery.tag), &[]).await?;
    report::revoked(ctx, msg, &delivery.queue, None, false);
    Ok(())
}

/// The registry's record of a running task, removed however the run ends (error, panic).
struct Running<'a> {
    registry: &'a Registry,
    tag: &'a str,
    msg: Arc<Message>,
    stop: Arc<Stop>,
    /// A registered task: counted in `stats.total`.
    counted: bool,
}

impl<'a> Running<'a> {
    fn start(registry: &'a Registry, tag: &'a str, msg: Arc<Message>, acknowledged: bool) -> Self {
        let stop = registry.start(tag, msg.clone(), acknowledged);
        Running {
            registry,
            tag,
            msg,
            stop,
            counted: false,
        }
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.registry
            .finish(self.tag, self.msg.task(), self.counted);
    }
}

/// STARTED, the run (or its stop by a terminate or the time limit), and the end.
async fn run(
    ctx: &Context,
    delivery: &Delivery,
    msg: &Message,
    task: Option<&Registered>,
    running: &Running<'_>,
) -> Result<(), ExecuteError> {
    let stop = &running.stop;
    let options = task.map(Registered::options);
    let routes = ctx.broker.routes();
    let deps = ctx.tasks.deps();
    let req = TaskContext::new(msg, &ctx.node, &delivery.queue, routes, stop, deps);
    let acks_late = options.and_then(|o| o.acks_late).unwrap_or(ctx.acks_late);
    let track_started = options.and_then(|o| o.track_started);
    if track_started.unwrap_or(ctx.track_started) {
        ending::record(ctx, msg, ResultMeta::started(msg.id(), &ctx.node)).await?;
    }
    if !acks_late {
        ctx.broker.ack(&delivery.tag).await?;
    }
    report::started(ctx, msg, &delivery.queue);
    let began = std::time::Instant::now();
    // With acks_late the final result and the ack go together, after the task.
    let ack = acks_late.then_some(delivery.tag.as_str());
    let limits = options.map_or([None, None], |o| [o.time_limit, o.soft_time_limit]);
    // A stop drops the task where it waits, which is always before its point of no return
    // (`Stop` lets no stop through after it); the limit stops it the same way.
    let outcome = tokio::select! {
        biased;
        why = stop.stopped() => Err(TaskError::Stopped(why)),
        outcome = run_task(msg, task, &req) => outcome,
        never = crate::stop::time_limit(msg, limits, stop) => match never {},
    };
    // A task that ended without passing its point of no return changed nothing: a stop that
    // came as it ended still wins, so `Registry::terminate` is always right about what stops.
    let outcome = match stop.commit() {
        Ok(()) => outcome,
        Err(why) => Err(TaskError::Stopped(why)),
    };
    match outcome {
        Ok(output) => {
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
            report::succeeded(ctx, msg, &delivery.queue, shown.as_ref(), runtime);
        }
        Err(TaskError::Stopped(Stopped::Terminated(signum))) => {
            log::warn!("task {} [{}] terminated by a revoke", msg.task(), msg.id());
            let revoked = ResultMeta::revoked(msg.id(), "terminated");
            ending::end(ctx, msg, revoked, ack, &[]).await?;
            report::revoked(ctx, msg, &delivery.queue, Some(signum), false);
        }
        Err(TaskError::Stopped(Stopped::TimeLimit { seconds, soft })) => {
            log::warn!(
                "task {} [{}] exceeded its time limit of {seconds}s",
                msg.task(),
                msg.id()
            );
            let exc = ExceptionInfo {
                exc_type: if soft {
                    "SoftTimeLimitExceeded"
                } else {
                    "TimeLimitExceeded"
                }
                .to_owned(),
                exc_message: Value::Array(vec![serde_json::json!(seconds)]),
                exc_module: "billiard.exceptions".to_owned(),
            };
            ending::fail(ctx, msg, &exc, ack).await?;
            report::failed(ctx, msg, &delivery.queue, &exc, false);
        }
        Err(TaskError::Failed(exc)) => {
            ending::fail(ctx, msg, &exc, ack).await?;
            report::failed(ctx, msg, &delivery.queue, &exc, false);
        }
        Err(TaskError::Retry(exc)) => {
            return retry::retry_or_give_up(ctx, msg, delivery, exc).await
        }
        Err(TaskError::Transient(why)) => {
            return Err(ExecuteError::Transient(msg.id().to_owned(), why))
        }
        Err(TaskError::NoMemory(why)) => {
            return Err(ExecuteError::NoMemory(msg.id().to_owned(), why))
        }
    }
    Ok(())
}

/// Runs the task; an unknown name is Celery's NotRegistered.
async fn run_task(
    msg: &Message,
    task: Option<&Registered>,
    req: &TaskContext<'_>,
) -> Result<Output, TaskError> {
    if msg.body.embed.chord.as_ref().is_some_and(|c| !c.is_null()) {
        // The chord's body would need Celery's chord counter; refusing beats never running it.
        return Err(TaskError::Failed(ExceptionInfo::new(
            "builtins",
            "NotImplementedError",
            "chords are not supported by the Rust worker; use a chain or a group",
        )));
    }
    match task {
        Some(task) => task.run(req, &msg.body).await,
        None => Err(TaskError::Failed(crate::unknown::not_registered(msg))),
    }
}
