//! Taking messages: the claim script (pop and record in kombu's `unacked` in one step), the
//! blocking wait for a message, and lease renewal.

use std::time::Duration;

use crate::connection::Conn;
use redis::RedisResult;

use super::Broker;
use crate::keys::QueueOrder;
use crate::scripts::{CLAIM, RENEW};

/// A message this worker holds: it is recorded in `unacked` under `tag`.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub raw: String,
    pub tag: String,
    /// When it was taken, by the server's clock (Unix seconds).
    pub taken_at: f64,
    /// The queue it was taken from: its retries and eta wait in that queue's schedule.
    pub queue: String,
}

/// What a claim found, and from which queue.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    Message(Delivery),
    /// The entry has no delivery tag (or is not even JSON): it is already in the dead-letter
    /// list, as `raw`.
    DeadLettered {
        reason: String,
        raw: String,
        queue: String,
    },
    /// The entry (or its tag) is not UTF-8: it is held under `tag` (its exact bytes) and must be
    /// dead-lettered with [`Broker::dead_letter_unreadable`]; `raw` shows it lossily.
    Unreadable {
        tag: Vec<u8>,
        raw: String,
        queue: String,
    },
}

/// The order in which a worker offers its queues to [`Broker::claim_from`]: a queue that just
/// delivered goes to the back (kombu's round-robin cycle), so a busy queue cannot starve the
/// others; or a fixed order ([`QueueOrder`]).
#[derive(Debug, Clone)]
pub struct Rotation {
    queues: Vec<String>,
    rotates: bool,
}

impl Claim {
    /// The queue it was taken from.
    pub fn queue(&self) -> &str {
        match self {
            Claim::Message(d) => &d.queue,
            Claim::DeadLettered { queue, .. } | Claim::Unreadable { queue, .. } => queue,
        }
    }
}

impl Rotation {
    pub fn new(queues: Vec<String>) -> Self {
        Rotation::ordered(queues, QueueOrder::RoundRobin)
    }

    /// The queues in kombu's `queue_order_strategy`: `sorted` sorts them once; only
    /// `round_robin` moves a queue that delivered to the back.
    pub fn ordered(mut queues: Vec<String>, order: QueueOrder) -> Self {
        if order == QueueOrder::Sorted {
            queues.sort();
        }
        let rotates = order == QueueOrder::RoundRobin;
        Rotation { queues, rotates }
    }

    /// The queues, in the order of the next claim.
    pub fn order(&self) -> &[String] {
        &self.queues
    }

    /// After a claim: the queues that delivered move to the back, in their order.
    pub fn delivered<'a>(&mut self, from: impl IntoIterator<Item = &'a str>) {
        if !self.rotates {
            return;
        }
        let from: Vec<&str> = from.into_iter().collect();
        let (served, rest): (Vec<String>, Vec<String>) = std::mem::take(&mut self.queues)
            .into_iter()
            .partition(|q| from.contains(&q.as_str()));
        self.queues = rest;
        self.queues.extend(served);
    }
}

impl Broker {
    /// Takes the next message (processing list first, then each priority step) and records it
    /// in `unacked`/`unacked_index` in the same step. Never blocks.
    pub async fn claim(&self) -> RedisResult<Option<Claim>> {
        Ok(self.claim_many(1).await?.into_iter().next())
    }

    /// Like [`Broker::claim`] for up to `max` messages in one script call (a worker with several
    /// free slots fills them in one round trip). Returns fewer when the queue holds fewer.
    pub async fn claim_many(&self, max: usize) -> RedisResult<Vec<Claim>> {
        self.claim_from(std::slice::from_ref(&self.queue), max)
            .await
    }

