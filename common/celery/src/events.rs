//! Celery events: PUBLISHed on `/<db>.celeryev/<type with '-' as '.'>` (behind the key prefix), each stamped with the
//! node, pid, Lamport clock and time. Worker events go out at once; task events are batched as
//! Celery's Redis workers send them (a JSON list on `task.multi`, up to [`MAX_BATCH`] per
//! message), and only while task events are switched on (`-E`, `enable_events`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use redis::RedisResult;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, oneshot};

use crate::conn::Conn;
use crate::control::Lamport;
use crate::keys::{Layout, EVENT_EXCHANGE};
use crate::protocol::fanout::{Fanout, TRANSIENT};

/// Most task events in one `task.multi` message (Celery flushes at 24, or on the next tick).
pub const MAX_BATCH: usize = 24;
/// Task events buffered while Redis is slow; beyond this they are dropped (and counted), as
/// events are advisory: losing one never loses a task.
pub const MAX_BUFFERED: usize = 10_000;

enum Item {
    /// One task event, already JSON text (an object).
    Event(String),
    Flush(oneshot::Sender<()>),
}

/// Sends this node's events. Cheap to clone; clones share the switch, clock and buffer.
#[derive(Clone)]
pub struct Events {
    conn: Conn,
    db: i64,
    /// The fleet's key layout: its prefix goes in front of every channel.
    layout: Arc<Layout>,
    node: Arc<str>,
    clock: Arc<Lamport>,
    task_events: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
    tx: mpsc::Sender<Item>,
}

/// The background half of [`Events`]: run it (it ends once every [`Events`] is dropped).
pub struct Batcher {
    conn: Conn,
    node: String,
    channel: String,
    rx: mpsc::Receiver<Item>,
}

impl Events {
    /// The sender of `node`'s events on `conn` (database `db`, named by `layout`), and the
    /// batcher to run; task events are on from the start when `task_events` is.
    pub fn new(
        conn: Conn,
        layout: &Layout,
        db: i64,
        node: &str,
        clock: Arc<Lamport>,
        task_events: bool,
    ) -> (Self, Batcher) {
        let (tx, rx) = mpsc::channel(MAX_BUFFERED);
        let batcher = Batcher {
            conn: conn.clone(),
            node: node.to_owned(),
            channel: layout.fanout_channel(db, EVENT_EXCHANGE, "task.multi"),
            rx,
        };
        let events = Events {
            conn,
            db,
            layout: Arc::new(layout.clone()),
            node: node.into(),
            clock,
            task_events: Arc::new(AtomicBool::new(task_events)),
            dropped: Arc::new(AtomicU64::new(0)),
            tx,
        };
        (events, batcher)
    }

    /// The Lamport clock every event is stamped with.
    pub fn clock(&self) -> &Lamport {
        &self.clock
    }

    /// Whether task events are on.
    pub fn task_events(&self) -> bool {
        self.task_events.load(Ordering::Relaxed)
    }

    /// Switches task events; returns whether they were on before.
    pub fn set_task_events(&self, on: bool) -> bool {
        self.task_events.swap(on, Ordering::Relaxed)
    }

    /// Task events dropped because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The event `kind` with `fields` (and the task's `uuid`), stamped as Celery's dispatcher
    /// does, as JSON text: written straight from the fields (no JSON tree built per event).
    fn stamp<'f, F>(&self, kind: &str, uuid: Option<&str>, fields: F) -> String
    where
        F: Iterator<Item = (&'f str, &'f Value)> + Clone,
    {
        let event = Stamped {
            fields,
            uuid,
            kind,
            node: &self.node,
            clock: self.clock.tick(),
        };
        // Serializing strings, numbers and JSON values into a String cannot fail.
        serde_json::to_string(&event).unwrap_or_default()
    }

