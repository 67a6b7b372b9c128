//! One dead-letter entry: its shape (the claim script writes the same fields), what it keeps of
//! an entry refused for its size, and the lenient read of a raw envelope's task name and id.

use serde::de::{self, IgnoredAny, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

/// Most bytes of the raw text a dead letter keeps of an entry refused for its size (the claim
/// script keeps as many of one it does not even decode).
pub const DEAD_RAW_KEEP: usize = 4096;

/// One dead-letter entry, as stored (newest first) in [`crate::keys::DEAD_LETTER`]; written
/// through `Shape`, so an entry can hold a text it borrows ([`DeadLetter::json_holding`]).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DeadLetter {
    /// Why the message cannot be run, for a person to read.
    pub reason: String,
    /// The queue it was taken from; `requeue-dead` puts it back there.
    #[serde(default)]
    pub queue: Option<String>,
    /// The task's name, when it could be read.
    #[serde(default)]
    pub task: Option<String>,
    /// The task's id, when it could be read.
    #[serde(default)]
    pub task_id: Option<String>,
    /// The message as it was taken (kombu's envelope), or its first bytes (see `raw_bytes`).
    pub raw: String,
    /// The size in bytes of the entry when `raw` keeps only its first [`DEAD_RAW_KEEP`] bytes
    /// (it was refused for its size); such an entry cannot be requeued.
    #[serde(default)]
    pub raw_bytes: Option<u64>,
    /// When it was dead-lettered, in Unix seconds.
    pub at: f64,
    /// How many times the task ran before it was given up (retried tasks).
    #[serde(default)]
    pub attempts: Option<i64>,
}

/// The fields of a [`DeadLetter`] as written, `raw` borrowed.
#[derive(Serialize)]
struct Shape<'a> {
    reason: &'a str,
    queue: Option<&'a str>,
    task: Option<&'a str>,
    task_id: Option<&'a str>,
    raw: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    raw_bytes: Option<u64>,
    at: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    attempts: Option<i64>,
}

impl Serialize for DeadLetter {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.holding(&self.raw).serialize(s)
    }
}

impl DeadLetter {
    /// An entry for `raw`, dead now by this host's clock (the scripts use the server's).
    pub fn new(reason: impl Into<String>, raw: impl Into<String>) -> Self {
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        DeadLetter {
            reason: reason.into(),
            queue: None,
            task: None,
            task_id: None,
            raw: raw.into(),
            raw_bytes: None,
            at,
            attempts: None,
        }
    }

    /// An entry for `raw` with its task name and id when they can be read from it at all (the
    /// envelope may be poison precisely because other fields are malformed).
    pub fn about(reason: impl Into<String>, raw: impl Into<String>) -> Self {
        let mut entry = DeadLetter::new(reason, raw);
        let (task, id) = readable_task(&entry.raw);
        entry.task = task;
        entry.task_id = id;
        entry
    }

    /// This entry, recording the queue the message was taken from.
    pub fn in_queue(mut self, queue: &str) -> Self {
        self.queue = Some(queue.to_owned());
        self
    }

    /// This entry as stored in the dead-letter list.
    pub fn to_json(&self) -> String {
        self.json_holding(&self.raw)
    }

    /// This entry's JSON with `raw` in place of its own `raw` (a held delivery's text, not
    /// copied into the entry first).
    pub fn json_holding(&self, raw: &str) -> String {
        // Serializing plain data into a String cannot fail.
        serde_json::to_string(&self.holding(raw)).unwrap_or_default()
    }

    fn holding<'a>(&'a self, raw: &'a str) -> Shape<'a> {
        Shape {
            reason: &self.reason,
            queue: self.queue.as_deref(),
            task: self.task.as_deref(),
            task_id: self.task_id.as_deref(),
            raw,
            raw_bytes: self.raw_bytes,
            at: self.at,
            attempts: self.attempts,
        }
    }
}

/// The first [`DEAD_RAW_KEEP`] bytes of `raw` (cut at a character boundary): what a dead letter
/// keeps of an entry refused for its size.
pub fn prefix(raw: &str) -> &str {
    let mut end = DEAD_RAW_KEEP.min(raw.len());
    while !raw.is_char_boundary(end) {
        end = end.saturating_sub(1);
    }
    &raw[..end]
}

/// `headers.task` and `headers.id` of a raw envelope, read leniently (any other field may be
/// malformed); an empty id counts as none. Nothing else of the entry is built: whatever its
/// size, this costs the two strings.
pub fn readable_task(raw: &str) -> (Option<String>, Option<String>) {
    #[derive(Deserialize)]
    struct Entry {
        #[serde(default)]
        headers: Option<Ids>,
    }
    #[derive(Deserialize)]
    struct Ids {
        #[serde(default, deserialize_with = "text")]
        task: Option<String>,
        #[serde(default, deserialize_with = "text")]
        id: Option<String>,
    }
    let Ok(Entry { headers: Some(ids) }) = serde_json::from_str::<Entry>(raw) else {
        return (None, None);
    };
    let present = |s: Option<String>| s.filter(|s| !s.is_empty());
    (present(ids.task), present(ids.id))
}

/// A string, or `None` for any other value (skipped without building it).
fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct Text;
    impl<'de> Visitor<'de> for Text {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("any value")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
            Ok(Some(s.to_owned()))
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(None)
        }
        fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(None)
        }
    }
    d.deserialize_any(Text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_written_as_before_and_can_hold_a_borrowed_text() {
        let mut entry = DeadLetter::new("why", "{}");
        entry.at = 1.5;
        assert_eq!(
            entry.to_json(),
            r#"{"reason":"why","queue":null,"task":null,"task_id":null,"raw":"{}","at":1.5}"#
        );
        entry.raw_bytes = Some(9000);
        let held = entry.json_holding("head");
        let back: DeadLetter = serde_json::from_str(&held).unwrap();
        assert_eq!((back.raw.as_str(), back.raw_bytes), ("head", Some(9000)));
    }

    #[test]
    fn a_prefix_ends_on_a_character() {
        let text = format!("{}é{}", "a".repeat(DEAD_RAW_KEEP - 1), "b".repeat(10));
        assert_eq!(prefix(&text).len(), DEAD_RAW_KEEP - 1);
        assert_eq!(prefix("short"), "short");
    }

    #[test]
    fn ids_are_read_without_building_the_rest() {
        let raw =
            r#"{"body": [1, [2, {"x": 3}]], "headers": {"id": "i-1", "task": "t", "x": [[]]}}"#;
        assert_eq!(readable_task(raw), (Some("t".into()), Some("i-1".into())));
        let odd = r#"{"headers": {"id": {"nested": [1]}, "task": 7}}"#;
        assert_eq!(readable_task(odd), (None, None));
        assert_eq!(readable_task("[1, 2]"), (None, None));
        assert_eq!(readable_task(r#"{"headers": {"id": ""}}"#), (None, None));
    }
}
