//! eta messages (countdowns, retries) wait in a sorted set scored by their due time; when it
//! comes they move back to the consuming end of the queue they were taken from (each queue has
//! its own schedule). Rust computes each destination.

use std::time::Duration;

use redis::RedisResult;

use super::{Broker, DeadLetter, BATCH};
use crate::protocol::Envelope;
use crate::scripts::{DUE, MOVE_DUE};

impl Broker {
    /// Moves due messages of this queue's schedule back to this queue (each was taken from it;
    /// an entry that is not a task envelope goes to the dead-letter list); returns how many
    /// moved and how long until the next one is due.
    pub async fn promote_due(&self) -> RedisResult<(usize, Option<Duration>)> {
        self.promote(false).await
    }

    /// Returns every message parked in this queue's schedule (eta, countdown, retry) to this
    /// queue now, its `eta` header unchanged, as kombu's producers put it there: whichever
    /// worker takes it, a Python one included, waits for its eta itself. For a rollback to a
    /// Python fleet, once the Rust workers are stopped. Returns how many were returned.
    pub async fn return_scheduled(&self) -> RedisResult<usize> {
        let mut total = 0usize;
        loop {
            let (moved, more) = self.promote(true).await?;
            total = total.saturating_add(moved);
            if moved == 0 || more != Some(Duration::ZERO) {
                return Ok(total);
            }
        }
    }

    /// Moves up to a batch of this queue's schedule (the due part, or `all`) to the queue.
    async fn promote(&self, all: bool) -> RedisResult<(usize, Option<Duration>)> {
        let schedule = self.layout.scheduled(&self.queue);
        // Bytes: a member another program added that is not UTF-8 must not stop the schedule.
        let listed: Vec<Vec<u8>> = DUE
            .key(&schedule)
            .arg(BATCH)
            .arg(if all { "all" } else { "due" })
            .invoke_async(&mut self.conn.clone())
            .await?;
        let Some((wait, due)) = listed.split_first() else {
            return Ok((0, None));
        };
        let wait = std::str::from_utf8(wait)
            .ok()
            .and_then(|w| w.parse::<f64>().ok())
            .filter(|w| *w >= 0.0 && w.is_finite())
            // Due later than a Duration holds (a score of 1e20): as long a wait as there is.
            .map(|w| Duration::try_from_secs_f64(w).unwrap_or(Duration::MAX));
        if due.is_empty() {
            return Ok((0, wait));
        }
        let mut moves: Vec<(String, String, &str)> = Vec::with_capacity(due.len());
        let mut dead = Vec::new();
        for member in due {
            // Back to this queue, where it was taken from (its routing key may be a named
            // exchange's, not a queue's), at its priority.
            let raw = std::str::from_utf8(member).ok();
            let routed = raw
                .and_then(|raw| Envelope::from_json(raw.as_bytes()).ok())
                .map(|env| self.layout.queue_list(&self.queue, env.priority()));
            moves.push(match (raw, routed) {
                (Some(raw), Some(list)) => (list, raw.to_owned(), "rpush"),
                (raw, _) => {
                    let shown = String::from_utf8_lossy(member);
                    let reason = match raw {
                        Some(_) => "scheduled entry is not a task envelope",
                        None => "scheduled entry is not valid UTF-8 (raw shown lossily)",
                    };
                    let entry = self.due_dead_letter(&shown, reason);
                    let json = entry.to_json();
                    dead.push(entry);
                    (self.layout.dead_letter().to_owned(), json, "lpush")
                }
            });
        }
        let (mut moved, refused) = self.move_due(&schedule, due, &moves).await?;
        if !refused.is_empty() {
            // Their queue's key holds another type of value: dead-letter them instead.
            let listed: Vec<Vec<u8>> = refused
                .iter()
                .filter_map(|&i| due.get(i).cloned())
                .collect();
            let entries: Vec<DeadLetter> = listed
                .iter()
                .map(|raw| {
                    let raw = String::from_utf8_lossy(raw);
                    self.due_dead_letter(&raw, "the queue's key holds another type of value")
                })
                .collect();
            let moves: Vec<(String, String, &str)> = entries
                .iter()
                .map(|e| (self.layout.dead_letter().to_owned(), e.to_json(), "lpush"))
                .collect();
            moved = moved.saturating_add(self.move_due(&schedule, &listed, &moves).await?.0);
            dead.extend(entries);
        }
        self.report_dead(&dead).await;
        let more = (due.len() == BATCH).then_some(Duration::ZERO);
        Ok((moved, more.or(wait)))
    }

    fn due_dead_letter(&self, raw: &str, reason: &str) -> DeadLetter {
        DeadLetter::about(reason, raw).in_queue(&self.queue)
    }

    /// Moves `listed[i]` to `moves[i]` (list, value, push); returns how many moved and the
    /// indexes refused because their list holds another type.
    async fn move_due(
        &self,
        schedule: &str,
        listed: &[Vec<u8>],
        moves: &[(String, String, &str)],
    ) -> RedisResult<(usize, Vec<usize>)> {
        let mut inv = MOVE_DUE.key(schedule);
        for (raw, (list, value, how)) in listed.iter().zip(moves) {
            inv.key(list).arg(raw).arg(value).arg(*how);
        }
        let reply: Vec<usize> = inv.invoke_async(&mut self.conn.clone()).await?;
        let moved = reply.first().copied().unwrap_or(0);
        let refused = reply
            .iter()
            .skip(1)
            .filter_map(|i| i.checked_sub(1))
            .collect();
        Ok((moved, refused))
    }
}
