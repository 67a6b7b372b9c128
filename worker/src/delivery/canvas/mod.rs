//! What a finished task sends on, as a Celery worker does: `link` callbacks and the next chain
//! step after a success, `link_error` errbacks after a failure. A signature may itself be a
//! group, a chain or a chord ([`apply`]); each message, like a task's own children, continues the
//! running task's W3C trace ([`traced`]).
//! - [`message`] — one plain signature as one message;
//! - [`apply`] — groups applied, within bounds ([`refused`] beyond);
//! - [`chain`] — a chain's first step carrying the rest;
//! - [`chord`] — a chord's header sent with its body, its size for the join.

pub mod apply;
pub mod chain;
pub mod chord;
pub mod message;
pub mod refused;

use celery_redis::protocol::{Message, Signature, TaskMessage};
use celery_redis::routes::Routes;
use serde_json::Value;
use uuid::Uuid;

use apply::{kind, Applier, Place, Refused, GROUP};
pub use message::traced;

/// What a task sends on: the messages, what its SUCCESS lists in `children` for them, and the
/// size of each chord whose header it sends (group id, size), for Celery's `.s` key.
pub struct Sent {
    /// The messages to publish, in order.
    pub(crate) messages: Vec<TaskMessage>,
    /// Their entries in the SUCCESS's `children` (Celery's result tuples).
    pub(crate) children: Vec<Value>,
    /// Each chord whose header is sent: its group id and size.
    pub(crate) chord_sizes: Vec<(String, u64)>,
}

/// What to publish after `msg` succeeded with `result`: as Celery's worker, one callback is
/// applied alone, several are applied with the plain ones in one new group and each group on
/// its own; then the next chain step with the rest of the chain.
pub fn on_success(msg: &Message, result: &Value, routes: &Routes) -> Result<Sent, Refused> {
    let mut a = Applier::new(msg, routes);
    let mut children = Vec::new();
    let embed = &msg.body.embed;
    let callbacks = embed.callbacks.as_deref().unwrap_or_default();
    if let [one] = callbacks {
        children.extend(
            a.apply(one, Some(result), Place::default())?
                .map(|x| x.trail),
        );
    } else if !callbacks.is_empty() {
        let (groups, plain): (Vec<_>, Vec<_>) = callbacks.iter().partition(|s| kind(s) == GROUP);
        for g in groups {
            children.extend(a.apply(g, Some(result), Place::default())?.map(|x| x.trail));
        }
        if !plain.is_empty() {
            let plain: Vec<_> = plain.into_iter().cloned().collect();
            let id = Uuid::new_v4().to_string();
            let applied = a.group(
                &id,
                &plain,
                &Default::default(),
                Some(result),
                Place::default(),
            )?;
            children.push(applied.trail);
        }
    }
    if let Some(mut rest) = embed.chain.clone().filter(|c| !c.is_empty()) {
        if let Some(next) = rest.pop() {
            // The rest travels with the next step; `[]` when nothing is left (as Celery sends).
            let place = Place {
                chain: Some(rest),
                ..Place::default()
            };
            children.extend(a.apply(&next, Some(result), place)?.map(|x| x.trail));
        }
    }
    Ok(Sent {
        messages: a.out,
        children,
        chord_sizes: a.chord_sizes,
    })
}

/// Everything one signature sends when the running task `msg` applies it with `first_arg`, as
/// `sig.apply_async((first_arg,))` does: a chord's body sent by the join, with the rest of the
/// chain, links and group its options carry (a group or chain body applied as such).
pub fn apply_one(
    msg: &Message,
    sig: &Signature,
    first_arg: Option<&Value>,
    routes: &Routes,
) -> Result<Sent, Refused> {
    let mut a = Applier::new(msg, routes);
    let children = a.apply(sig, first_arg, Place::default())?;
    Ok(Sent {
        messages: a.out,
        children: children.map(|x| x.trail).into_iter().collect(),
        chord_sizes: a.chord_sizes,
    })
}

/// Errbacks to publish after `msg` failed: as Celery's result backend, all in one new group
/// (a group errback flattened into it), each with the failed task's id first (a chord among
/// them is refused, as in any group).
pub fn on_failure(msg: &Message, routes: &Routes) -> Result<Vec<TaskMessage>, Refused> {
    let errbacks = msg.body.embed.errbacks.as_deref().unwrap_or_default();
    let mut a = Applier::new(msg, routes);
    if !errbacks.is_empty() {
        let id = Value::String(msg.id().to_owned());
        let group = Uuid::new_v4().to_string();
        a.group(
            &group,
            errbacks,
            &Default::default(),
            Some(&id),
            Place::default(),
        )?;
    }
    Ok(a.out)
}

#[cfg(test)]
mod tests;
