//! Signatures applied as Celery's worker applies them when it sends them on: a plain task as one
//! message, a `celery.group` as its members (nested groups flattened into it), a `celery.chain`
//! as its first step carrying the rest ([`super::chain`]), a `celery.chord` as its header
//! ([`super::chord`]); within a bound on what one task may send
//! ([`MAX_CANVAS`] messages, as many signatures carried in chains, [`MAX_DEPTH`] levels).

use celery_redis::protocol::body::MAX_CANVAS;
use celery_redis::protocol::{Message, Signature, TaskMessage};
use celery_redis::routes::Routes;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::message::{from_signature, opt_str};
pub use super::refused::{Refused, MAX_DEPTH};

/// The name Celery gives a group signature.
pub const GROUP: &str = "celery.group";
/// The name Celery gives a chain signature.
pub const CHAIN: &str = "celery.chain";
/// The name Celery gives a chord signature.
pub const CHORD: &str = "celery.chord";

/// Where a signature is applied: the chain its message carries on (reversed, as sent), the
/// group it is a member of and its index there, the body of the chord whose header it is in,
/// and how deep it is nested.
#[derive(Default, Clone)]
pub struct Place {
    /// The chain steps to carry on after it (reversed, as Celery sends them).
    pub(crate) chain: Option<Vec<Signature>>,
    /// The group it is a member of, and its index there.
    pub(crate) group: Option<(String, i64)>,
    /// The body of the chord whose header it is in.
    pub(crate) chord: Option<Value>,
    /// How deep it is in groups and chains (at most [`super::refused::MAX_DEPTH`]).
    pub(crate) depth: usize,
}

/// What applying one signature adds: its entry in the sender's `children` (what Celery's
/// `add_trail` records) and its result as a group member, both as Celery's result tuples.
pub struct Applied {
    /// Its entry in the sender's `children`.
    pub(crate) trail: Value,
    /// Its result as a group member.
    pub(crate) result: Value,
}

/// Applies signatures sent by `parent`, collecting the messages.
pub struct Applier<'a> {
    pub(super) parent: &'a Message,
    routes: &'a Routes,
    /// The messages to publish, in order.
    pub out: Vec<TaskMessage>,
    /// The chords whose header was sent: group id and size (Celery's `.s` key).
    pub chord_sizes: Vec<(String, u64)>,
    pub(super) carried: usize,
}

/// What `sig` is to Celery: its `subtask_type` (which Celery's `signature()` dispatches on) as
/// [`GROUP`], [`CHAIN`] or [`CHORD`], else its task's name.
pub fn kind(sig: &Signature) -> &str {
    match sig.subtask_type.as_deref() {
        Some("group") => GROUP,
        Some("chain") => CHAIN,
        Some("chord") => CHORD,
        _ => &sig.task,
    }
}

/// A task's result as Celery's `AsyncResult.as_tuple()` gives it (no parent).
pub fn tuple(id: &str) -> Value {
    json!([[id, null], null])
}

/// The signatures in a group's or chain's `kwargs.tasks`.
pub fn members(sig: &Signature, what: &'static str) -> Result<Vec<Signature>, Refused> {
    match sig.kwargs.get("tasks") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(list)) => {
            if list.len() > MAX_CANVAS {
                return Err(Refused::TooLarge);
            }
            list.iter()
                .map(|v| {
                    serde_json::from_value(v.clone())
                        .map_err(|e| Refused::Malformed(what, e.to_string()))
                })
                .collect()
        }
        Some(_) => Err(Refused::Malformed(
            what,
            "kwargs.tasks is not a list".into(),
        )),
    }
}

impl<'a> Applier<'a> {
    /// An applier of what `parent` sends on, routed by `routes`; nothing collected yet.
    pub(crate) fn new(parent: &'a Message, routes: &'a Routes) -> Self {
        Applier {
            parent,
            routes,
            out: Vec::new(),
            chord_sizes: Vec::new(),
            carried: 0,
        }
    }

    /// Applies `sig` with the parent's result (or the failed task's id) `arg`; `None` when it
    /// sends nothing that has a result (an empty chain).
    pub fn apply(
        &mut self,
        sig: &Signature,
        arg: Option<&Value>,
        place: Place,
    ) -> Result<Option<Applied>, Refused> {
        if place.depth > MAX_DEPTH {
            return Err(Refused::TooDeep);
        }
        match kind(sig) {
            GROUP => {
                let id = opt_str(sig, "task_id").unwrap_or_else(|| Uuid::new_v4().to_string());
                let tasks = members(sig, "group")?;
                if tasks.is_empty() {
                    // Celery sends nothing for an empty group, nor lists it in `children`.
                    return Ok(None);
                }
                self.group(&id, &tasks, &sig.options, arg, place).map(Some)
            }
            CHAIN => self.chain(sig, arg, place),
            CHORD => self.chord(sig, arg, place),
            _ => self.plain(sig, arg, place).map(Some),
        }
    }

