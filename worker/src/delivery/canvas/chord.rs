//! A `celery.chord` sent on by a task, applied as Celery's `chord.run` applies it from a worker:
//! its header sent as a group (the header's id, each member carrying the body in `embed.chord`),
//! the body frozen with its id, the header's group id, the root and the rest of the chain in its
//! options, and the chord's size recorded for Celery's `.s` key. The join is whoever runs the
//! members: a Python worker, or the Rust worker's chord join.

use celery_redis::protocol::Signature;
use serde_json::{json, Value};
use uuid::Uuid;

use super::apply::{kind, members, Applied, Applier, Place, CHAIN, CHORD, GROUP};
use super::message::opt_str;
use super::refused::{Refused, MAX_DEPTH};

fn parse(v: Option<&Value>, what: &'static str) -> Result<Signature, Refused> {
    let v = v.ok_or(Refused::Malformed(what, "missing".into()))?;
    serde_json::from_value(v.clone()).map_err(|e| Refused::Malformed(what, e.to_string()))
}

/// How many members complete a chord whose header holds `sig`, as Celery counts them
/// (`_chord._descend`): a task 1, a group the sum of its members, a chain its last step that
/// counts, a chord its body.
fn size(sig: &Signature, depth: usize) -> Result<u64, Refused> {
    if depth > MAX_DEPTH {
        return Err(Refused::TooDeep);
    }
    let depth = depth.saturating_add(1);
    Ok(match kind(sig) {
        GROUP => {
            let mut sum = 0u64;
            for m in members(sig, "group")? {
                sum = sum.saturating_add(size(&m, depth)?);
            }
            sum
        }
        CHAIN => {
            for step in members(sig, "chain")?.iter().rev() {
                let n = size(step, depth)?;
                if n > 0 {
                    return Ok(n);
                }
            }
            0
        }
        CHORD => size(&parse(sig.kwargs.get("body"), "chord body")?, depth)?,
        _ => 1,
    })
}

impl Applier<'_> {
    /// Applies the chord `sig` with `arg` in front of its header members' arguments.
    pub(super) fn chord(
        &mut self,
        sig: &Signature,
        arg: Option<&Value>,
        place: Place,
    ) -> Result<Option<Applied>, Refused> {
        // A chord inside a group or a chord's header takes that group's id as its body's in
        // Celery, a nesting this worker does not reproduce.
        if place.group.is_some() || place.chord.is_some() {
            return Err(Refused::Chord);
        }
        let header = parse(sig.kwargs.get("header"), "chord header")?;
        let (tasks, options) = match kind(&header) {
            GROUP => (members(&header, "chord header")?, header.options.clone()),
            _ => (vec![header.clone()], Default::default()),
        };
        let mut body = parse(sig.kwargs.get("body"), "chord body")?;
        let group_id = opt_str(&header, "task_id")
            .or_else(|| opt_str(sig, "task_id"))
            .unwrap_or_else(|| Uuid::new_v4().to_string());
        let body_id = opt_str(&body, "task_id")
            .or_else(|| opt_str(sig, "task_id"))
            .unwrap_or_else(|| Uuid::new_v4().to_string());
        let depth = place.depth.saturating_add(1);
        let arg = if sig.immutable { None } else { arg };
        if tasks.is_empty() {
            // Nothing would complete it: Celery sends the body at once with `[]`.
            let at = Place {
                chain: place.chain,
                depth,
                ..Place::default()
            };
            body.options
                .insert("task_id".into(), Value::String(body_id));
            return self.apply(&body, Some(&json!([])), at);
        }
        let root = self.parent.envelope.headers.root_id.clone();
        let root = root.unwrap_or_else(|| self.parent.id().to_owned());
        let frozen = [
            ("task_id", Value::String(body_id.clone())),
            ("group_id", Value::String(group_id.clone())),
            ("root_id", Value::String(root)),
        ];
        for (key, value) in frozen {
            body.options.insert(key.into(), value);
        }
        if let Some(rest) = place.chain {
            // The rest of the chain runs after the body: it travels in the body's options (each
            // copy counted as the members are sent).
            let rest = serde_json::to_value(rest).unwrap_or_default();
            body.options.insert("chain".into(), rest);
        }
        let mut chord_size = 0u64;
        for task in &tasks {
            chord_size = chord_size.saturating_add(size(task, depth)?);
        }
        let at = Place {
            chord: Some(serde_json::to_value(&body).unwrap_or_default()),
            depth,
            ..Place::default()
        };
        let header = self.group(&group_id, &tasks, &options, arg, at)?;
        self.chord_sizes.push((group_id, chord_size));
        Ok(Some(Applied {
            result: json!([[body_id, header.result], null]),
            trail: header.trail,
        }))
    }
}
