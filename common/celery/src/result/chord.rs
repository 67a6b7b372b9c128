//! Celery's Redis chord join (`on_chord_part_return`), for a chord header member that ends
//! here: [`ResultBackend::join_chord`] adds its result to the group's join key in the keys
//! Celery 5.4 and 5.7 workers use (`celery-taskset-meta-<gid>.j`, `.t`, `.s`, `.d`, `.c`), and
//! says whether this member is the one that publishes the body; [`unpack`] turns the joined
//! entries into the body's first argument, or the `ChordError` a failed member causes. The
//! body is published by [`crate::broker::Broker::finish_with`] with a [`ChordEnd`].

use serde_json::Value;

use super::backend::{ResultBackend, ResultError};
use super::meta::{ExceptionInfo, ResultMeta};
use crate::protocol::pyrepr::exception_repr;
use crate::protocol::TaskMessage;
use crate::scripts::CHORD_JOIN;

/// The keys of one chord's join, as Celery names them.
#[derive(Debug, Clone, PartialEq)]
pub struct ChordKeys {
    /// `celery-taskset-meta-<gid>.j`: the members' `[1, tid, state, result]`.
    pub join: String,
    /// `.t`: a difference to the size (Celery's counter; usually absent).
    pub counter: String,
    /// `.s`: the chord's size, set by the producer.
    pub size: String,
    /// `.d`: the members already joined, `tid:index` (Celery 5.7).
    pub dedup: String,
    /// `.c`: who publishes the body (Celery 5.7's claim), then `done`.
    pub claim: String,
    /// `celery-taskset-meta-<gid>`: a saved GroupResult.
    pub group: String,
}

impl ChordKeys {
    /// The keys of the chord whose header is group `group_id`.
    pub fn new(group_id: &str) -> Self {
        let group = format!("celery-taskset-meta-{group_id}");
        ChordKeys {
            join: format!("{group}.j"),
            counter: format!("{group}.t"),
            size: format!("{group}.s"),
            dedup: format!("{group}.d"),
            claim: format!("{group}.c"),
            group,
        }
    }
}

/// A chord header member as it joins.
#[derive(Debug, Clone, Copy)]
pub struct ChordMember<'a> {
    /// The header's group id (the message's `group` header).
    pub group_id: &'a str,
    /// The member's task id.
    pub task_id: &'a str,
    /// Its `group_index` (its place in the header).
    pub group_index: Option<i64>,
    /// Its final state and result, as stored.
    pub meta: &'a ResultMeta,
}

impl ChordMember<'_> {
    /// How `.c` and `.d` name this member: `tid:index` (`+inf` without an index).
    pub fn name(&self) -> String {
        format!("{}:{}", self.task_id, self.score())
    }

    fn score(&self) -> String {
        self.group_index
            .map_or_else(|| "+inf".to_owned(), |i| i.to_string())
    }
}

/// What the join said about a member.
#[derive(Debug, Clone, PartialEq)]
pub enum Join {
    /// The body is not this member's to publish: the chord waits for others, another member
    /// (or a Python worker) publishes it, or it was finished before.
    NotMine,
    /// This member publishes the body; the members' entries in header order.
    Complete(Vec<Value>),
    /// This member publishes, but the chord cannot be joined here: the reason (a
    /// `ChordError` for the body).
    Broken(String),
}

/// What a member that completed its chord publishes and stores, in the step that ends it.
#[derive(Debug, Clone)]
pub struct ChordEnd {
    /// The chord's keys.
    pub keys: ChordKeys,
    /// The member, as `.c` names it ([`ChordMember::name`]).
    pub member: String,
    /// The body (with the results), or the body's errbacks after a failure.
    pub publish: Vec<TaskMessage>,
    /// The body's FAILURE after a failure.
    pub body_result: Option<ResultMeta>,
}

