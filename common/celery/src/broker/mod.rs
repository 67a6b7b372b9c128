//! The broker side of kombu's Redis transport: a queue as producers and consumers see it.
//!
//! Every step that moves a message is one Lua script, so a message is always in exactly one
//! place in Redis: a queue list, the processing list (for a moment), `unacked`, the schedule, or
//! the dead-letter list. Every time decision uses the Redis server's clock. The broker is the only
//! owner of acknowledgement: every way a delivery ends is a method of [`Broker`].
//!
//! - this file: the [`Broker`] value, publishing and counts;
//! - [`consume`] — claims (kombu's `unacked` bookkeeping), the blocking wait, lease renewal;
//! - [`settle`] — the ways a held delivery ends (ack, requeue, schedule, retry, dead letter);
//! - [`finish`] — a task's end in one step, with a chord's body when it completes the chord;
//! - [`schedule`] — eta messages coming due;
//! - [`restore`] — giving back what dead workers held;
//! - [`dead`] — the dead-letter list; `letter`, the shape of one entry;
//! - [`stats`] — counts for operators and metrics, and lists of a queue laid out another way.

use std::sync::Arc;

use crate::conn::Conn;
use redis::{AsyncCommands, RedisResult};

use crate::batch::{Batcher, Replication};
use crate::keys::Layout;
use crate::protocol::{Limits, TaskMessage};
use crate::result::ResultBackend;
use crate::routes::Routes;
use crate::scripts::{FINISH_BATCH, PUBLISH_ONCE};

pub mod canvas;
pub mod consume;
pub mod dead;
pub mod finish;
mod letter;
pub mod restore;
pub mod schedule;
pub mod settle;
pub mod stats;

pub use canvas::ChordIds;
pub use consume::{Claim, Delivery, Rotation, MAX_CLAIM_BATCH};
pub use dead::DeadLetter;
pub use restore::Visibility;
pub use stats::{export, Foreign, QueueStats};

/// Most entries one restore or promotion pass moves.
const BATCH: usize = 100;

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
    conn: Conn,
    /// The queue this broker consumes, counts and schedules for.
    queue: String,
    /// Where the tasks it publishes go, by name.
    routes: Routes,
    /// The node name written as `origin` in every message this broker publishes.
    origin: String,
    /// Backpressure for [`Broker::publish_once`]: most messages waiting (0: no limit).
    max_depth: u64,
    /// How long an idempotency key of [`Broker::publish_once`] lives.
    retention: std::time::Duration,
    /// Where a FAILURE goes for a message the broker dead-letters on its own (an eta message or
    /// a restore that cannot be routed), so its caller does not wait forever.
    results: Option<ResultBackend>,
    /// Where the next restore pass starts in `unacked_index` (entries still held passed over).
    restore_skip: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// What a message it claims may cost: larger entries are dead-lettered by the claim.
    limits: Limits,
    /// Whether the server refused `CLIENT REPLY` (see [`Broker::wait_for_message`]); shared by
    /// every clone.
    reply_refused: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Where kombu's keys are (priority steps, separator, global prefix).
    layout: Arc<Layout>,
    /// Tasks' ends, in batches (group commit, see [`crate::batch`]).
    finisher: Batcher,
}

impl Broker {
    /// `origin` is the sender's node name (Celery's `origin` header).
    pub fn new(conn: Conn, queue: impl Into<String>, origin: impl Into<String>) -> Self {
        let queue = queue.into();
        Broker {
            finisher: Batcher::new(&FINISH_BATCH, conn.clone(), Replication::Should),
            conn,
            routes: Routes::to(queue.clone()),
            queue,
            origin: origin.into(),
            max_depth: 0,
            retention: std::time::Duration::from_secs(7 * 86_400),
            results: None,
            restore_skip: Default::default(),
            limits: Limits::default(),
            reply_refused: Default::default(),
            layout: Arc::default(),
        }
    }

