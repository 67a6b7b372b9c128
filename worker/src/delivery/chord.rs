//! A chord header member's end, as Celery's Redis backend does it (`on_chord_part_return`):
//! the member joins its chord ([`celery_redis::result::ResultBackend::join_chord`]); the one
//! that completes it publishes the body with the results in header order, or, when a member
//! failed, stores the body's FAILURE (`ChordError`) and publishes the body's errbacks
//! (`chord_error_from_stack`) — in the step that ends it ([`super::ending::end`]).

use celery_redis::protocol::body::MAX_CANVAS;
use celery_redis::protocol::{Message, Signature, TaskMessage};
use celery_redis::result::chord::{chord_error, unpack};
use celery_redis::result::{
    ChordEnd, ChordKeys, ChordMember, ExceptionInfo, Join, ResultError, ResultMeta,
};
use serde_json::Value;

use super::canvas;
use crate::context::Context;

/// What `msg`, ending in `meta`, does for its chord: `None` when it is in none, or the body is
/// not its to publish.
pub async fn member_end(
    ctx: &Context,
    msg: &Message,
    meta: &ResultMeta,
) -> Result<Option<ChordEnd>, ResultError> {
    let body = match &msg.body.embed.chord {
        Some(body) if !body.is_null() => body,
        _ => return Ok(None),
    };
    let headers = &msg.envelope.headers;
    let Some(group_id) = headers.group.as_deref().filter(|g| !g.is_empty()) else {
        return Ok(None);
    };
    if !meta.status.is_ready() {
        return Ok(None);
    }
    let member = ChordMember {
        group_id,
        task_id: msg.id(),
        group_index: headers.group_index,
        meta,
    };
    let max_bytes = ctx.broker.limits().max_bytes;
    let join = ctx
        .results
        .join_chord(&member, ctx.chord_ordered, max_bytes)
        .await?;
    let outcome = match join {
        Join::NotMine => return Ok(None),
        Join::Complete(entries) => unpack(&entries),
        Join::Broken(reason) => Err(chord_error(reason)),
    };
    let mut end = ChordEnd {
        keys: ChordKeys::new(group_id),
        member: member.name(),
        publish: Vec::new(),
        body_result: None,
    };
    let sig = match serde_json::from_value::<Signature>(body.clone()) {
        Ok(sig) => sig,
        Err(e) => {
            // No id to fail: the claim is still released.
            log::error!(
                "chord {group_id}: its body is not a signature ({e}); nothing is published"
            );
            return Ok(Some(end));
        }
    };
    let routes = ctx.broker.routes();
    let exc = match (outcome, sig.subtask_type.as_deref()) {
        (Ok(results), None) => {
            match canvas::apply_one(msg, &sig, Some(&Value::Array(results)), routes) {
                // The results travel base64-encoded in the body's message: one over the
                // limit would only be dead-lettered by the worker that takes it.
                Ok(sent)
                    if sent
                        .messages
                        .iter()
                        .any(|m| too_large(m, &ctx.node, max_bytes)) =>
                {
                    chord_error(format!(
                        "Join error: the body's message with the header's results is larger \
                         than {max_bytes} bytes"
                    ))
                }
                Ok(sent) if sent.chord_sizes.is_empty() => {
                    log::info!(
                        "chord {group_id} complete: publishing its body {}",
                        sig.task
                    );
                    end.publish = sent.messages;
                    return Ok(Some(end));
                }
                Ok(_) => not_published("its body sends a chord on".to_owned()),
                Err(refused) => refused.exception(),
            }
        }
        (Ok(_), Some(kind)) => not_published(format!("its body is a {kind} signature")),
        (Err(exc), _) => exc,
    };
    // The body's id gets a FAILURE saying why, rather than staying PENDING for good.
    let (publish, meta) = body_failure(msg, &sig, &exc, routes);
    log::error!("Chord {group_id} raised: {}", exc.message());
    end.publish = publish;
    end.body_result = Some(meta);
    Ok(Some(end))
}

/// Whether `m`'s envelope, sent from `node`, is larger than `max_bytes`.
fn too_large(m: &TaskMessage, node: &str, max_bytes: usize) -> bool {
    m.to_json(node).len() > max_bytes
}

/// Why a chord's body is not published by the Rust worker: `NotImplementedError`, as for
/// a chord sent on from a group.
fn not_published(what: String) -> ExceptionInfo {
    ExceptionInfo::new(
        "builtins",
        "NotImplementedError",
        format!("the chord is complete, but {what}, which the Rust worker does not publish"),
    )
}

/// The body's FAILURE with `exc` and its errbacks, each given the body's id first (parent and
/// root), as `chord_error_from_stack` sends errbacks that are signatures.
fn body_failure(
    msg: &Message,
    sig: &Signature,
    exc: &ExceptionInfo,
    routes: &celery_redis::routes::Routes,
) -> (Vec<TaskMessage>, ResultMeta) {
    let body_id = sig
        .options
        .get("task_id")
        .and_then(Value::as_str)
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    let errbacks = signatures(sig, "link_error").unwrap_or_default();
    let id = Value::String(body_id.clone());
    // Several go out as one group, as Celery's result backend sends errbacks.
    let group = (errbacks.len() > 1).then(|| uuid::Uuid::new_v4().to_string());
    let publish = errbacks
        .iter()
        .enumerate()
        .map(|(i, sig)| {
            let mut m = canvas::message::from_signature(msg, sig, Some(&id), routes);
            if let Some(g) = &group {
                m.group = Some(g.clone());
                m.group_index = i64::try_from(i).ok();
            }
            m.child_of(&body_id, &body_id)
        })
        .collect();
    let traceback = Some(format!(
        "{}.{}: {}",
        exc.exc_module,
        exc.exc_type,
        exc.message()
    ));
    (publish, ResultMeta::failure(&body_id, exc, traceback))
}

/// The signatures in `sig`'s option `name` (`link`, `link_error`): one or a list (at most
/// [`MAX_CANVAS`], as for a message's own); what does not read as a signature is left out.
fn signatures(sig: &Signature, name: &str) -> Option<Vec<Signature>> {
    let one = |s: &Value| serde_json::from_value::<Signature>(s.clone()).ok();
    match sig.options.get(name)? {
        Value::Array(list) => Some(list.iter().filter_map(one).take(MAX_CANVAS).collect()),
        single @ Value::Object(_) => one(single).map(|s| vec![s]),
        _ => None,
    }
}
