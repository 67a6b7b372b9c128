//! Taking messages: the claim script (pop and record in kombu's `unacked` in one step), the
//! blocking wait for a message, and lease renewal.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::conn::Conn;
use redis::aio::ConnectionLike;
use redis::RedisResult;

use super::dead::DEAD_RAW_KEEP;
use super::{Broker, DeadLetter};
use crate::keys;
use crate::keys::QueueOrder;
use crate::scripts::{CLAIM, RENEW};

mod reply;
use reply::{malformed_claim, About};

/// Largest entry the claim script decodes in full (inside Redis) when it cannot find its delivery
/// tag by searching the text: decoding costs Redis ~30 times the entry's size in its Lua heap.
/// A larger one is dead-lettered without decoding it.
pub const SCRIPT_DECODE_MAX: usize = 16 * 1024;

/// A message this worker holds: it is recorded in `unacked` under `tag`.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The message as stored: kombu's JSON envelope, undecoded.
    pub raw: String,
    /// Its delivery tag, its field in `unacked`; settling it names this.
    pub tag: String,
    /// When it was taken, by the server's clock (Unix seconds).
    pub taken_at: f64,
    /// The queue it was taken from: its retries and eta wait in that queue's schedule.
    pub queue: String,
    /// Which delivery of the message this is: 1, or more once a restore gave it back after its
    /// worker died or lost its lease (counted by the claim from kombu's `redelivered` flag).
    pub deliveries: u32,
}