    /// A group `id` of `tasks` (nested groups flattened into it, each member indexed within
    /// its own list as Celery does), each member with the group's `queue`/`priority` options.
    pub fn group(
        &mut self,
        id: &str,
        tasks: &[Signature],
        options: &Map<String, Value>,
        arg: Option<&Value>,
        place: Place,
    ) -> Result<Applied, Refused> {
        let mut results = Vec::new();
        self.members(id, tasks, options, arg, &place, &mut results)?;
        let t = json!([[id, null], results]);
        Ok(Applied {
            trail: t.clone(),
            result: t,
        })
    }

    fn members(
        &mut self,
        id: &str,
        tasks: &[Signature],
        options: &Map<String, Value>,
        arg: Option<&Value>,
        place: &Place,
        results: &mut Vec<Value>,
    ) -> Result<(), Refused> {
        let depth = place.depth.saturating_add(1);
        if depth > MAX_DEPTH {
            return Err(Refused::TooDeep);
        }
        for (index, task) in tasks.iter().enumerate() {
            if kind(task) == GROUP {
                let nested = members(task, "group")?;
                let inner = Place {
                    depth,
                    ..place.clone()
                };
                self.members(id, &nested, options, arg, &inner, results)?;
                continue;
            }
            let mut member = task.clone();
            for key in ["queue", "priority"] {
                if let Some(v) = options.get(key) {
                    member.options.insert(key.to_owned(), v.clone());
                }
            }
            let at = Place {
                group: Some((id.to_owned(), i64::try_from(index).unwrap_or(i64::MAX))),
                depth,
                ..place.clone()
            };
            if let Some(applied) = self.apply(&member, arg, at)? {
                results.push(applied.result);
            }
        }
        Ok(())
    }

    fn plain(
        &mut self,
        sig: &Signature,
        arg: Option<&Value>,
        place: Place,
    ) -> Result<Applied, Refused> {
        if self.out.len() >= MAX_CANVAS {
            return Err(Refused::TooLarge);
        }
        let mut m = from_signature(self.parent, sig, arg, self.routes);
        // The chain it carries on: where it is applied, else its own `chain` option (a chord's
        // body carries the rest of its chain there).
        let own = match sig.options.get("chain") {
            Some(Value::Array(l)) if l.len() > MAX_CANVAS => return Err(Refused::TooManyCarried),
            Some(v @ Value::Array(_)) => Some(
                serde_json::from_value(v.clone())
                    .map_err(|e| Refused::Malformed("chain", e.to_string()))?,
            ),
            _ => None,
        };
        if let Some(chain) = place.chain.or(own) {
            self.carried = self.carried.saturating_add(chain.len());
            if self.carried > MAX_CANVAS {
                return Err(Refused::TooManyCarried);
            }
            m.body.embed.chain = Some(chain);
        }
        if let Some((gid, index)) = place.group {
            m.group = Some(gid);
            m.group_index = Some(index);
        }
        // In a chord's header (here or frozen into it): the body travels with it, and the rest
        // of the chain in the body's options with each copy.
        m.body.embed.chord = place.chord.or_else(|| sig.options.get("chord").cloned());
        let body_chain = m.body.embed.chord.as_ref().and_then(|b| {
            let steps = b.get("options")?.get("chain")?.as_array()?;
            Some(steps.len())
        });
        self.carried = self.carried.saturating_add(body_chain.unwrap_or(0));
        if self.carried > MAX_CANVAS {
            return Err(Refused::TooManyCarried);
        }
        // Its own callbacks and errbacks travel with it, as `apply_async(link=...)` sends them.
        for (key, list) in [
            ("link", &mut m.body.embed.callbacks),
            ("link_error", &mut m.body.embed.errbacks),
        ] {
            let sigs = match sig.options.get(key) {
                None | Some(Value::Null) => continue,
                Some(Value::Array(l)) if l.len() > MAX_CANVAS => return Err(Refused::TooLarge),
                Some(v @ Value::Array(_)) => serde_json::from_value(v.clone()),
                Some(v) => serde_json::from_value(v.clone()).map(|s| vec![s]),
            };
            *list = Some(sigs.map_err(|e| Refused::Malformed("link", e.to_string()))?);
        }
        let t = tuple(&m.id);
        self.out.push(m);
        Ok(Applied {
            trail: t.clone(),
            result: t,
        })
    }
}