    /// Claims within `limits` (entry size, deliveries).
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// What a message it claims may cost.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Names kombu's keys by `layout` (default: kombu's default layout).
    pub fn with_layout(mut self, layout: Layout) -> Self {
        self.layout = Arc::new(layout);
        self
    }

    /// Where this fleet's kombu keys are.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Idempotency keys of [`Broker::publish_once`] live this long (at least a second).
    pub fn with_retention(mut self, retention: std::time::Duration) -> Self {
        self.retention = retention.max(std::time::Duration::from_secs(1));
        self
    }

    /// Stores a FAILURE in `results` for each message this broker dead-letters by itself.
    pub fn with_results(mut self, results: ResultBackend) -> Self {
        self.results = Some(results);
        self
    }

    /// Refuses [`Broker::publish_once`] while `max_depth` or more messages wait (0: no limit).
    pub fn with_max_depth(mut self, max_depth: u64) -> Self {
        self.max_depth = max_depth;
        self
    }

    /// Routes the tasks it publishes by name (default: all to its own queue).
    pub fn with_routes(mut self, routes: Routes) -> Self {
        self.routes = routes;
        self
    }

    /// The same broker, consuming (counting, scheduling for) `queue`.
    pub fn for_queue(&self, queue: &str) -> Self {
        Broker {
            queue: queue.to_owned(),
            ..self.clone()
        }
    }

    /// The queue it consumes, counts and schedules for.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// The queue a task named `task` is published to (its route, else the default queue).
    pub fn route(&self, task: &str) -> &str {
        self.routes.queue_for(task)
    }

    /// Where the tasks it publishes go, by name.
    pub fn routes(&self) -> &Routes {
        &self.routes
    }

    /// The node name it writes as `origin` in every message it publishes.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Its connection to the broker's Redis, shared with every clone.
    pub fn connection(&self) -> Conn {
        self.conn.clone()
    }

    /// `msg` as the JSON kombu puts on the list.
    fn envelope_json(&self, msg: &TaskMessage) -> String {
        msg.to_json(&self.origin)
    }

    /// LPUSHes a task to the list for its queue and priority, as a Celery producer does.
    pub async fn publish(&self, msg: &TaskMessage) -> RedisResult<()> {
        let list = self.layout.queue_list(&msg.queue, msg.priority);
        let envelope = self.envelope_json(msg);
        self.conn
            .must_replicate()
            .lpush::<_, _, ()>(list, envelope)
            .await
    }

    /// Publishes many tasks in one pipelined round trip (one LPUSH per priority list).
    pub async fn publish_many(&self, msgs: &[TaskMessage]) -> RedisResult<()> {
        let mut by_list: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for msg in msgs {
            by_list
                .entry(self.layout.queue_list(&msg.queue, msg.priority))
                .or_default()
                .push(self.envelope_json(msg));
        }
        let mut pipe = redis::pipe();
        for (list, envelopes) in by_list {
            pipe.lpush(list, envelopes).ignore();
        }
        pipe.query_async(&mut self.conn.must_replicate()).await
    }

    /// Publishes `msg` unless a task was already published under `idempotency_key`, or the
    /// queue is full. Key and message are written in one step, or neither.
    pub async fn publish_once(
        &self,
        idempotency_key: &str,
        msg: &TaskMessage,
    ) -> RedisResult<Submitted> {
        let mut inv = PUBLISH_ONCE.key(idempotency_key);
        inv.key(self.layout.queue_list(&msg.queue, msg.priority));
        for list in self.layout.queue_lists(&msg.queue) {
            inv.key(list);
        }
        let (what, value): (String, String) = inv
            .arg(&msg.id)
            .arg(self.envelope_json(msg))
            .arg(self.max_depth)
            .arg(self.retention.as_secs())
            .invoke_async(&mut self.conn.must_replicate())
            .await?;
        Ok(match what.as_str() {
            "created" => Submitted::Created(value),
            "full" => Submitted::QueueFull(value.parse().unwrap_or(self.max_depth)),
            _ => Submitted::Existing(value),
        })
    }
}