impl ResultBackend {
    /// Joins `member` into its chord (once per member, however often it runs). `ordered`:
    /// Celery's `result_chord_ordered` (a ZSET by index, else a LIST in arrival order);
    /// `max_bytes`: the most bytes of entries read back.
    pub async fn join_chord(
        &self,
        member: &ChordMember<'_>,
        ordered: bool,
        max_bytes: usize,
    ) -> Result<Join, ResultError> {
        let keys = ChordKeys::new(member.group_id);
        let entry = serde_json::to_string(&(
            1,
            member.task_id,
            member.meta.status.as_str(),
            &member.meta.result,
        ))?;
        let reply: Vec<Value> = CHORD_JOIN
            .key(&keys.join)
            .key(&keys.counter)
            .key(&keys.size)
            .key(&keys.dedup)
            .key(&keys.claim)
            .key(&keys.group)
            .arg(member.task_id)
            .arg(entry)
            .arg(if ordered { "1" } else { "0" })
            .arg(member.score())
            .arg(self.expires_secs())
            .arg(max_bytes)
            .invoke_async(&mut self.connection().clone())
            .await
            .map(|v: redis::Value| values(&v))?;
        let what = reply.first().and_then(Value::as_str).unwrap_or_default();
        Ok(match what {
            "complete" => Join::Complete(reply.into_iter().skip(1).collect()),
            "broken" => Join::Broken(
                "Join error: the chord's keys hold what Celery does not keep there (another \
                 type, a size that is no integer or below 1, or members joined with another \
                 result_chord_ordered)"
                    .to_owned(),
            ),
            "nested" => Join::Broken(
                "Join error: the chord header holds groups, which the Rust worker does not join"
                    .to_owned(),
            ),
            "large" => Join::Broken(format!(
                "Join error: the header's results are larger than {max_bytes} bytes"
            )),
            _ => Join::NotMine,
        })
    }
}

/// The script's reply as JSON values: bulk strings decoded as the entries' JSON (a string
/// that is not JSON stays a string).
fn values(v: &redis::Value) -> Vec<Value> {
    let redis::Value::Array(items) = v else {
        return Vec::new();
    };
    items
        .iter()
        .map(|item| match item {
            redis::Value::BulkString(b) => serde_json::from_slice(b)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(b).into_owned())),
            redis::Value::Int(n) => Value::from(*n),
            _ => Value::Null,
        })
        .collect()
}

/// The body's first argument from the joined entries `[1, tid, state, result]`, in header
/// order; the first member in a propagating state (FAILURE, REVOKED) makes it Celery's
/// `ChordError('Dependency <tid> raised <repr>')` instead.
pub fn unpack(entries: &[Value]) -> Result<Vec<Value>, ExceptionInfo> {
    let mut results = Vec::with_capacity(entries.len());
    for entry in entries {
        let parts = entry.as_array().map(Vec::as_slice).unwrap_or_default();
        let [_, tid, state, result] = parts else {
            return Err(chord_error(format!(
                "Join error: a joined entry is not Celery's [1, tid, state, result]: {}",
                crate::protocol::pyrepr::repr(entry)
            )));
        };
        let state = state.as_str().unwrap_or_default();
        if state == "FAILURE" || state == "REVOKED" {
            let tid = tid.as_str().unwrap_or_default();
            let repr = match serde_json::from_value::<ExceptionInfo>(result.clone()) {
                Ok(exc) => exception_repr(&exc.exc_type, &exc.exc_message),
                Err(_) => crate::protocol::pyrepr::repr(result),
            };
            return Err(chord_error(format!("Dependency {tid} raised {repr}")));
        }
        results.push(result.clone());
    }
    Ok(results)
}

/// Celery's `celery.exceptions.ChordError(message)`.
pub fn chord_error(message: String) -> ExceptionInfo {
    ExceptionInfo::new("celery.exceptions", "ChordError", message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn results_come_in_entry_order() {
        let entries = [json!([1, "a", "SUCCESS", 2]), json!([1, "b", "SUCCESS", 4])];
        assert_eq!(unpack(&entries).unwrap(), vec![json!(2), json!(4)]);
    }

    #[test]
    fn the_first_failed_member_is_the_chord_error() {
        let exc =
            json!({"exc_type": "ValueError", "exc_message": ["boom"], "exc_module": "builtins"});
        let revoked = json!({"exc_type": "TaskRevokedError", "exc_message": ["revoked"], "exc_module": "celery.exceptions"});
        let entries = [
            json!([1, "a", "SUCCESS", 2]),
            json!([1, "b", "FAILURE", exc]),
            json!([1, "c", "REVOKED", revoked]),
        ];
        let err = unpack(&entries).unwrap_err();
        assert_eq!(err.exc_type, "ChordError");
        assert_eq!(err.exc_module, "celery.exceptions");
        assert_eq!(err.message(), "Dependency b raised ValueError('boom')");
    }

    #[test]
    fn keys_are_celerys() {
        let k = ChordKeys::new("g");
        assert_eq!(k.join, "celery-taskset-meta-g.j");
        assert_eq!(k.claim, "celery-taskset-meta-g.c");
        assert_eq!(k.group, "celery-taskset-meta-g");
    }
}
