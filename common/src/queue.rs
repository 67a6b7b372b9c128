//! The broker side of kombu's Redis transport: publishing to queue lists, taking messages with
//! kombu's unacked bookkeeping, leases, acknowledgement, the eta schedule and restores.
//!
//! Every step that moves a message is one Lua script, so a message is always in exactly one
//! place in Redis: a queue list, the processing list (for a moment), `unacked`, the schedule, or
//! the dead-letter list. Every time decision uses the Redis server's clock.

use std::sync::LazyLock;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{AsyncCommands, RedisResult, Script};
use serde::{Deserialize, Serialize};

use crate::keys;
use crate::protocol::{Envelope, TaskMessage};

static CLAIM: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/claim.lua")));
static SETTLE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/settle.lua")));
static PUBLISH_ONCE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/publish_once.lua")));
static PROMOTE_DUE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/promote_due.lua")));
static RENEW: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/renew.lua")));
static EXPIRED: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/expired.lua")));
static RESTORE_ONE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/restore_one.lua")));
static REQUEUE_DEAD: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/requeue_dead.lua")));
static UNLOCK: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/unlock.lua")));

/// How long a restorer may hold `unacked_mutex`. kombu takes it for 300 s, so a restorer that
/// dies holding it stops every restore for five minutes; ours lasts 10 s. A pass takes
/// milliseconds, and two passes at once are harmless anyway (each restore is one atomic step
/// that checks the entry is unchanged): the lock only spares the work twice.
const MUTEX_TTL_MS: u64 = 10_000;
/// Most entries one restore or promotion pass moves.
const BATCH: usize = 100;

/// A message this worker holds: it is recorded in `unacked` under `tag`.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub raw: String,
    pub tag: String,
    /// When it was taken, by the server's clock (Unix seconds).
    pub taken_at: f64,
}

/// What a claim found.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    Message(Delivery),
    /// The entry was not an envelope at all; it is already in the dead-letter list.
    DeadLettered {
        reason: String,
    },
}

/// One dead-letter entry, as stored (newest first) in [`keys::DEAD_LETTER`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub reason: String,
    #[serde(default)]
    pub queue: Option<String>,
    #[serde(default)]
    pub task: Option<String>,
    #[serde(default)]
    pub task_id: Option<String>,
    pub raw: String,
    /// Unix seconds.
    pub at: f64,
    /// How many times the task ran before it was given up (retried tasks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<i64>,
}

/// Queue counts, as `worker stats` prints them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueStats {
    pub queue: String,
    /// Waiting messages per priority step 0, 3, 6, 9.
    pub waiting: [u64; 4],
    /// Waiting for their eta (or a retry).
    pub scheduled: u64,
    /// Taken by a worker and not yet acknowledged (all queues: kombu's `unacked` is shared).
    pub in_flight: u64,
    pub dead: u64,
}

/// What [`Broker::publish_once`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted {
    /// Enqueued now, as this task.
    Created(String),
    /// The key was taken before: this is the task that owns it; nothing was enqueued.
    Existing(String),
    /// The queue holds this many messages, at or over the limit; nothing was written.
    QueueFull(u64),
}

/// A queue on Redis, as producers and consumers see it.
#[derive(Clone)]
pub struct Broker {
    conn: ConnectionManager,
    queue: String,
    /// Backpressure for [`Broker::publish_once`]: most messages waiting (0: no limit).
    max_depth: u64,
}

impl Broker {
    pub fn new(conn: ConnectionManager, queue: impl Into<String>) -> Self {
        Broker {
            conn,
            queue: queue.into(),
            max_depth: 0,
        }
    }

    /// Refuses [`Broker::publish_once`] while `max_depth` or more messages wait (0: no limit).
    pub fn with_max_depth(mut self, max_depth: u64) -> Self {
        self.max_depth = max_depth;
        self
    }

    pub fn queue(&self) -> &str {
        &self.queue
    }

    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// LPUSHes a task to the list for its queue and priority, as a Celery producer does.
    pub async fn publish(&self, msg: &TaskMessage) -> RedisResult<()> {
        let list = keys::queue_list(&msg.queue, msg.priority);
        let envelope = msg.to_envelope().to_json();
        self.conn.clone().lpush::<_, _, ()>(list, envelope).await
    }

