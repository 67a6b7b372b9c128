//! eta messages (countdowns, retries) wait in a sorted set scored by their due time; when it
//! comes they move back to the consuming end of the queue they were taken from (each queue has
//! its own schedule). Rust computes each destination.

use std::time::Duration;

use redis::RedisResult;

use super::{Broker, DeadLetter, BATCH};
use crate::keys;
use crate::protocol::Envelope;
use crate::scripts::{DUE, MOVE_DUE};

impl Broker {
    /// Moves due messages of this queue's schedule back to this queue (each was taken from it;
    /// an entry that is not a task envelope goes to the dead-letter list); returns how many
    /// moved and how long until the next one is due.
    pub async fn promote_due(&self) -> RedisResult<(usize, Option<Duration>)> {
        let schedule = keys::scheduled(&self.queue);
        let listed: Vec<String> = DUE
            .key(&schedule)
            .arg(BATCH)
            .invoke_async(&mut self.conn.clone())
            .await?;
        let Some((wait, due)) = listed.split_first() else {
            return Ok((0, None));
        };
        let wait = wait
            .parse::<f64>()
            .ok()
            .filter(|w| *w >= 0.0 && w.is_finite())
            .map(Duration::from_secs_f64);
        if due.is_empty() {
            return Ok((0, wait));
        }
        let mut moves: Vec<(String, String, &str)> = Vec::with_capacity(due.len());
        let mut dead = Vec::new();
        for raw in due {
            // Back to this queue, where it was taken from (its routing key may be a named
            // exchange's, not a queue's), at its priority.
            let routed = Envelope::from_json(raw.as_bytes())
                .ok()
                .map(|env| keys::queue_list(&self.queue, env.priority()));
            moves.push(match routed {
                Some(list) => (list, raw.clone(), "rpush"),
                None => {
                    let entry = self.due_dead_letter(raw, "scheduled entry is not a task envelope");
                    let json = entry.to_json();
                    dead.push(entry);
                    (keys::DEAD_LETTER.to_owned(), json, "lpush")
                }
            });
        }
        let (mut moved, refused) = self.move_due(&schedule, due, &moves).await?;
        if !refused.is_empty() {
            // Their queue's key holds another type of value: dead-letter them instead.
            let listed: Vec<String> = refused.iter().map(|&i| due[i].clone()).collect();
            let entries: Vec<DeadLetter> = listed
                .iter()
                .map(|raw| self.due_dead_letter(raw, "the queue's key holds another type of value"))
                .collect();
            let moves: Vec<(String, String, &str)> = entries
                .iter()
                .map(|e| (keys::DEAD_LETTER.to_owned(), e.to_json(), "lpush"))
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
        listed: &[String],
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
