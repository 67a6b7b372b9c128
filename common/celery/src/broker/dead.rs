//! The dead-letter list: messages that cannot be run, each with the reason, newest first.
//! [`DeadLetter`] is the one shape of an entry (the claim script writes the same fields).

use redis::{AsyncCommands, RedisResult};
use serde::de::{self, IgnoredAny, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::Broker;
use crate::keys;
use crate::result::{ExceptionInfo, ResultBackend, ResultError, ResultMeta};
use crate::scripts::{REQUEUE_DEAD, TRIM_DEAD};

/// Most bytes of the raw text a dead letter keeps of an entry refused for its size (the claim
/// script keeps as many of one it does not even decode).
pub const DEAD_RAW_KEEP: usize = 4096;

/// One dead-letter entry, as stored (newest first) in [`keys::DEAD_LETTER`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub reason: String,
    /// The queue it was taken from; `requeue-dead` puts it back there.
    #[serde(default)]
    pub queue: Option<String>,
    #[serde(default)]
    pub task: Option<String>,
    #[serde(default)]
    pub task_id: Option<String>,
    pub raw: String,
    /// The size in bytes of the entry when `raw` keeps only its first [`DEAD_RAW_KEEP`] bytes
    /// (it was refused for its size); such an entry cannot be requeued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_bytes: Option<u64>,
    /// Unix seconds.
    pub at: f64,
    /// How many times the task ran before it was given up (retried tasks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<i64>,
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

    /// Keeps only the first [`DEAD_RAW_KEEP`] bytes of `raw` (cut at a character boundary) and
    /// records the whole size in `raw_bytes`, when it is longer.
    pub fn keep_prefix(mut self) -> Self {
        if self.raw.len() > DEAD_RAW_KEEP {
            let mut end = DEAD_RAW_KEEP;
            while !self.raw.is_char_boundary(end) {
                end = end.saturating_sub(1);
            }
            self.raw_bytes = u64::try_from(self.raw.len()).ok();
            self.raw = self.raw[..end].to_owned();
        }
        self
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

    pub fn in_queue(mut self, queue: &str) -> Self {
        self.queue = Some(queue.to_owned());
        self
    }

    pub fn to_json(&self) -> String {
        // Serializing plain data into a String cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
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

/// The FAILURE a caller reads for a task the broker dead-lettered because it could not route
/// or read it (kombu's `OperationalError`, with the reason).
pub(super) async fn fail_dead(
    results: &ResultBackend,
    task_id: &str,
    reason: &str,
) -> Result<bool, ResultError> {
    let exc = ExceptionInfo::new("kombu.exceptions", "OperationalError", reason);
    results
        .store(&ResultMeta::failure(task_id, &exc, None))
        .await
}

impl Broker {
    /// Stores a FAILURE for each entry whose task id is known (when this broker has a result
    /// backend), so the caller of a message the broker dead-lettered learns why.
    pub(super) async fn report_dead(&self, entries: &[DeadLetter]) {
        let Some(results) = &self.results else {
            return;
        };
        for entry in entries {
            let Some(id) = &entry.task_id else { continue };
            if let Err(e) = fail_dead(results, id, &entry.reason).await {
                log::warn!("could not store FAILURE for dead-lettered task {id}: {e}");
            }
        }
    }

    /// Puts up to `limit` dead letters (0: all), oldest first, back at the end of their queue
    /// (or this queue when the entry names none). Entries that keep only a prefix of their
    /// message (`raw_bytes`) stay where they are.
    pub async fn requeue_dead(&self, limit: usize) -> RedisResult<usize> {
        self.requeue_dead_of(limit, None).await
    }

    /// The queue a dead letter belongs to: the usable queue it names, else this broker's.
    fn queue_of<'a>(&'a self, dead: &'a DeadLetter) -> &'a str {
        dead.queue
            .as_deref()
            .filter(|q| keys::is_queue_name(q))
            .unwrap_or(&self.queue)
    }

    /// [`Broker::requeue_dead`] for the dead letters of `only` (all when `None`).
    pub async fn requeue_dead_of(&self, limit: usize, only: Option<&str>) -> RedisResult<usize> {
        let mut conn = self.conn.clone();
        // Bytes: an entry that is not UTF-8 (a claim dead-letters raw entries as they are) must
        // not stop the others; it stays where it is.
        let entries: Vec<Vec<u8>> = conn.lrange(keys::DEAD_LETTER, 0, -1).await?;
        let mut moved = 0usize;
        for entry in entries.iter().rev() {
            if limit > 0 && moved >= limit {
                break;
            }
            // An entry that keeps only a prefix of a message is not that message.
            let Ok(dead) = serde_json::from_slice::<DeadLetter>(entry) else {
                continue;
            };
            if dead.raw_bytes.is_some() {
                continue;
            }
            let queue = self.queue_of(&dead);
            if only.is_some_and(|q| q != queue) {
                continue;
            }
            let list = keys::queue_list(queue, 0);
            let done: i64 = REQUEUE_DEAD
                .key(keys::DEAD_LETTER)
                .key(list)
                .arg(entry)
                .arg(&dead.raw)
                .invoke_async(&mut conn)
                .await?;
            match done {
                1 => moved = moved.saturating_add(1),
                -1 => {
                    log::warn!("not requeued: the queue's list holds another type; the entry stays")
                }
                _ => {}
            }
        }
        Ok(moved)
    }

    /// Keeps the newest `keep` dead letters, dropping the oldest and counting them in
    /// [`keys::DEAD_LETTER_DROPPED`]; returns how many were dropped now.
    pub async fn trim_dead(&self, keep: usize) -> RedisResult<u64> {
        TRIM_DEAD
            .key(keys::DEAD_LETTER)
            .key(keys::DEAD_LETTER_DROPPED)
            .arg(keep.max(1))
            .invoke_async(&mut self.conn.clone())
            .await
    }

    /// Deletes every dead letter; returns how many there were.
    pub async fn purge_dead(&self) -> RedisResult<u64> {
        self.purge_dead_of(None).await
    }

    /// [`Broker::purge_dead`] of the dead letters of `only` (all when `None`): each removed by
    /// its exact value, so entries added meanwhile stay.
    pub async fn purge_dead_of(&self, only: Option<&str>) -> RedisResult<u64> {
        let Some(only) = only else {
            return self.purge_all_dead().await;
        };
        let mut conn = self.conn.clone();
        let entries: Vec<Vec<u8>> = conn.lrange(keys::DEAD_LETTER, 0, -1).await?;
        let mut purged = 0u64;
        for entry in &entries {
            let belongs = serde_json::from_str::<DeadLetter>(&String::from_utf8_lossy(entry))
                .is_ok_and(|dead| self.queue_of(&dead) == only);
            if belongs {
                let n: u64 = conn.lrem(keys::DEAD_LETTER, 1, entry).await?;
                purged = purged.saturating_add(n);
            }
        }
        Ok(purged)
    }

    async fn purge_all_dead(&self) -> RedisResult<u64> {
        let (n, _): (u64, i64) = redis::pipe()
            .atomic()
            .llen(keys::DEAD_LETTER)
            .del(keys::DEAD_LETTER)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(n)
    }

    /// The newest `limit` dead letters of `only` (all when `None`), newest first; read in pages
    /// of a thousand until that many are found.
    pub async fn dead_letters_of(
        &self,
        limit: usize,
        only: Option<&str>,
    ) -> RedisResult<Vec<DeadLetter>> {
        const PAGE: isize = 1000;
        let mut found = Vec::new();
        let mut start: isize = 0;
        while found.len() < limit {
            let page: Vec<Vec<u8>> = self
                .conn
                .clone()
                .lrange(keys::DEAD_LETTER, start, start.saturating_add(PAGE - 1))
                .await?;
            let last = page.len() < usize::try_from(PAGE).unwrap_or(usize::MAX);
            found.extend(
                page.iter()
                    .filter_map(|r| serde_json::from_str(&String::from_utf8_lossy(r)).ok())
                    .filter(|dead: &DeadLetter| only.is_none_or(|q| self.queue_of(dead) == q)),
            );
            if last {
                break;
            }
            start = start.saturating_add(PAGE);
        }
        found.truncate(limit);
        Ok(found)
    }

    /// The newest dead letters first.
    pub async fn dead_letters(&self, limit: isize) -> RedisResult<Vec<DeadLetter>> {
        // Bytes, shown lossily: an entry holding a raw message that is not UTF-8 is listed too.
        let raw: Vec<Vec<u8>> = self
            .conn
            .clone()
            .lrange(keys::DEAD_LETTER, 0, limit.saturating_sub(1))
            .await?;
        Ok(raw
            .iter()
            .filter_map(|r| serde_json::from_str(&String::from_utf8_lossy(r)).ok())
            .collect())
    }
}
