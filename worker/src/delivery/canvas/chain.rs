//! A `celery.chain` sent on by a task, applied as Celery's `chain.run` applies it: nested chains
//! spliced, `group | next` made the chord Celery makes of it, every step frozen with its id, the
//! first step sent with the rest (reversed) in its `chain`; the chain's own options as Celery
//! passes them (`queue`/`priority` to the first step, `link` to the last, `link_error` to each).

use celery_redis::protocol::body::MAX_CANVAS;
use celery_redis::protocol::Signature;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::apply::{kind, members, Applied, Applier, Place, CHAIN, CHORD, GROUP};
use super::message::opt_str;
use super::refused::{Refused, MAX_DEPTH};

/// `header | body` as the chord signature Celery makes of a group followed by a chain step.
fn chord_of(header: Signature, body: Signature) -> Signature {
    let mut kwargs = Map::new();
    kwargs.insert(
        "header".into(),
        serde_json::to_value(header).unwrap_or_default(),
    );
    kwargs.insert(
        "body".into(),
        serde_json::to_value(body).unwrap_or_default(),
    );
    kwargs.insert("kwargs".into(), Value::Object(Map::new()));
    Signature {
        task: CHORD.into(),
        args: Vec::new(),
        kwargs,
        options: Map::new(),
        subtask_type: Some("chord".into()),
        immutable: false,
        extra: Map::new(),
    }
}

/// A `link`/`link_error` option as a list (one signature or several).
fn listed(v: Option<&Value>) -> Vec<Value> {
    match v {
        Some(Value::Array(l)) => l.clone(),
        Some(Value::Null) | None => Vec::new(),
        Some(one) => vec![one.clone()],
    }
}

/// Adds `more` to the `key` list option of `step`, within [`MAX_CANVAS`].
fn append(step: &mut Signature, key: &str, more: &[Value]) -> Result<(), Refused> {
    let mut list = listed(step.options.get(key));
    if list.len().saturating_add(more.len()) > MAX_CANVAS {
        return Err(Refused::TooLarge);
    }
    list.extend(more.iter().cloned());
    step.options.insert(key.into(), Value::Array(list));
    Ok(())
}

/// The chain's own options as `chain.run` passes them: `queue`/`priority` to the first step,
/// `link` to the last, `link_error` to every step (bounded: as many copies as [`MAX_CANVAS`]).
fn own_options(sig: &Signature, steps: &mut [Signature]) -> Result<(), Refused> {
    if let Some(first) = steps.first_mut() {
        for key in ["queue", "priority"] {
            if let Some(v) = sig.options.get(key) {
                first.options.insert(key.into(), v.clone());
            }
        }
    }
    let link = listed(sig.options.get("link"));
    if let (false, Some(last)) = (link.is_empty(), steps.last_mut()) {
        append(last, "link", &link)?;
    }
    let errbacks = listed(sig.options.get("link_error"));
    if errbacks.len().saturating_mul(steps.len()) > MAX_CANVAS {
        return Err(Refused::TooManyCarried);
    }
    if !errbacks.is_empty() {
        for step in steps.iter_mut() {
            append(step, "link_error", &errbacks)?;
        }
    }
    Ok(())
}

impl Applier<'_> {
    /// A chain: its first step sent with the rest (nested chains spliced) in its `chain`, after
    /// what `place` already carries; in a group (or chord header), its last step names it.
    pub(super) fn chain(
        &mut self,
        sig: &Signature,
        arg: Option<&Value>,
        place: Place,
    ) -> Result<Option<Applied>, Refused> {
        let mut steps = Vec::new();
        self.splice(sig, &mut steps, place.depth)?;
        let Some(last) = steps.len().checked_sub(1) else {
            return Ok(None);
        };
        // Celery makes `group | next` a chord before sending the chain (from the end).
        for i in (0..last).rev() {
            let next = i.saturating_add(1);
            if next < steps.len() && steps.get(i).is_some_and(|s| kind(s) == GROUP) {
                let body = steps.remove(next);
                let header = steps.remove(i);
                steps.insert(i, chord_of(header, body));
            }
        }
        let Some(last) = steps.len().checked_sub(1) else {
            return Ok(None);
        };
        // Frozen as Celery freezes a chain: every task gets its id now (a group or chord gets
        // its ids when it is applied).
        let is_task = |s: &Signature| ![GROUP, CHORD].contains(&kind(s));
        for step in steps.iter_mut().filter(|s| is_task(s)) {
            if !step.options.contains_key("task_id") {
                let id = Uuid::new_v4().to_string();
                step.options.insert("task_id".into(), Value::String(id));
            }
        }
        // The chain's result, as Celery's: its last task, the steps before as its parents.
        let nested = steps.iter().try_fold(Value::Null, |parent, step| {
            let id = opt_str(step, "task_id").filter(|_| is_task(step))?;
            Some(json!([[id, parent], null]))
        });
        // In a chord's header, the last step must be a task: a group there would be applied
        // later under an id of its own and without the body, a chord with a body of its own,
        // so nothing would ever complete the outer chord.
        if place.chord.is_some() && steps.last().is_some_and(|s| !is_task(s)) {
            return Err(Refused::Chord);
        }
        own_options(sig, &mut steps)?;
        let (mut first_group, mut first_chord) = (None, None);
        match steps.get_mut(last) {
            Some(step) if last > 0 => {
                if let Some((gid, index)) = place.group {
                    step.options.insert("group_id".into(), Value::String(gid));
                    step.options
                        .insert("group_index".into(), Value::from(index));
                }
                if let Some(body) = place.chord {
                    step.options.insert("chord".into(), body);
                }
            }
            _ => (first_group, first_chord) = (place.group, place.chord),
        }
        let mut rest = steps.split_off(1);
        let Some(mut first) = steps.pop() else {
            return Ok(None);
        };
        if !first.immutable && !sig.args.is_empty() {
            first.args = sig.args.iter().chain(&first.args).cloned().collect();
        }
        rest.reverse();
        let mut carried = place.chain.unwrap_or_default();
        carried.extend(rest);
        let at = Place {
            chain: Some(carried),
            group: first_group,
            chord: first_chord,
            depth: place.depth.saturating_add(1),
        };
        let arg = if sig.immutable { None } else { arg };
        let applied = self.apply(&first, arg, at)?;
        Ok(applied.map(|a| Applied {
            result: nested.unwrap_or_else(|| a.result.clone()),
            trail: a.trail,
        }))
    }

    fn splice(
        &self,
        sig: &Signature,
        steps: &mut Vec<Signature>,
        depth: usize,
    ) -> Result<(), Refused> {
        if depth > MAX_DEPTH {
            return Err(Refused::TooDeep);
        }
        for step in members(sig, "chain")? {
            if kind(&step) == CHAIN {
                self.splice(&step, steps, depth.saturating_add(1))?;
            } else {
                steps.push(step);
            }
            if steps.len() > MAX_CANVAS {
                return Err(Refused::TooManyCarried);
            }
        }
        Ok(())
    }
}