/// What a claim found, and from which queue.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// A message now held by this worker, to decode and run.
    Message(Delivery),
    /// The entry has no delivery tag (or is not even JSON), or is larger than the limit: it is
    /// already in the dead-letter list, with `raw` as stored there (for a large entry, only its
    /// first bytes) and its task name and id when they could be read.
    DeadLettered {
        /// Why it could not be held, as written in the dead letter.
        reason: String,
        /// The entry as the dead letter keeps it.
        raw: String,
        /// The queue it was taken from.
        queue: String,
        /// The task's name (`headers.task`), when it could be read.
        task: Option<String>,
        /// The task's id (`headers.id`), when it could be read.
        task_id: Option<String>,
    },
    /// The entry (or its tag) is not UTF-8: it is held under `tag` (its exact bytes) and must be
    /// dead-lettered with [`Broker::dead_letter_unreadable`]; `raw` shows it lossily.
    Unreadable {
        /// Its field in `unacked`, byte for byte.
        tag: Vec<u8>,
        /// The entry, invalid UTF-8 replaced.
        raw: String,
        /// The queue it was taken from.
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

/// A claim of an entry the script dead-lettered: `entry` is the dead letter as stored (bounded;
/// read lossily, as a prefix may end inside a character).
fn dead_lettered(entry: &[u8], reason: String, queue: String) -> Claim {
    let text = String::from_utf8_lossy(entry);
    let (raw, task, task_id) = match serde_json::from_str::<DeadLetter>(&text) {
        Ok(dead) => (dead.raw, dead.task, dead.task_id),
        Err(_) => (text.into_owned(), None, None),
    };
    Claim::DeadLettered {
        reason,
        raw,
        queue,
        task,
        task_id,
    }
}

impl Rotation {
    /// The queues in the order given, rotated after each claim (kombu's default `round_robin`).
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

/// Most messages one claim takes, whatever its caller asks: one script call's Redis time stays
/// bounded, and the count stays one `RPOP` accepts (a count it refuses would read as a list
/// of another type, and nothing would be taken).
pub const MAX_CLAIM_BATCH: usize = 1000;

impl Broker {
    /// Takes the next message (processing list first, then each priority step) and records it
    /// in `unacked`/`unacked_index` in the same step. Never blocks.
    pub async fn claim(&self) -> RedisResult<Option<Claim>> {
        Ok(self.claim_many(1).await?.into_iter().next())
    }

    /// Like [`Broker::claim`] for up to `max` messages (at most [`MAX_CLAIM_BATCH`]) in one
    /// script call (a worker with several free slots fills them in one round trip). Returns
    /// fewer when the queue holds fewer.
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
        let limits = &self.limits;
        inv.arg(max.clamp(1, MAX_CLAIM_BATCH))
            .arg(limits.max_bytes)
            .arg(SCRIPT_DECODE_MAX.min(limits.max_bytes))
            .arg(DEAD_RAW_KEEP)
            .arg(keys::DELIVERIES_PREFIX)
            .arg(limits.max_deliveries)
            .arg(self.retention.as_secs().max(86_400))
            .arg(keys::LEASE_SUFFIX);
        // The queue of each list passed, in order: the script names a list by its position.
        let mut lists: Vec<&String> = Vec::with_capacity(
            queues
                .len()
                .saturating_mul(layout.steps().len().saturating_add(1)),
        );
        for queue in queues {
            inv.key(layout.processing(queue)).arg(queue);
            lists.push(queue);
        }
        for &step in layout.steps() {
            for queue in queues {
                inv.key(layout.step_list(queue, step)).arg(queue);
                lists.push(queue);
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
        while let (Some(raw), Some(about)) = (parts.next(), parts.next()) {
            let About {
                list,
                deliveries,
                rest,
            } = About::read(&about).ok_or_else(malformed_claim)?;
            let queue = list
                .checked_sub(1)
                .and_then(|i| lists.get(i))
                .map(|q| (*q).clone())
                .ok_or_else(malformed_claim)?;
            let Some(deliveries) = deliveries else {
                let reason = String::from_utf8_lossy(rest).into_owned();
                claims.push(dead_lettered(&raw, reason, queue));
                continue;
            };
            let raw = String::from_utf8(raw)
                .map_err(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
            claims.push(match (raw, std::str::from_utf8(rest)) {
                (Ok(raw), Ok(tag)) => Claim::Message(Delivery {
                    raw,
                    tag: tag.to_owned(),
                    taken_at,
                    queue,
                    deliveries,
                }),
                (Ok(raw) | Err(raw), _) => Claim::Unreadable {
                    tag: rest.to_vec(),
                    raw,
                    queue,
                },
            });
        }
        Ok(claims)
    }

    /// Blocks (on a connection of its own) until the queue has a message, moving it atomically
    /// into the processing list, from where the next [`Broker::claim`] of any worker takes it.
    /// Returns whether a message waits there now (one arrived within `timeout`, or was left).
    ///
    /// The message itself is not sent back (`CLIENT REPLY SKIP` drops BLMOVE's reply): an entry
    /// of any size costs this worker nothing before the claim bounds it. A server that refuses
    /// `CLIENT REPLY` (an ACL without `+client|reply`) gets a plain BLMOVE from then on, with a
    /// warning, after an error that makes the caller replace this connection.
    pub async fn wait_for_message(
        &self,
        blocking: &mut Conn,
        timeout: Duration,
    ) -> RedisResult<bool> {
        let processing = self.layout.processing(&self.queue);
        let queue = self.layout.queue_list(&self.queue, 0);
        let mut blmove = redis::cmd("BLMOVE");
        blmove
            .arg(&queue)
            .arg(&processing)
            .arg("RIGHT")
            .arg("LEFT")
            .arg(timeout.as_secs_f64());
        if self.reply_refused.load(Ordering::Relaxed) {
            // Bytes: an entry that is not UTF-8 is moved all the same (the claim dead-letters it).
            let moved: Option<Vec<u8>> = blmove.query_async(blocking).await?;
            return Ok(moved.is_some());
        }
        let mut pipe = redis::pipe();
        pipe.cmd("CLIENT").arg("REPLY").arg("SKIP");
        pipe.add_command(blmove);
        pipe.cmd("LLEN").arg(&processing);
        // Fails WRONGTYPE when the queue's key holds another type (BLMOVE's error is skipped).
        pipe.cmd("LLEN").arg(&queue);
        let replies = blocking.req_packed_commands(&pipe, 0, 2).await?;
        let counted = |v: &redis::Value| match v {
            redis::Value::Int(_) => true,
            redis::Value::ServerError(e) => e.code() == "WRONGTYPE",
            _ => false,
        };
        let [waiting, queued] = <[redis::Value; 2]>::try_from(replies)
            .ok()
            .filter(|r| r.iter().all(counted))
            .ok_or_else(|| {
                // Not LLEN's answers: `CLIENT REPLY` was refused (its error came first), and
                // this connection is out of step.
                if !self.reply_refused.swap(true, Ordering::Relaxed) {
                    log::warn!("redis refused CLIENT REPLY (allow +client|reply): the blocking waits now receive each message whole");
                }
                redis::RedisError::from((
                    redis::ErrorKind::Client,
                    "CLIENT REPLY refused; replace this connection",
                ))
            })?;
        queued.extract_error()?;
        let waiting: i64 = redis::from_redis_value(waiting.extract_error()?)?;
        Ok(waiting > 0)
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
