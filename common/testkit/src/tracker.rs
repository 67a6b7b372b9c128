//! [`Tracker`]: the task results a suite under faults waits for (the fault and Sentinel
//! suites): every state published on `celery-task-meta-*` recorded once ([`Tracker::follow`]),
//! the ones that went by unheard read back from Redis, and a wait woken by each result.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use celery_redis::keys;
use celery_redis::result::{ResultMeta, TaskState};
use futures_util::StreamExt;
use tokio::sync::{oneshot, Notify};

/// Ready states seen, how often each task STARTED, and when each became ready.
#[derive(Default)]
pub struct Seen {
    /// The first ready state (SUCCESS, FAILURE...) of each task.
    pub ready: HashMap<String, ResultMeta>,
    /// How many times each task was seen STARTED.
    pub started: HashMap<String, u32>,
    /// When each ready state arrived, in order.
    pub completions: Vec<Instant>,
    /// When each task was first seen ready.
    pub ready_at: HashMap<String, Instant>,
    /// The tasks waited for.
    pub expected: HashSet<String>,
}

/// What a result listener records; [`Tracker::changed`] is notified at each record.
#[derive(Default)]
pub struct Tracker {
    seen: Mutex<Seen>,
    /// Notified at every record, for waiters.
    pub changed: Notify,
}

impl Tracker {
    /// What was seen so far (locked: keep the guard short).
    pub fn lock(&self) -> MutexGuard<'_, Seen> {
        self.seen.lock().unwrap()
    }

    /// Records a state: a STARTED counted, the first ready state of a task kept.
    pub fn record(&self, meta: ResultMeta) {
        let mut seen = self.lock();
        if meta.status == TaskState::Started {
            *seen.started.entry(meta.task_id.clone()).or_default() += 1;
        } else if meta.status.is_ready() && !seen.ready.contains_key(&meta.task_id) {
            seen.completions.push(Instant::now());
            seen.ready_at.insert(meta.task_id.clone(), Instant::now());
            seen.ready.insert(meta.task_id.clone(), meta);
        }
        drop(seen);
        self.changed.notify_waiters();
    }

    /// Records a published state (a message's payload), if it is one.
    pub fn record_payload(&self, payload: &[u8]) {
        if let Ok(meta) = serde_json::from_slice::<ResultMeta>(payload) {
            self.record(meta);
        }
    }

    /// One subscription to `client`'s published states: once subscribed it tells `subscribed`
    /// (the first time), reads what went by meanwhile ([`Tracker::catch_up`]), then records
    /// every state until the connection ends or `leave` is notified (a failover). Returns
    /// whether it subscribed at all (if not, the caller waits a little before the next).
    pub async fn follow(
        &self,
        client: &redis::Client,
        subscribed: &mut Option<oneshot::Sender<()>>,
        leave: &Notify,
    ) -> bool {
        let Ok(mut pubsub) = client.get_async_pubsub().await else {
            return false;
        };
        if pubsub.psubscribe("celery-task-meta-*").await.is_err() {
            return false;
        }
        if let Some(tx) = subscribed.take() {
            let _ = tx.send(());
        }
        self.catch_up(client).await;
        let mut stream = pubsub.on_message();
        loop {
            let msg = tokio::select! {
                _ = leave.notified() => return true,
                msg = stream.next() => msg,
            };
            let Some(msg) = msg else { return true };
            self.record_payload(msg.get_payload_bytes());
        }
    }

    /// Registers ids to wait for, and reads the ones already finished (their events may have
    /// gone by before they were expected, or while the listener was reconnecting).
    pub async fn expect(&self, client: &redis::Client, ids: impl IntoIterator<Item = String>) {
        self.lock().expected.extend(ids);
        self.catch_up(client).await;
        self.changed.notify_waiters();
    }

    /// Reads the outstanding results from `client`'s server (after each subscription: what was
    /// published while the listener was away).
    pub async fn catch_up(&self, client: &redis::Client) {
        let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
            return;
        };
        for chunk in self.outstanding().chunks(500) {
            let keys: Vec<String> = chunk.iter().map(|id| keys::task_meta(id)).collect();
            let values: Vec<Option<String>> = redis::cmd("MGET")
                .arg(keys)
                .query_async(&mut conn)
                .await
                .unwrap_or_default();
            for v in values.into_iter().flatten() {
                self.record_payload(v.as_bytes());
            }
        }
    }

    /// The expected tasks not seen ready.
    pub fn outstanding(&self) -> Vec<String> {
        let seen = self.lock();
        let out = seen
            .expected
            .iter()
            .filter(|id| !seen.ready.contains_key(*id));
        out.cloned().collect()
    }

    /// Waits until every expected task is ready (woken by each result), or the deadline.
    pub async fn all_ready(&self, deadline: Instant) {
        loop {
            let changed = self.changed.notified();
            if self.outstanding().is_empty() || Instant::now() >= deadline {
                return;
            }
            let _ = tokio::time::timeout(Duration::from_millis(500), changed).await;
        }
    }
}