    /// Publishes one event now, unbatched (worker events, and `task-sent` from producers).
    pub async fn send_now(&self, kind: &str, fields: Map<String, Value>) -> RedisResult<()> {
        let event = self.stamp(kind, None, fields.iter().map(|(k, v)| (k.as_str(), v)));
        let channel = self
            .layout
            .fanout_channel(self.db, EVENT_EXCHANGE, &kind.replace('-', "."));
        publish(&self.conn, &channel, &self.node, &event).await
    }

    /// Queues a task event for the next `task.multi` batch, if task events are on. `fields` are
    /// the event's own (`name`, `result`...), never a stamp's (`uuid`, `type`, `hostname`...).
    pub fn task(&self, kind: &str, uuid: &str, fields: &[(&str, Value)]) {
        if !self.task_events() {
            return;
        }
        let event = self.stamp(kind, Some(uuid), fields.iter().map(|(k, v)| (*k, v)));
        if self.tx.try_send(Item::Event(event)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Waits until every task event queued so far has been published (or given up on).
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Item::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

impl Batcher {
    /// Publishes queued task events, up to [`MAX_BATCH`] per message, until every sender is gone.
    pub async fn run(mut self) {
        let mut items = Vec::with_capacity(MAX_BATCH);
        while self.rx.recv_many(&mut items, MAX_BATCH).await > 0 {
            // The JSON list of the events, joined as text.
            let mut batch = String::from("[");
            let mut flushed = Vec::new();
            for item in items.drain(..) {
                match item {
                    Item::Event(e) => {
                        if batch.len() > 1 {
                            batch.push(',');
                        }
                        batch.push_str(&e);
                    }
                    Item::Flush(done) => flushed.push(done),
                }
            }
            if batch.len() > 1 {
                batch.push(']');
                if let Err(e) = publish(&self.conn, &self.channel, &self.node, &batch).await {
                    log::warn!("task events lost: {e}");
                }
            }
            for done in flushed {
                let _ = done.send(());
            }
        }
    }
}

/// One event as Celery's dispatcher stamps it: its own fields, the task's `uuid`, then `type`,
/// `hostname`, `pid`, `clock`, `timestamp` and `utcoffset`.
struct Stamped<'a, F> {
    fields: F,
    uuid: Option<&'a str>,
    kind: &'a str,
    node: &'a str,
    clock: u64,
}

impl<'a, 'f, F> Serialize for Stamped<'a, F>
where
    F: Iterator<Item = (&'f str, &'f Value)> + Clone,
{
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut event = s.serialize_map(None)?;
        for (k, v) in self.fields.clone() {
            event.serialize_entry(k, v)?;
        }
        if let Some(uuid) = self.uuid {
            event.serialize_entry("uuid", uuid)?;
        }
        event.serialize_entry("type", self.kind)?;
        event.serialize_entry("hostname", self.node)?;
        event.serialize_entry("pid", &std::process::id())?;
        event.serialize_entry("clock", &self.clock)?;
        event.serialize_entry("timestamp", &crate::clock::unix_now())?;
        // Hours west of UTC; this process keeps every time in UTC.
        event.serialize_entry("utcoffset", &0)?;
        event.end()
    }
}

/// Publishes `body` (JSON text: one event, or a list of them) on `channel`.
async fn publish(conn: &Conn, channel: &str, node: &str, body: &str) -> RedisResult<()> {
    let headers = Map::from_iter([("hostname".to_owned(), json!(node))]);
    let raw = Fanout::encode_json(
        body,
        headers,
        TRANSIENT,
        EVENT_EXCHANGE,
        routing_key(channel),
    );
    redis::cmd("PUBLISH")
        .arg(channel)
        .arg(raw)
        .query_async(&mut conn.clone())
        .await
}

/// The routing key inside a fanout channel name (`/0.celeryev/task.multi` -> `task.multi`).
fn routing_key(channel: &str) -> &str {
    channel.split_once('/').map_or("", |(_, rest)| {
        rest.split_once('/').map_or("", |(_, rk)| rk)
    })
}
