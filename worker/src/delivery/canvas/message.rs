//! One plain signature as one task message, as Celery's `Signature.apply_async` sends it: its
//! id, queue, priority, group and own `link`/`link_error` from its options, the parent's result
//! in front of its args unless immutable, a child of the running task continuing its W3C trace.

use celery_redis::protocol::{Message, Signature, TaskMessage};
use celery_redis::routes::Routes;
use serde_json::Value;

/// A string option of `sig`.
pub fn opt_str(sig: &Signature, key: &str) -> Option<String> {
    sig.options
        .get(key)
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// The message for `sig`, sent by `parent` (group, chain embed and links are set by the caller).
pub fn from_signature(
    parent: &Message,
    sig: &Signature,
    first_arg: Option<&Value>,
    routes: &Routes,
) -> TaskMessage {
    let headers = &parent.envelope.headers;
    // Its own `queue` option, else its route (the default queue without one), as Celery
    // sends callbacks and chain steps through its router.
    // The option may be a name or a kombu `Queue` as a dict (`{"name": ...}`).
    let queue = opt_str(sig, "queue")
        .or_else(|| {
            let named = sig.options.get("queue")?.get("name")?.as_str()?;
            Some(named.to_owned())
        })
        .unwrap_or_else(|| routes.queue_for(&sig.task).to_owned());
    let mut args = Vec::with_capacity(sig.args.len().saturating_add(1));
    if let (false, Some(v)) = (sig.immutable, first_arg) {
        args.push(v.clone());
    }
    args.extend(sig.args.iter().cloned());
    let mut m = TaskMessage::new(&sig.task, &queue, sig.kwargs.clone());
    m.body.args = args;
    if let Some(id) = opt_str(sig, "task_id") {
        m.id = id;
    }
    if let Some(p) = sig.options.get("priority").and_then(Value::as_i64) {
        m.priority = p;
    }
    // A signature frozen into a group (the last step of a chain in a group) names it.
    m.group = opt_str(sig, "group_id");
    m.group_index = sig.options.get("group_index").and_then(Value::as_i64);
    let root = headers
        .root_id
        .clone()
        .unwrap_or_else(|| parent.id().to_owned());
    traced(m.child_of(parent.id(), &root))
}

pub use celery_redis::task::context::traced;
