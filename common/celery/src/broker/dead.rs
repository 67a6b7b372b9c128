//! The dead-letter list: messages that cannot be run, each with the reason, newest first.
//! [`DeadLetter`] is the one shape of an entry (the claim script writes the same fields).

use redis::{AsyncCommands, RedisResult};

pub use super::letter::{prefix, readable_task, DeadLetter, DEAD_RAW_KEEP};
use super::Broker;
use crate::keys;
use crate::result::{ExceptionInfo, ResultBackend, ResultError, ResultMeta};
use crate::scripts::{REQUEUE_DEAD, TRIM_DEAD};

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
        let entries: Vec<Vec<u8>> = conn.lrange(self.layout.dead_letter(), 0, -1).await?;
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
            let list = self.layout.queue_list(queue, 0);
            let done: i64 = REQUEUE_DEAD
                .key(self.layout.dead_letter())
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
            .key(self.layout.dead_letter())
            .key(self.layout.dead_letter_dropped())
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
        let entries: Vec<Vec<u8>> = conn.lrange(self.layout.dead_letter(), 0, -1).await?;
        let mut purged = 0u64;
        for entry in &entries {
            let belongs = serde_json::from_str::<DeadLetter>(&String::from_utf8_lossy(entry))
                .is_ok_and(|dead| self.queue_of(&dead) == only);
            if belongs {
                let n: u64 = conn.lrem(self.layout.dead_letter(), 1, entry).await?;
                purged = purged.saturating_add(n);
            }
        }
        Ok(purged)
    }

    async fn purge_all_dead(&self) -> RedisResult<u64> {
        let (n, _): (u64, i64) = redis::pipe()
            .atomic()
            .llen(self.layout.dead_letter())
            .del(self.layout.dead_letter())
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
                .lrange(
                    self.layout.dead_letter(),
                    start,
                    start.saturating_add(PAGE - 1),
                )
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
            .lrange(self.layout.dead_letter(), 0, limit.saturating_sub(1))
            .await?;
        Ok(raw
            .iter()
            .filter_map(|r| serde_json::from_str(&String::from_utf8_lossy(r)).ok())
            .collect())
    }
}
