//! What this worker is doing and has done, for remote control to report and steer: the tasks
//! running now (each with its way to be stopped), the eta tasks it parked, the revoked ids it
//! knows, and counts per task name. In memory only, bounded; the fleet-wide revoked set lives
//! in Redis (`celery_redis::revoked`) and is mirrored here so a check costs no round trip.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use celery_redis::protocol::Message;
use celery_redis::revoked::{HORIZON, MAX_REVOKED};
use serde_json::{json, Value};
use tokio::sync::Notify;

/// Most parked eta tasks listed by `scheduled` (they wait in Redis; this is only the listing).
pub const MAX_PARKED_LISTED: usize = 10_000;

/// How a running task is stopped from outside (`revoke(terminate=True)`).
#[derive(Debug, Default)]
pub struct Stop {
    notify: Notify,
    signum: AtomicI32,
}

impl Stop {
    /// Stops the task; `signum` is reported in `task-revoked` (15 for SIGTERM).
    pub fn fire(&self, signum: i32) {
        self.signum.store(signum, Ordering::Relaxed);
        self.notify.notify_one();
    }

    /// Resolves once fired, with the signal number.
    pub async fn fired(&self) -> i32 {
        self.notify.notified().await;
        self.signum.load(Ordering::Relaxed)
    }
}

struct Active {
    msg: Arc<Message>,
    started: f64,
    acknowledged: bool,
    stop: Arc<Stop>,
}

struct Parked {
    msg: Arc<Message>,
    eta: f64,
}

#[derive(Default)]
struct Inner {
    active: HashMap<String, Active>,
    parked: HashMap<String, Parked>,
    totals: HashMap<String, u64>,
    /// Revoked id -> when (Unix seconds).
    revoked: HashMap<String, f64>,
}

/// Shared by the tasks, the control node and the heartbeat.
pub struct Registry {
    node: String,
    born: Instant,
    processed: AtomicU64,
    inner: Mutex<Inner>,
}

