//! What one delivery tells the fleet at each step (`received` to `revoked`): the metrics
//! (always, in memory: celery-exporter's counters and runtime histogram) and the task events,
//! shaped as a Python worker's (`args`, `kwargs`, `result` and `exception` as Python reprs),
//! built only while task events are on; [`celery_redis::events`] batches and sends them.

use celery_redis::events::Field;
use celery_redis::protocol::pyrepr;
use celery_redis::protocol::Message;
use celery_redis::result::ExceptionInfo;
use serde_json::Value;

use observe::metrics::FailedLabels;

use crate::context::Context;
use crate::labels::TaskSeries;

/// The labels of `msg` taken from queue `from` (not its routing key: a named exchange's key
/// need not be a queue's name), with their series.
fn labels<'a>(ctx: &'a Context, msg: &Message, from: &str) -> &'a TaskSeries {
    ctx.labels.of(msg.task(), Some(from))
}

/// `task-received`: a delivery decoded; one to run once it may start (not each time it is put
/// off).
pub(crate) fn received(ctx: &Context, msg: &Message, from: &str) {
    log::info!("Task {}[{}] received", msg.task(), msg.id());
    labels(ctx, msg, from).received(&ctx.metrics.tasks).inc();
    if !ctx.events.task_events() {
        return;
    }
    let h = &msg.envelope.headers;
    // A producer's reprs are taken as they come, cut as Celery cuts its own, URLs cut too.
    let args = match &h.argsrepr {
        Some(r) => pyrepr::truncate(pyrepr::shown_text(r)),
        None => pyrepr::args_repr(&msg.body.args),
    };
    let kwargs = match &h.kwargsrepr {
        Some(r) => pyrepr::truncate(pyrepr::shown_text(r)),
        None => pyrepr::kwargs_repr(&msg.body.kwargs),
    };
    let event = [
        ("name", Field::Str(msg.task())),
        ("args", Field::Str(&args)),
        ("kwargs", Field::Str(&kwargs)),
        ("root_id", Field::OptStr(h.root_id.as_deref())),
        ("parent_id", Field::OptStr(h.parent_id.as_deref())),
        ("retries", Field::Int(Some(h.retries))),
        ("eta", Field::OptStr(h.eta.as_deref())),
        ("expires", Field::OptStr(h.expires.as_deref())),
    ];
    ctx.events.task("task-received", msg.id(), &event);
}

/// `task-started`, just before the task runs.
pub(crate) fn started(ctx: &Context, msg: &Message, from: &str) {
    labels(ctx, msg, from).started(&ctx.metrics.tasks).inc();
    ctx.events.task("task-started", msg.id(), &[]);
}

/// `task-succeeded`, with the result's repr and the runtime in seconds (also observed in the
/// runtime histogram).
pub(crate) fn succeeded(
    ctx: &Context,
    msg: &Message,
    from: &str,
    result: Option<&Value>,
    runtime: f64,
) {
    let l = labels(ctx, msg, from);
    l.runtime(&ctx.metrics.tasks).observe(runtime);
    l.succeeded(&ctx.metrics.tasks).inc();
    let Some(result) = result else {
        return;
    };
    if !ctx.events.task_events() {
        return;
    }
    let result = pyrepr::repr(result);
    let event = [
        ("result", Field::Str(&result)),
        ("runtime", Field::Float(runtime)),
    ];
    ctx.events.task("task-succeeded", msg.id(), &event);
}

/// `task-failed`, or `task-retried` when the task goes round again.
pub fn failed(ctx: &Context, msg: &Message, from: &str, exc: &ExceptionInfo, retried: bool) {
    let l = &labels(ctx, msg, from).labels;
    if retried {
        ctx.metrics.tasks.retried.get_or_create(l).inc();
    } else {
        // Exception names come from this worker's own code (a bounded set).
        let failed = FailedLabels {
            name: l.name.clone(),
            hostname: l.hostname.clone(),
            exception: exc.exc_type.clone(),
            queue_name: l.queue_name.clone(),
        };
        ctx.metrics.tasks.failed.get_or_create(&failed).inc();
    }
    if !ctx.events.task_events() {
        return;
    }
    let exception = pyrepr::exception_repr(&exc.exc_type, &exc.exc_message);
    let traceback = format!("{}: {}", exc.exc_type, exc.message());
    let event = [
        ("exception", Field::Str(&exception)),
        ("traceback", Field::Str(&traceback)),
    ];
    let kind = if retried {
        "task-retried"
    } else {
        "task-failed"
    };
    ctx.events.task(kind, msg.id(), &event);
}

/// `task-revoked`: refused as revoked, stopped by a terminate (with its signal), or expired.
pub fn revoked(ctx: &Context, msg: &Message, from: &str, signum: Option<i32>, expired: bool) {
    let id = msg.id();
    ctx.metrics
        .tasks
        .revoked
        .get_or_create(&labels(ctx, msg, from).labels)
        .inc();
    let event = [
        ("terminated", Field::Bool(signum.is_some())),
        ("signum", Field::Int(signum.map(i64::from))),
        ("expired", Field::Bool(expired)),
    ];
    ctx.events.task("task-revoked", id, &event);
}

/// `task-rejected`: a message dead-lettered instead of run.
pub fn rejected(ctx: &Context, id: &str, name: Option<&str>) {
    let l = &ctx.labels.of(name.unwrap_or_default(), None).labels;
    ctx.metrics.tasks.rejected.get_or_create(l).inc();
    ctx.events
        .task("task-rejected", id, &[("requeue", Field::Bool(false))]);
}
