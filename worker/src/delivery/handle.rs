//! One delivery, from the raw envelope to its end: decoded within the limits (else
//! dead-lettered), then [`decide::start`] says whether it runs; a run (within its time limit,
//! unless a revoke terminates it; either stops it only before its point of no return) ends in
//! [`decide::end`], carried out by [`apply::end`]. Redis failures leave the message
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
use celery_redis::protocol::Message;
use celery_redis::result::ResultMeta;
use celery_redis::task::{Output, Registered, Stop, TaskContext, TaskError};
use futures_util::FutureExt;
use observe::trace::{TraceContext, TRACEPARENT, TRACESTATE};
use serde_json::Value;
use tokio::sync::OwnedSemaphorePermit;

use super::decide::{self, Facts, Start};
use super::ending::{self, ExecuteError};
use super::{apply, poison, retry, unknown};
use crate::context::Context;
use crate::registry::Registry;
use crate::report;

/// The whole life of one held delivery as the worker spawns it: [`handle`]d in a scope of its
/// own; a panic dead-letters it (it must not stay held and renewed forever); a write Redis
/// refused for lack of memory hands it back at once; then its lease is let go and its slot
/// (`permit`) freed. Returns whether Redis refused a write for lack of memory (the worker then
/// pauses its claims).
pub fn guarded(
    ctx: Arc<Context>,
    leases: Leases,
    delivery: Arc<Delivery>,
    permit: OwnedSemaphorePermit,
) -> impl std::future::Future<Output = bool> {
    // Each awaited future boxed: the spawned one stays small, as tokio copies it whole when
    // it spawns and first polls it.
    in_scope(async move {
        let run = AssertUnwindSafe(Box::pin(handle(&ctx, &delivery))).catch_unwind();
        let outcome = match run.await {
            Ok(outcome) => outcome,
            Err(_) => Box::pin(poison::panicked(&ctx, &delivery)).await,
        };
        let no_memory = match outcome {
            Err(e) if e.refused_for_memory() => {
                Box::pin(crate::upkeep::hand_back_refused(&ctx.broker, &delivery, &e)).await;
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
}

/// Runs `delivery` (the whole of one delivery's handling) in a log and trace scope of its own,
/// which [`handle`] fills in once the message is decoded. Not an `async fn`: see
/// [`observe::log::scope`] (the spawned future stays the size of the delivery's own).
pub fn in_scope<F: std::future::Future>(
    delivery: F,
) -> impl std::future::Future<Output = F::Output> {
    let fields = observe::log::Fields::default();
    observe::trace::scope(None, observe::log::scope(fields, delivery))
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
pub async fn handle(ctx: &Arc<Context>, delivery: &Delivery) -> Result<(), ExecuteError> {
    let limits = ctx.broker.limits();
    if delivery.deliveries > limits.max_deliveries {
        return poison::delivered_too_often(ctx, delivery, limits.max_deliveries).await;
    }
    let msg = match Message::decode_text_within(&delivery.raw, limits) {
        Ok(msg) => Arc::new(msg),
        Err(e) => return poison::dead_letter(ctx, delivery, e).await,
    };
    enter(&msg);
    let task = ctx.tasks.get(msg.task());
    let facts = Facts {
        now: delivery.taken_at,
        revoked: ctx.registry.is_revoked(msg.id()),
        // Not ours to run, on a queue shared with another fleet's workers.
        foreign: ctx.unknown.handbacks > 0 && task.is_none(),
        eta: msg.eta().map(clock::unix_seconds),
        expires: msg.expires().map(clock::unix_seconds),
    };
    let start = decide::start(&facts);
    // One to run is received once it may start: put off (its rate, a place), it comes back
    // unchanged, maybe many times, and Celery receives a rate-limited task once.
    if start != Start::Run {
        report::received(ctx, &msg, &delivery.queue);
    }
    match start {
        Start::Revoked => return refuse_revoked(ctx, &msg, delivery).await,
        Start::HandBack => return unknown::hand_back_or_fail(ctx, &msg, delivery).await,
        Start::Scheduled(due) => {
            log::info!(
                "task {} [{}] scheduled for {}",
                msg.task(),
                msg.id(),
                msg.envelope.headers.eta.as_deref().unwrap_or_default()
            );
            return schedule(ctx, &msg, delivery, due).await;
        }
        Start::Expired => {
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
        Start::Run => {}
    }
    let _place = match super::admit::admit(ctx, &msg, task, facts.now).await? {
        Err(delay) => return defer(ctx, &msg, delivery, delay).await,
        Ok(place) => place,
    };
    report::received(ctx, &msg, &delivery.queue);
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

/// A task that cannot start yet (see [`super::admit`]) goes back to its queue's schedule for
/// `delay`, as an eta task: unchanged (no attempt counted), holding no slot meanwhile.
async fn defer(
    ctx: &Context,
    msg: &Message,
    delivery: &Delivery,
    delay: Duration,
) -> Result<(), ExecuteError> {
    log::debug!(
        "task {} [{}] waits {:.3}s to start (a place it needs, or its rate limit)",
        msg.task(),
        msg.id(),
        delay.as_secs_f64()
    );
    schedule(ctx, msg, delivery, delivery.taken_at + delay.as_secs_f64()).await
}

/// Parks the delivery in its queue's schedule until `due` (unix seconds), holding no slot.
async fn schedule(
    ctx: &Context,
    msg: &Message,
    delivery: &Delivery,
    due: f64,
) -> Result<(), ExecuteError> {
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

/// STARTED, the run (or its stop by a terminate or the time limit), and its end.
async fn run(
    ctx: &Arc<Context>,
    delivery: &Delivery,
    msg: &Arc<Message>,
    task: Option<&Registered>,
    running: &Running<'_>,
) -> Result<(), ExecuteError> {
    let stop = &running.stop;
    let options = task.map(Registered::options);
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
    let own = ctx.limits.time_limits(msg.task());
    let limit = decide::time_limit(msg.envelope.headers.timelimit, own);
    // A stop drops the task where it waits, which is always before its point of no return
    // (`Stop` lets no stop through after it); the limit stops it the same way.
    let outcome = tokio::select! {
        biased;
        why = stop.stopped() => Err(TaskError::Stopped(why)),
        outcome = run_task(ctx, &delivery.queue, msg, task, stop) => outcome,
        never = super::stop::time_limit(msg, limit, stop) => match never {},
    };
    // A task that ended without passing its point of no return changed nothing: a stop that
    // came as it ended still wins, so `Registry::terminate` is always right about what stops.
    let outcome = match stop.commit() {
        Ok(()) => outcome,
        Err(why) => Err(TaskError::Stopped(why)),
    };
    let retries = msg.envelope.headers.retries;
    let end = decide::end(outcome, retries, &retry::policy(ctx, task), fastrand::f64());
    apply::end(ctx, delivery, msg, end, ack, began).await
}

/// Runs the task (a blocking one off the async threads); an unknown name is Celery's
/// NotRegistered.
async fn run_task(
    ctx: &Arc<Context>,
    queue: &str,
    msg: &Arc<Message>,
    task: Option<&Registered>,
    stop: &Arc<Stop>,
) -> Result<Output, TaskError> {
    let Some(task) = task else {
        return Err(TaskError::Failed(unknown::not_registered(msg)));
    };
    if task.options().blocking {
        return super::blocking::run(ctx, queue, msg, stop).await;
    }
    let deps = ctx.tasks.deps();
    let req = TaskContext::new(msg, &ctx.node, queue, ctx.broker.routes(), stop, deps);
    task.run(&req, &msg.body).await
}
