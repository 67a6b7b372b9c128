//! The task events one delivery sends (`task-received` to `task-revoked`), shaped as a Python
//! worker's: `args`, `kwargs`, `result` and `exception` as Python reprs. Each is built only
//! while task events are on; [`celery_redis::events`] batches and sends them.

use celery_redis::protocol::pyrepr;
use celery_redis::protocol::Message;
use celery_redis::result::ExceptionInfo;
use serde_json::{json, Map, Value};

use crate::context::Context;

fn fields(pairs: Vec<(&str, Value)>) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

pub fn received(ctx: &Context, msg: &Message) {
    if !ctx.events.task_events() {
        return;
    }
    let h = &msg.envelope.headers;
    // A producer's reprs are taken as they come, cut as Celery cuts its own.
    let args = match &h.argsrepr {
        Some(r) => pyrepr::cut(r),
        None => pyrepr::args_repr(&msg.body.args),
    };
    let kwargs = match &h.kwargsrepr {
        Some(r) => pyrepr::cut(r),
        None => pyrepr::repr(&Value::Object(msg.body.kwargs.clone())),
    };
    let event = fields(vec![
        ("name", json!(msg.task())),
        ("args", json!(args)),
        ("kwargs", json!(kwargs)),
        ("root_id", json!(h.root_id)),
        ("parent_id", json!(h.parent_id)),
        ("retries", json!(h.retries)),
        ("eta", json!(h.eta)),
        ("expires", json!(h.expires)),
    ]);
    ctx.events.task("task-received", msg.id(), event);
}

pub fn started(ctx: &Context, msg: &Message) {
    ctx.events.task("task-started", msg.id(), Map::new());
}

pub fn succeeded(ctx: &Context, msg: &Message, result: &Value, runtime: f64) {
    if !ctx.events.task_events() {
        return;
    }
    let event = fields(vec![
        ("result", json!(pyrepr::repr(result))),
        ("runtime", json!(runtime)),
    ]);
    ctx.events.task("task-succeeded", msg.id(), event);
}

/// `task-failed`, or `task-retried` when the task goes round again.
pub fn failed(ctx: &Context, msg: &Message, exc: &ExceptionInfo, retried: bool) {
    if !ctx.events.task_events() {
        return;
    }
    let exception = pyrepr::exception_repr(&exc.exc_type, &exc.exc_message);
    let event = fields(vec![
        ("exception", json!(exception)),
        (
            "traceback",
            json!(format!("{}: {}", exc.exc_type, exc.message())),
        ),
    ]);
    let kind = if retried {
        "task-retried"
    } else {
        "task-failed"
    };
    ctx.events.task(kind, msg.id(), event);
}

/// `task-revoked`: refused as revoked, stopped by a terminate (with its signal), or expired.
pub fn revoked(ctx: &Context, id: &str, signum: Option<i32>, expired: bool) {
    let event = fields(vec![
        ("terminated", json!(signum.is_some())),
        ("signum", json!(signum)),
        ("expired", json!(expired)),
    ]);
    ctx.events.task("task-revoked", id, event);
}

/// `task-rejected`: a message dead-lettered instead of run.
pub fn rejected(ctx: &Context, id: &str) {
    ctx.events
        .task("task-rejected", id, fields(vec![("requeue", json!(false))]));
}
