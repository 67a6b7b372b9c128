//! What a finished task sends on, as a Celery worker does: the next chain step and `link`
//! callbacks after a success, `link_error` errbacks after a failure; each, like a task's own
//! children, continues the running task's W3C trace ([`traced`]).

use celery_redis::protocol::{Message, Signature, TaskMessage};
use celery_redis::routes::Routes;
use serde_json::Value;
use uuid::Uuid;

/// Messages to publish after `msg` succeeded with `result`.
pub fn on_success(msg: &Message, result: &Value, routes: &Routes) -> Vec<TaskMessage> {
    let mut out = Vec::new();
    let embed = &msg.body.embed;
    if let Some(mut rest) = embed.chain.clone().filter(|c| !c.is_empty()) {
        if let Some(next) = rest.pop() {
            let mut step = from_signature(msg, &next, Some(result), routes);
            // The rest travels with the next step; `[]` when nothing is left (as Celery sends).
            step.body.embed.chain = Some(rest);
            out.push(step);
        }
    }
    out.extend(group(
        msg,
        embed.callbacks.as_deref().unwrap_or_default(),
        Some(result),
        routes,
    ));
    out
}

/// Errbacks to publish after `msg` failed: each gets the failed task's id first.
pub fn on_failure(msg: &Message, routes: &Routes) -> Vec<TaskMessage> {
    let id = Value::String(msg.id().to_owned());
    group(
        msg,
        msg.body.embed.errbacks.as_deref().unwrap_or_default(),
        Some(&id),
        routes,
    )
}

/// One signature becomes one message; several share a group id with their index.
/// `first_arg` goes in front of each one's arguments unless it is immutable.
pub fn group(
    msg: &Message,
    sigs: &[Signature],
    first_arg: Option<&Value>,
    routes: &Routes,
) -> Vec<TaskMessage> {
    let group_id = (sigs.len() > 1).then(|| Uuid::new_v4().to_string());
    sigs.iter()
        .enumerate()
        .map(|(i, sig)| {
            let mut m = from_signature(msg, sig, first_arg, routes);
            if let Some(g) = &group_id {
                m.group = Some(g.clone());
                m.group_index = Some(i as i64);
            }
            m
        })
        .collect()
}

/// The message of `sig`, sent by the running task `parent` (its child, in its trace), to its
/// `queue` option or its route, with its pre-assigned `task_id` and its `priority`.
pub fn from_signature(
    parent: &Message,
    sig: &Signature,
    first_arg: Option<&Value>,
    routes: &Routes,
) -> TaskMessage {
    let opt_str = |k: &str| {
        sig.options
            .get(k)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let headers = &parent.envelope.headers;
    // Its own `queue` option, else its route (the default queue without one), as Celery
    // sends callbacks and chain steps through its router.
    // The option may be a name or a kombu `Queue` as a dict (`{"name": ...}`).
    let queue = opt_str("queue")
        .or_else(|| {
            let named = sig.options.get("queue")?.get("name")?.as_str()?;
            Some(named.to_owned())
        })
        .unwrap_or_else(|| routes.queue_for(&sig.task).to_owned());
    let mut args = Vec::with_capacity(sig.args.len() + 1);
    if let (false, Some(v)) = (sig.immutable, first_arg) {
        args.push(v.clone());
    }
    args.extend(sig.args.iter().cloned());
    let mut m = TaskMessage::new(&sig.task, &queue, sig.kwargs.clone());
    m.body.args = args;
    if let Some(id) = opt_str("task_id") {
        m.id = id;
    }
    if let Some(p) = sig.options.get("priority").and_then(Value::as_i64) {
        m.priority = p;
    }
    let root = headers
        .root_id
        .clone()
        .unwrap_or_else(|| parent.id().to_owned());
    traced(m.child_of(parent.id(), &root))
}

pub use celery_redis::task::context::traced;