    /// Publishes many tasks in one pipelined round trip (one LPUSH per priority list).
    pub async fn publish_many(&self, msgs: &[TaskMessage]) -> RedisResult<()> {
        let mut by_list: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for msg in msgs {
            by_list
                .entry(keys::queue_list(&msg.queue, msg.priority))
                .or_default()
                .push(msg.to_envelope().to_json());
        }
        let mut pipe = redis::pipe();
        for (list, envelopes) in by_list {
            pipe.lpush(list, envelopes).ignore();
        }
        pipe.query_async(&mut self.conn.clone()).await
    }

    /// Publishes `msg` unless a task was already published under `idempotency_key`, or the
    /// queue is full. Key and message are written in one step, or neither.
    pub async fn publish_once(
        &self,
        idempotency_key: &str,
        msg: &TaskMessage,
    ) -> RedisResult<Submitted> {
        let mut inv = PUBLISH_ONCE.key(idempotency_key);
        inv.key(keys::queue_list(&msg.queue, msg.priority));
        for list in keys::queue_lists(&msg.queue) {
            inv.key(list);
        }
        let (what, value): (String, String) = inv
            .arg(&msg.id)
            .arg(msg.to_envelope().to_json())
            .arg(self.max_depth)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(match what.as_str() {
            "created" => Submitted::Created(value),
            "full" => Submitted::QueueFull(value.parse().unwrap_or(self.max_depth)),
            _ => Submitted::Existing(value),
        })
    }

    /// Takes the next message (processing list first, then priorities 0, 3, 6, 9) and records it
    /// in `unacked`/`unacked_index` in the same step. Never blocks.
    pub async fn claim(&self) -> RedisResult<Option<Claim>> {
        Ok(self.claim_many(1).await?.into_iter().next())
    }

