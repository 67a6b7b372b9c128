//! Groups and chords from a Rust producer, sent as Celery's `group(...).apply_async()` and
//! `chord(header)(body)` send them, so that Python or Rust workers run them and a Python client
//! finds their results: [`Broker::publish_group`] and [`Broker::publish_chord`].

use redis::RedisResult;
use serde_json::Value;
use uuid::Uuid;

use super::Broker;
use crate::protocol::{Signature, TaskMessage};
use crate::result::chord::ChordKeys;
use crate::result::ResultBackend;

/// The ids of a published chord: its header's group (a Python client's
/// `GroupResult(group_id, [AsyncResult(m.id), ...])`) and its body (`AsyncResult(body_id)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChordIds {
    /// The header's group id.
    pub group_id: String,
    /// The body's task id: its result is the chord's.
    pub body_id: String,
}

/// Makes `members` one group: each gets the group id and its index, as Celery's `group.freeze`
/// sets them. Returns the group id.
fn into_group(members: &mut [TaskMessage]) -> String {
    let group_id = Uuid::new_v4().to_string();
    for (i, m) in members.iter_mut().enumerate() {
        m.group = Some(group_id.clone());
        m.group_index = i64::try_from(i).ok();
    }
    group_id
}

impl Broker {
    /// Publishes `members` as one group (one round trip) and returns its id; each member's
    /// `group` and `group_index` are set, as Celery sets them.
    pub async fn publish_group(&self, members: &mut [TaskMessage]) -> RedisResult<String> {
        let group_id = into_group(members);
        self.publish_many(members).await?;
        Ok(group_id)
    }

    /// Publishes a chord: stores its size where the join reads it (Celery's
    /// `celery-taskset-meta-<group>.s`, with the results' lifetime, in `results`' database),
    /// then `header` as a group whose members carry `body` (its `task_id` frozen, a new one if it
    /// has none); an empty `header` is refused (Celery sends the body at once with `[]`).
    /// Whichever workers run the members, Python's or this project's, the one that
    /// completes the header publishes the body with the members' results in header order.
    pub async fn publish_chord(
        &self,
        header: &mut [TaskMessage],
        mut body: Signature,
        results: &ResultBackend,
    ) -> RedisResult<ChordIds> {
        if header.is_empty() {
            // No member would ever complete it: its body would stay PENDING for good.
            return Err(redis::RedisError::from((
                redis::ErrorKind::Client,
                "a chord needs at least one header member",
            )));
        }
        let body_id = match body.options.get("task_id").and_then(Value::as_str) {
            Some(id) => id.to_owned(),
            None => {
                let id = Uuid::new_v4().to_string();
                body.options
                    .insert("task_id".into(), Value::String(id.clone()));
                id
            }
        };
        let group_id = into_group(header);
        body.options
            .insert("group_id".into(), Value::String(group_id.clone()));
        let body = serde_json::to_value(&body).map_err(|e| {
            redis::RedisError::from((
                redis::ErrorKind::Client,
                "the chord body does not encode",
                e.to_string(),
            ))
        })?;
        for m in header.iter_mut() {
            m.body.embed.chord = Some(body.clone());
        }
        let size = u64::try_from(header.len()).unwrap_or(u64::MAX);
        let keys = ChordKeys::new(&group_id);
        let mut conn = results.connection().clone();
        let mut pipe = redis::pipe();
        match results.expires_secs() {
            0 => pipe.set(&keys.size, size).ignore(),
            ttl => pipe.set_ex(&keys.size, size, ttl).ignore(),
        };
        pipe.query_async::<()>(&mut conn).await?;
        self.publish_many(header).await?;
        Ok(ChordIds { group_id, body_id })
    }
}