    /// Takes up to `max` messages from several queues in one script call, as kombu's BRPOP over
    /// a worker's queues: first every processing list, then priority 0 of each queue in the
    /// order given, then the next step of each, and so on. The caller rotates the order between
    /// calls (see [`Rotation`]) so that no queue waits behind another.
    pub async fn claim_from(&self, queues: &[String], max: usize) -> RedisResult<Vec<Claim>> {
        let layout = &self.layout;
        let mut inv = CLAIM.prepare_invoke();
        inv.key(layout.unacked())
            .key(layout.unacked_index())
            .key(layout.dead_letter());
        inv.arg(max.max(1));
        for queue in queues {
            inv.key(layout.processing(queue)).arg(queue);
        }
        for &step in layout.steps() {
            for queue in queues {
                inv.key(layout.step_list(queue, step)).arg(queue);
            }
        }
        // Bytes, not strings: any producer can push an entry that is not UTF-8, and one such
        // entry must not make the whole batch (already recorded in `unacked`) unreadable.
        let reply: Vec<Vec<u8>> = inv.invoke_async(&mut self.conn.clone()).await?;
        let mut parts = reply.into_iter();
        let taken_at = parts
            .next()
            .and_then(|s| String::from_utf8(s).ok())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0.0);
        let mut claims = Vec::new();
        while let (Some(raw), Some(tag), Some(reason), Some(queue)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        {
            let reason = String::from_utf8_lossy(&reason).into_owned();
            // One of the names passed in, so UTF-8.
            let queue = String::from_utf8_lossy(&queue).into_owned();
            let raw = String::from_utf8(raw)
                .map_err(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
            claims.push(match (raw, String::from_utf8(tag)) {
                (Ok(raw) | Err(raw), _) if !reason.is_empty() => {
                    Claim::DeadLettered { reason, raw, queue }
                }
                (Ok(raw), Ok(tag)) => Claim::Message(Delivery {
                    raw,
                    tag,
                    taken_at,
                    queue,
                }),
                (Ok(raw) | Err(raw), tag) => Claim::Unreadable {
                    tag: tag.map_or_else(|e| e.into_bytes(), String::into_bytes),
                    raw,
                    queue,
                },
            });
        }
        Ok(claims)
    }

    /// Blocks (on a connection of its own) until the queue has a message, moving it atomically
    /// into the processing list, from where the next [`Broker::claim`] of any worker takes it.
    /// Returns whether a message arrived within `timeout`.
    pub async fn wait_for_message(
        &self,
        blocking: &mut Conn,
        timeout: Duration,
    ) -> RedisResult<bool> {
        // Bytes: an entry that is not UTF-8 is moved all the same (the claim dead-letters it).
        let moved: Option<Vec<u8>> = redis::cmd("BLMOVE")
            .arg(self.layout.queue_list(&self.queue, 0))
            .arg(self.layout.processing(&self.queue))
            .arg("RIGHT")
            .arg("LEFT")
            .arg(timeout.as_secs_f64())
            .query_async(blocking)
            .await?;
        Ok(moved.is_some())
    }

    /// Moves whatever waits in the processing list back to the consuming end of the queue
    /// (on shutdown, so Python workers see it too). Returns how many moved.
    pub async fn return_processing(&self) -> RedisResult<usize> {
        let mut conn = self.conn.clone();
        let mut moved = 0usize;
        loop {
            let m: Option<Vec<u8>> = redis::cmd("LMOVE")
                .arg(self.layout.processing(&self.queue))
                .arg(self.layout.queue_list(&self.queue, 0))
                .arg("RIGHT")
                .arg("RIGHT")
                .query_async(&mut conn)
                .await?;
            if m.is_none() {
                return Ok(moved);
            }
            moved = moved.saturating_add(1);
        }
    }

    /// Renews the leases of the given deliveries; returns how many are still held.
    pub async fn renew(&self, tags: &[String]) -> RedisResult<usize> {
        if tags.is_empty() {
            return Ok(0);
        }
        let mut inv = RENEW.key(self.layout.unacked_index());
        for tag in tags {
            inv.arg(tag);
        }
        inv.invoke_async(&mut self.conn.clone()).await
    }
}
