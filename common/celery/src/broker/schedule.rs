//! eta messages (countdowns, retries) wait in a sorted set scored by their due time; when it
//! comes they move back to the consuming end of their queue. Rust computes each destination.

use std::time::Duration;

use redis::RedisResult;

use super::{Broker, DeadLetter, BATCH};
use crate::keys;
use crate::protocol::Envelope;
use crate::scripts::{DUE, MOVE_DUE};

impl Broker {
    /// Moves due scheduled messages back to their queues (one with no routing key goes to the
    /// dead-letter list); returns how many moved and how long until the next one is due.
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
        let mut inv = MOVE_DUE.key(&schedule);
        for raw in due {
            let routed = Envelope::from_json(raw.as_bytes())
                .ok()
                .and_then(|env| Some(keys::queue_list(env.routing_key()?, env.priority())));
            match routed {
                Some(list) => inv.key(list).arg(raw).arg(raw).arg("rpush"),
                None => {
                    let entry = DeadLetter::new("scheduled entry has no routing key", raw)
                        .in_queue(&self.queue);
                    inv.key(keys::DEAD_LETTER)
                        .arg(raw)
                        .arg(entry.to_json())
                        .arg("lpush")
                }
            };
        }
        let moved: usize = inv.invoke_async(&mut self.conn.clone()).await?;
        let more = (due.len() == BATCH).then_some(Duration::ZERO);
        Ok((moved, more.or(wait)))
    }
}