impl Registry {
    pub fn new(node: &str) -> Self {
        Registry {
            node: node.to_owned(),
            born: Instant::now(),
            processed: AtomicU64::new(0),
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every update below is one map operation: a panic elsewhere cannot leave it half done.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Seconds since this worker started.
    pub fn uptime(&self) -> u64 {
        self.born.elapsed().as_secs()
    }

    /// Tasks finished since start (any outcome).
    pub fn processed(&self) -> u64 {
        self.processed.load(Ordering::Relaxed)
    }

    /// Records a task starting; returns the handle that stops it.
    pub fn start(&self, msg: Arc<Message>, acknowledged: bool) -> Arc<Stop> {
        let stop = Arc::new(Stop::default());
        let mut inner = self.lock();
        inner.parked.remove(msg.id());
        inner.active.insert(
            msg.id().to_owned(),
            Active {
                msg,
                started: celery_redis::clock::unix_now(),
                acknowledged,
                stop: stop.clone(),
            },
        );
        stop
    }

    /// Records a task's end; returns its runtime in seconds.
    pub fn finish(&self, msg: &Message) -> f64 {
        self.processed.fetch_add(1, Ordering::Relaxed);
        let mut inner = self.lock();
        match inner.totals.get_mut(msg.task()) {
            Some(n) => *n = n.saturating_add(1),
            // Names come from messages: only registered ones reach here, so this stays small.
            None => {
                inner.totals.insert(msg.task().to_owned(), 1);
            }
        }
        inner.active.remove(msg.id()).map_or(0.0, |a| {
            (celery_redis::clock::unix_now() - a.started).max(0.0)
        })
    }

    /// Records an eta task this worker parked in the schedule.
    pub fn park(&self, msg: Arc<Message>, eta: f64) {
        let mut inner = self.lock();
        if inner.parked.len() < MAX_PARKED_LISTED {
            inner
                .parked
                .insert(msg.id().to_owned(), Parked { msg, eta });
        }
    }

    /// Remembers revoked ids at `when` (Unix seconds); forgets what is past Celery's horizon
    /// or cap, oldest first.
    pub fn revoke(&self, ids: &[&str], when: f64) {
        let mut inner = self.lock();
        for id in ids {
            inner.revoked.insert((*id).to_owned(), when);
            inner.parked.remove(*id);
        }
        if inner.revoked.len() > MAX_REVOKED {
            let horizon = celery_redis::clock::unix_now() - HORIZON.as_secs_f64();
            inner.revoked.retain(|_, t| *t >= horizon);
            if inner.revoked.len() > MAX_REVOKED {
                let mut times: Vec<f64> = inner.revoked.values().copied().collect();
                times.sort_by(f64::total_cmp);
                let cut = times[times.len() - MAX_REVOKED];
                inner.revoked.retain(|_, t| *t >= cut);
            }
        }
    }

    pub fn is_revoked(&self, id: &str) -> bool {
        self.lock().revoked.contains_key(id)
    }

    /// Stops a running task; false when it is not running here.
    pub fn terminate(&self, id: &str, signum: i32) -> bool {
        match self.lock().active.get(id) {
            Some(a) => {
                a.stop.fire(signum);
                true
            }
            None => false,
        }
    }

    pub fn is_active(&self, id: &str) -> bool {
        self.lock().active.contains_key(id)
    }

    pub fn active_count(&self) -> usize {
        self.lock().active.len()
    }

    /// `inspect active`: Celery's request info of each running task.
    pub fn active(&self) -> Vec<Value> {
        let inner = self.lock();
        inner
            .active
            .values()
            .map(|a| self.info(&a.msg, Some(a.started), a.acknowledged))
            .collect()
    }

    /// `inspect scheduled`: the parked tasks whose eta has not come.
    pub fn scheduled(&self) -> Vec<Value> {
        let now = celery_redis::clock::unix_now();
        let mut inner = self.lock();
        inner.parked.retain(|_, p| p.eta > now);
        inner
            .parked
            .values()
            .map(|p| self.scheduled_entry(p))
            .collect()
    }

    fn scheduled_entry(&self, p: &Parked) -> Value {
        json!({
            "eta": p.msg.envelope.headers.eta,
            "priority": p.msg.envelope.priority(),
            "request": self.info(&p.msg, None, false),
        })
    }

    /// `inspect query_task`: `{id: [state, info]}` for the ids running or parked here.
    pub fn query(&self, ids: &[&str]) -> serde_json::Map<String, Value> {
        let now = celery_redis::clock::unix_now();
        let inner = self.lock();
        let mut out = serde_json::Map::new();
        for id in ids {
            if let Some(a) = inner.active.get(*id) {
                let info = self.info(&a.msg, Some(a.started), a.acknowledged);
                out.insert((*id).to_owned(), json!(["active", info]));
            } else if let Some(p) = inner.parked.get(*id).filter(|p| p.eta > now) {
                let info = self.info(&p.msg, None, false);
                out.insert((*id).to_owned(), json!(["scheduled", info]));
            }
        }
        out
    }

    /// `inspect revoked`: the revoked ids this worker knows.
    pub fn revoked(&self) -> Vec<String> {
        self.lock().revoked.keys().cloned().collect()
    }

    /// `stats.total`: tasks finished per name.
    pub fn totals(&self) -> HashMap<String, u64> {
        self.lock().totals.clone()
    }

    /// Celery's `Request.info()`.
    fn info(&self, msg: &Message, time_start: Option<f64>, acknowledged: bool) -> Value {
        let env = &msg.envelope;
        let delivery = env.properties.delivery_info.as_ref();
        json!({
            "id": msg.id(),
            "name": msg.task(),
            "args": msg.body.args,
            "kwargs": msg.body.kwargs,
            "type": msg.task(),
            "hostname": self.node,
            "time_start": time_start,
            "acknowledged": acknowledged,
            "delivery_info": {
                "exchange": delivery.map_or("", |d| d.exchange.as_str()),
                "routing_key": delivery.map_or("", |d| d.routing_key.as_str()),
                "priority": env.priority(),
                "redelivered": env.headers.extra.get("redelivered").and_then(Value::as_bool).unwrap_or(false),
            },
            "worker_pid": time_start.map(|_| std::process::id()),
        })
    }
}
