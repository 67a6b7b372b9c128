//! Celery events: PUBLISHed on `/<db>.celeryev/<type with '-' as '.'>` (behind the key prefix), each stamped with the
//! node, pid, Lamport clock and time. Worker events go out at once; task events are batched as
//! Celery's Redis workers send them (a JSON list on `task.multi`, up to [`MAX_BATCH`] per
//! message), and only while task events are switched on (`-E`, `enable_events`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use redis::RedisResult;
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, oneshot};

use crate::conn::Conn;
use crate::control::Lamport;
use crate::keys::{Layout, EVENT_EXCHANGE};
use crate::protocol::fanout::{Fanout, TRANSIENT};
use crate::protocol::json::{self, Object};

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

    /// The event `kind` with the fields `write` writes (and the task's `uuid`), stamped as
    /// Celery's dispatcher does, as JSON text: written straight from the fields (no JSON tree
    /// built per event).
    fn stamp(&self, kind: &str, uuid: Option<&str>, write: impl FnOnce(&mut Object<'_>)) -> String {
        stamped(&self.node, self.clock.tick(), kind, uuid, write)
    }

    /// Publishes one event now, unbatched (worker events, and `task-sent` from producers).
    pub async fn send_now(&self, kind: &str, fields: Map<String, Value>) -> RedisResult<()> {
        let event = self.stamp(kind, None, |event| {
            for (k, v) in &fields {
                json::value(event.entry(k), v);
            }
        });
        let channel = self
            .layout
            .fanout_channel(self.db, EVENT_EXCHANGE, &kind.replace('-', "."));
        publish(&self.conn, &channel, &self.node, &event).await
    }

    /// Queues a task event for the next `task.multi` batch, if task events are on. `fields` are
    /// the event's own (`name`, `result`...), never a stamp's (`uuid`, `type`, `hostname`...).
    pub fn task(&self, kind: &str, uuid: &str, fields: &[(&str, Field<'_>)]) {
        if !self.task_events() {
            return;
        }
        let event = self.stamp(kind, Some(uuid), |event| {
            for (k, field) in fields {
                field.write(event.entry(k));
            }
        });
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

/// One field of a task event, borrowed from what the worker holds: written as JSON as
/// serde_json writes the same value, without a JSON value built and dropped for it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Field<'a> {
    /// A string.
    Str(&'a str),
    /// A string, or `null`.
    OptStr(Option<&'a str>),
    /// An integer, or `null`.
    Int(Option<i64>),
    /// A number (`null` when it is not finite, as serde_json writes one).
    Float(f64),
    /// `true` or `false`.
    Bool(bool),
}

impl Field<'_> {
    fn write(&self, out: &mut String) {
        match *self {
            Field::Str(s) => json::string(out, s),
            Field::OptStr(s) => json::opt_string(out, s),
            Field::Int(n) => json::opt_int(out, n),
            Field::Float(x) => json::value(out, &Value::from(x)),
            Field::Bool(b) => json::bool(out, b),
        }
    }
}

/// One event as Celery's dispatcher stamps it: its own fields (`write` writes them), the task's
/// `uuid`, then `type`, `hostname`, `pid`, `clock`, `timestamp` and `utcoffset`; as serde would
/// write it, by hand (`protocol::json`: serde escapes each string a byte at a time).
fn stamped(
    node: &str,
    clock: u64,
    kind: &str,
    uuid: Option<&str>,
    write: impl FnOnce(&mut Object<'_>),
) -> String {
    let mut out = String::with_capacity(512);
    let mut event = Object::new(&mut out);
    write(&mut event);
    if let Some(uuid) = uuid {
        json::string(event.key("uuid"), uuid);
    }
    json::string(event.key("type"), kind);
    json::string(event.key("hostname"), node);
    json::opt_int(event.key("pid"), Some(i64::from(crate::node::pid())));
    json::value(event.key("clock"), &Value::from(clock));
    json::value(
        event.key("timestamp"),
        &Value::from(crate::clock::unix_now()),
    );
    // Hours west of UTC; this process keeps every time in UTC.
    event.key("utcoffset").push('0');
    event.end();
    out
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

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::Field;

    #[test]
    fn a_stamped_event_is_valid_json_with_its_fields_then_the_stamps() {
        for text in ["plain", "quote \" back \\ nl \n nul \u{0}", "ünï 😀"] {
            let fields = [
                ("name", Field::Str(text)),
                ("args", Field::OptStr(Some(text))),
                ("parent_id", Field::OptStr(None)),
                ("retries", Field::Int(Some(-3))),
                ("signum", Field::Int(None)),
                ("runtime", Field::Float(0.1 + 0.2)),
                ("nan", Field::Float(f64::NAN)),
                ("expired", Field::Bool(true)),
            ];
            let event = super::stamped(text, 7, "task-received", Some(text), |event| {
                for (k, f) in &fields {
                    f.write(event.entry(k));
                }
            });
            let mut parsed: Value = serde_json::from_str(&event).unwrap();
            assert!(parsed["timestamp"].as_f64().unwrap() > 1.7e9, "{event}");
            parsed["timestamp"] = json!(0);
            let pid = std::process::id();
            assert_eq!(
                parsed,
                json!({"name": text, "args": text, "parent_id": null, "retries": -3,
                    "signum": null, "runtime": 0.1 + 0.2, "nan": null, "expired": true,
                    "uuid": text, "type": "task-received", "hostname": text, "pid": pid,
                    "clock": 7, "timestamp": 0, "utcoffset": 0})
            );
            assert!(
                event.starts_with(r#"{"name":"#) && event.ends_with(r#","utcoffset":0}"#),
                "{event}"
            );
        }
    }

    /// Each field is the text serde_json writes for the same value.
    #[test]
    fn fields_are_written_as_serde_writes_them() {
        let cases = [
            (Field::Str("a\"b\u{2028}"), json!("a\"b\u{2028}")),
            (Field::OptStr(None), json!(null)),
            (Field::Int(Some(i64::MIN)), json!(i64::MIN)),
            (Field::Float(1e-7), json!(1e-7)),
            (Field::Float(123456789.125), json!(123456789.125)),
            (Field::Float(f64::INFINITY), json!(f64::INFINITY)),
            (Field::Float(-0.0), json!(-0.0)),
            (Field::Bool(false), json!(false)),
        ];
        for (field, value) in cases {
            let mut out = String::new();
            field.write(&mut out);
            assert_eq!(out, serde_json::to_string(&value).unwrap(), "{field:?}");
        }
    }
}