    /// Like [`Broker::claim`] for up to `max` messages in one script call (a worker with several
    /// free slots fills them in one round trip). Returns fewer when the queue holds fewer.
    pub async fn claim_many(&self, max: usize) -> RedisResult<Vec<Claim>> {
        let mut inv = CLAIM.prepare_invoke();
        inv.key(keys::UNACKED)
            .key(keys::UNACKED_INDEX)
            .key(keys::DEAD_LETTER)
            .key(keys::processing(&self.queue));
        for list in keys::queue_lists(&self.queue) {
            inv.key(list);
        }
        inv.arg(&self.queue).arg(max.max(1));
        let reply: Vec<String> = inv.invoke_async(&mut self.conn.clone()).await?;
        let mut parts = reply.into_iter();
        let taken_at = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0.0);
        let mut claims = Vec::new();
        while let (Some(raw), Some(tag), Some(reason)) = (parts.next(), parts.next(), parts.next())
        {
            claims.push(if reason.is_empty() {
                Claim::Message(Delivery { raw, tag, taken_at })
            } else {
                Claim::DeadLettered { reason }
            });
        }
        Ok(claims)
    }

    /// Blocks (on a connection of its own) until the queue has a message, moving it atomically
    /// into the processing list, from where the next [`Broker::claim`] of any worker takes it.
    /// Returns whether a message arrived within `timeout`.
    pub async fn wait_for_message(
        &self,
        blocking: &mut ConnectionManager,
        timeout: Duration,
    ) -> RedisResult<bool> {
        let moved: Option<String> = redis::cmd("BLMOVE")
            .arg(&self.queue)
            .arg(keys::processing(&self.queue))
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
        let mut moved = 0;
        loop {
            let m: Option<String> = redis::cmd("LMOVE")
                .arg(keys::processing(&self.queue))
                .arg(&self.queue)
                .arg("RIGHT")
                .arg("RIGHT")
                .query_async(&mut conn)
                .await?;
            if m.is_none() {
                return Ok(moved);
            }
            moved += 1;
        }
    }

    async fn settle(
        &self,
        tag: &str,
        action: &str,
        dest: &str,
        value: &str,
        score: f64,
    ) -> RedisResult<bool> {
        let settled: i64 = SETTLE
            .key(keys::UNACKED)
            .key(keys::UNACKED_INDEX)
            .key(dest)
            .arg(tag)
            .arg(action)
            .arg(value)
            .arg(score)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(settled == 1)
    }

    /// Acknowledges a delivery (kombu's ZREM + HDEL). Returns false if the lease had been lost.
    pub async fn ack(&self, tag: &str) -> RedisResult<bool> {
        self.settle(tag, "ack", keys::UNACKED, "", 0.0).await
    }

    /// Hands a held message back to the consuming end of its queue, to be delivered next.
    pub async fn requeue(&self, delivery: &Delivery) -> RedisResult<bool> {
        let list = self.list_of(&delivery.raw);
        self.settle(&delivery.tag, "rpush", &list, &delivery.raw, 0.0)
            .await
    }

    /// Parks a held message until `due` (Unix seconds, server clock) in the schedule.
    pub async fn schedule(&self, delivery: &Delivery, due: f64) -> RedisResult<bool> {
        let dest = keys::scheduled(&self.queue);
        self.settle(&delivery.tag, "zadd", &dest, &delivery.raw, due)
            .await
    }

    /// Acknowledges a held message and, in the same step, schedules `replacement` (a retry of
    /// it) to run `delay` from now by the server's clock.
    pub async fn retry(
        &self,
        delivery: &Delivery,
        replacement: &str,
        delay: Duration,
    ) -> RedisResult<bool> {
        let dest = keys::scheduled(&self.queue);
        self.settle(
            &delivery.tag,
            "zadd_in",
            &dest,
            replacement,
            delay.as_secs_f64(),
        )
        .await
    }

    /// Moves a held message to the dead-letter list with the reason, and acknowledges it.
    pub async fn dead_letter(&self, delivery: &Delivery, entry: &DeadLetter) -> RedisResult<bool> {
        let json = serde_json::to_string(entry).unwrap_or_default();
        self.settle(&delivery.tag, "lpush", keys::DEAD_LETTER, &json, 0.0)
            .await
    }

    /// Moves due scheduled messages back to their queues; returns how many moved and how long
    /// until the next one is due.
    pub async fn promote_due(&self) -> RedisResult<(usize, Option<Duration>)> {
        let (moved, wait): (usize, String) = PROMOTE_DUE
            .key(keys::scheduled(&self.queue))
            .key(keys::DEAD_LETTER)
            .arg(BATCH)
            .arg(keys::SEP)
            .invoke_async(&mut self.conn.clone())
            .await?;
        let wait = wait
            .parse::<f64>()
            .ok()
            .filter(|w| *w >= 0.0)
            .map(Duration::from_secs_f64);
        Ok((
            moved,
            wait.or(if moved == BATCH {
                Some(Duration::ZERO)
            } else {
                None
            }),
        ))
    }

    /// Renews the leases of the given deliveries; returns how many are still held.
    pub async fn renew(&self, tags: &[String]) -> RedisResult<usize> {
        if tags.is_empty() {
            return Ok(0);
        }
        let mut inv = RENEW.key(keys::UNACKED_INDEX);
        for tag in tags {
            inv.arg(tag);
        }
        inv.invoke_async(&mut self.conn.clone()).await
    }

    /// Gives back to their queues the deliveries whose lease is older than `visibility` (their
    /// worker is gone), one at a time under kombu's `unacked_mutex`, with kombu's redelivered
    /// flags. Understands entries written by Python workers too. Returns how many came back.
    pub async fn restore_expired(&self, visibility: Duration) -> RedisResult<usize> {
        let mut conn = self.conn.clone();
        let token = uuid::Uuid::new_v4().to_string();
        let locked: Option<String> = redis::cmd("SET")
            .arg(keys::UNACKED_MUTEX)
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(MUTEX_TTL_MS)
            .query_async(&mut conn)
            .await?;
        if locked.is_none() {
            return Ok(0);
        }
        let restored = self.restore_locked(&mut conn, visibility).await;
        let _: RedisResult<i64> = UNLOCK
            .key(keys::UNACKED_MUTEX)
            .arg(&token)
            .invoke_async(&mut conn)
            .await;
        restored
    }

    async fn restore_locked(
        &self,
        conn: &mut ConnectionManager,
        visibility: Duration,
    ) -> RedisResult<usize> {
        let listed: Vec<String> = EXPIRED
            .key(keys::UNACKED_INDEX)
            .key(keys::UNACKED)
            .arg(visibility.as_secs_f64())
            .arg(BATCH)
            .invoke_async(conn)
            .await?;
        let Some((cutoff, pairs)) = listed.split_first() else {
            return Ok(0);
        };
        let mut restored = 0;
        for pair in pairs.chunks_exact(2) {
            let (tag, value) = (&pair[0], &pair[1]);
            let Some((envelope, list)) = restorable(value, &self.queue) else {
                log::warn!("unacked entry {tag} is not a kombu [envelope, exchange, routing_key] triple; leaving it");
                continue;
            };
            let done: i64 = RESTORE_ONE
                .key(keys::UNACKED)
                .key(keys::UNACKED_INDEX)
                .key(&list)
                .arg(tag)
                .arg(cutoff)
                .arg(value)
                .arg(envelope)
                .invoke_async(conn)
                .await?;
            restored += done as usize;
        }
        Ok(restored)
    }

    /// Messages waiting in the queue, all priorities.
    pub async fn depth(&self) -> RedisResult<u64> {
        let mut pipe = redis::pipe();
        for list in keys::queue_lists(&self.queue) {
            pipe.llen(list);
        }
        let lens: Vec<u64> = pipe.query_async(&mut self.conn.clone()).await?;
        Ok(lens.iter().sum())
    }

    /// Counts for operators: waiting per priority step, scheduled, held, dead.
    pub async fn stats(&self) -> RedisResult<QueueStats> {
        let mut pipe = redis::pipe();
        for list in keys::queue_lists(&self.queue) {
            pipe.llen(list);
        }
        pipe.zcard(keys::scheduled(&self.queue))
            .hlen(keys::UNACKED)
            .llen(keys::processing(&self.queue))
            .llen(keys::DEAD_LETTER);
        let n: Vec<u64> = pipe.query_async(&mut self.conn.clone()).await?;
        Ok(QueueStats {
            queue: self.queue.clone(),
            waiting: [n[0], n[1], n[2], n[3]],
            scheduled: n[4],
            in_flight: n[5] + n[6],
            dead: n[7],
        })
    }

    /// Puts up to `limit` dead letters (0: all), oldest first, back at the end of their queue.
    pub async fn requeue_dead(&self, limit: usize) -> RedisResult<usize> {
        REQUEUE_DEAD
            .key(keys::DEAD_LETTER)
            .arg(limit)
            .arg(&self.queue)
            .invoke_async(&mut self.conn.clone())
            .await
    }

    /// Deletes every dead letter; returns how many there were.
    pub async fn purge_dead(&self) -> RedisResult<u64> {
        let (n, _): (u64, i64) = redis::pipe()
            .atomic()
            .llen(keys::DEAD_LETTER)
            .del(keys::DEAD_LETTER)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(n)
    }

    /// The newest dead letters first.
    pub async fn dead_letters(&self, limit: isize) -> RedisResult<Vec<DeadLetter>> {
        let raw: Vec<String> = self
            .conn
            .clone()
            .lrange(keys::DEAD_LETTER, 0, limit - 1)
            .await?;
        Ok(raw
            .iter()
            .filter_map(|r| serde_json::from_str(r).ok())
            .collect())
    }

    /// The list a message goes back to: its routing key (or this queue) and priority.
    fn list_of(&self, raw: &str) -> String {
        match Envelope::from_json(raw.as_bytes()) {
            Ok(env) => keys::queue_list(env.routing_key().unwrap_or(&self.queue), env.priority()),
            Err(_) => self.queue.clone(),
        }
    }
}

/// Parses kombu's `[envelope, exchange, routing_key]` and returns the envelope with the
/// redelivered flags set, and the list to push it to.
fn restorable(value: &str, default_queue: &str) -> Option<(String, String)> {
    let (envelope, exchange, routing_key): (serde_json::Value, String, String) =
        serde_json::from_str(value).ok()?;
    let mut env: Envelope = serde_json::from_value(envelope.clone()).ok()?;
    env.mark_redelivered();
    let queue = if exchange.is_empty() && !routing_key.is_empty() {
        routing_key
    } else {
        // Named exchanges would need kombu's binding table; this fleet publishes to "" only.
        env.routing_key().unwrap_or(default_queue).to_owned()
    };
    Some((env.to_json(), keys::queue_list(&queue, env.priority())))
}
