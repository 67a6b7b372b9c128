//! What this worker is doing and has done, for remote control to report and steer: the tasks
//! running now (each with its way to be stopped), the eta tasks it parked, the revoked ids it
//! knows, and counts per task name. In memory only, bounded; the fleet-wide revoked set lives
//! in Redis (`celery_redis::revoked`) and is mirrored here so a check costs no round trip.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use celery_redis::protocol::{pyrepr, Message};
use celery_redis::revoked::{HORIZON, MAX_REVOKED};
use serde_json::{json, Value};

use celery_redis::task::{Stop, Stopped};

/// Most parked eta tasks listed by `scheduled` (they wait in Redis; this is only the listing).
pub const MAX_PARKED_LISTED: usize = 1_000;
/// Largest `args`/`kwargs` kept as JSON in a listing; larger ones are shown as a cut repr.
const MAX_LISTED_ARGS: usize = 1024;

struct Active {
    msg: Arc<Message>,
    started: f64,
    acknowledged: bool,
    stop: Arc<Stop>,
}

/// A parked task's listing, made when it is parked (the message itself is not kept).
struct Parked {
    entry: Value,
    eta: f64,
}

/// Revoked ids, forgotten oldest-remembered first: a cap that holds however the times compare
/// (equal, or set in the future by whoever wrote `fleet:revoked`).
#[derive(Default)]
struct Revoked {
    when: HashMap<String, f64>,
    order: VecDeque<String>,
}

impl Revoked {
    fn insert(&mut self, id: &str, at: f64) {
        if self.when.insert(id.to_owned(), at).is_none() {
            self.order.push_back(id.to_owned());
        }
        let horizon = celery_redis::clock::unix_now() - HORIZON.as_secs_f64();
        while let Some(oldest) = self.order.front() {
            let expired = self.when.get(oldest).is_none_or(|t| *t < horizon);
            if self.order.len() <= MAX_REVOKED && !expired {
                break;
            }
            if let Some(gone) = self.order.pop_front() {
                self.when.remove(&gone);
            }
        }
    }
}

#[derive(Default)]
struct Inner {
    /// Running deliveries by delivery tag (one task id may run twice: a redelivery).
    active: HashMap<String, Active>,
    parked: HashMap<String, Parked>,
    totals: HashMap<String, u64>,
    revoked: Revoked,
}

/// Shared by the tasks, the control node and the heartbeat.
pub struct Registry {
    node: String,
    born: Instant,
    processed: AtomicU64,
    inner: Mutex<Inner>,
}

impl Registry {
    /// An empty registry of the worker named `node`; its uptime counts from now.
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

    /// Records delivery `tag` of a task starting; returns the handle that stops it.
    pub fn start(&self, tag: &str, msg: Arc<Message>, acknowledged: bool) -> Arc<Stop> {
        let stop = Arc::new(Stop::default());
        let mut inner = self.lock();
        // Hashing the id is most of a lookup: skipped when nothing is parked (the usual case).
        if !inner.parked.is_empty() {
            inner.parked.remove(msg.id());
        }
        inner.active.insert(
            tag.to_owned(),
            Active {
                msg,
                started: celery_redis::clock::unix_now(),
                acknowledged,
                stop: stop.clone(),
            },
        );
        stop
    }

    /// Records the end of delivery `tag`; `counted` tasks (registered names only: names come
    /// from messages, and the totals must stay small) add to `stats.total`.
    pub fn finish(&self, tag: &str, name: &str, counted: bool) {
        self.processed.fetch_add(1, Ordering::Relaxed);
        let mut inner = self.lock();
        if counted {
            match inner.totals.get_mut(name) {
                Some(n) => *n = n.saturating_add(1),
                None => {
                    inner.totals.insert(name.to_owned(), 1);
                }
            }
        }
        inner.active.remove(tag);
    }

    /// Records an eta task this worker parked in the schedule (its listing only).
    pub fn park(&self, msg: &Message, eta: f64) {
        let now = celery_redis::clock::unix_now();
        let mut inner = self.lock();
        if inner.parked.len() >= MAX_PARKED_LISTED {
            inner.parked.retain(|_, p| p.eta > now);
        }
        if inner.parked.len() < MAX_PARKED_LISTED {
            let entry = json!({
                "eta": msg.envelope.headers.eta,
                "priority": msg.envelope.priority(),
                "request": self.info(msg, None, false),
            });
            inner
                .parked
                .insert(msg.id().to_owned(), Parked { entry, eta });
        }
    }

    /// Remembers revoked ids at `when` (Unix seconds), within Celery's horizon and cap (the
    /// ids remembered first are forgotten first).
    pub fn revoke(&self, ids: &[&str], when: f64) {
        let mut inner = self.lock();
        for id in ids {
            inner.revoked.insert(id, when);
            inner.parked.remove(*id);
        }
    }

    /// Whether task `id` is revoked (by a `revoke` command here, or synced from the fleet).
    pub fn is_revoked(&self, id: &str) -> bool {
        self.lock().revoked.when.contains_key(id)
    }

    /// Stops every running delivery of task `id` that has not passed its point of no return
    /// ([`Stop::commit`]); returns how many stop and how many run to their end.
    pub fn terminate(&self, id: &str, signum: i32) -> (usize, usize) {
        let inner = self.lock();
        let (mut stopped, mut finishing) = (0, 0);
        for a in inner.active.values().filter(|a| a.msg.id() == id) {
            if a.stop.fire(Stopped::Terminated(signum)) {
                stopped += 1;
            } else {
                finishing += 1;
            }
        }
        (stopped, finishing)
    }

    /// Whether a delivery of task `id` is running here now.
    pub fn is_active(&self, id: &str) -> bool {
        self.lock().active.values().any(|a| a.msg.id() == id)
    }

    /// How many deliveries are running here now (`celery_worker_tasks_active`).
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
        inner.parked.values().map(|p| p.entry.clone()).collect()
    }

    /// `inspect query_task`: `{id: [state, info]}` for the ids running or parked here.
    pub fn query(&self, ids: &[&str]) -> serde_json::Map<String, Value> {
        let now = celery_redis::clock::unix_now();
        let inner = self.lock();
        let mut out = serde_json::Map::new();
        let active: HashMap<&str, &Active> =
            inner.active.values().map(|a| (a.msg.id(), a)).collect();
        for id in ids {
            if let Some(a) = active.get(*id) {
                let info = self.info(&a.msg, Some(a.started), a.acknowledged);
                out.insert((*id).to_owned(), json!(["active", info]));
            } else if let Some(p) = inner.parked.get(*id).filter(|p| p.eta > now) {
                out.insert((*id).to_owned(), json!(["scheduled", p.entry["request"]]));
            }
        }
        out
    }

    /// `inspect revoked`: the revoked ids this worker knows.
    pub fn revoked(&self) -> Vec<String> {
        self.lock().revoked.order.iter().cloned().collect()
    }

    /// `stats.total`: tasks finished per name.
    pub fn totals(&self) -> HashMap<String, u64> {
        self.lock().totals.clone()
    }

    /// Celery's `Request.info()` (large arguments shown as a cut repr).
    fn info(&self, msg: &Message, time_start: Option<f64>, acknowledged: bool) -> Value {
        let env = &msg.envelope;
        let delivery = env.properties.delivery_info.as_ref();
        json!({
            "id": msg.id(),
            "name": msg.task(),
            "args": listed(pyrepr::shown(&Value::Array(msg.body.args.clone()))),
            "kwargs": listed(pyrepr::shown(&Value::Object(msg.body.kwargs.clone()))),
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
            "worker_pid": time_start.map(|_| celery_redis::node::pid()),
        })
    }
}

/// Arguments as JSON when small, else as Python's repr cut to size (a listing stays small).
fn listed(args: Value) -> Value {
    if args.to_string().len() <= MAX_LISTED_ARGS {
        args
    } else {
        Value::String(pyrepr::repr(&args))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use celery_redis::clock::unix_now;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("id-{i}")).collect()
    }

    /// A registry that was told of `ids` revoked, one at a time, each at `at(i)`.
    fn revoked_at(ids: &[String], at: impl Fn(usize) -> f64) -> Registry {
        let r = Registry::new("w1@box");
        for (i, id) in ids.iter().enumerate() {
            r.revoke(&[id.as_str()], at(i));
        }
        r
    }

    /// The registry holds exactly `MAX_REVOKED` ids: the last ones of `ids`, in order.
    fn assert_keeps_the_last(r: &Registry, ids: &[String]) {
        let kept = r.revoked();
        assert_eq!(kept.len(), MAX_REVOKED);
        assert_eq!(kept[..], ids[ids.len() - MAX_REVOKED..]);
        assert!(!r.is_revoked(&ids[0]));
        assert!(r.is_revoked(&ids[ids.len() - 1]));
    }

    #[test]
    fn the_cap_holds_and_forgets_the_first_remembered() {
        let now = unix_now();
        let all = ids(MAX_REVOKED + 3);
        let r = revoked_at(&all, |_| now);
        assert_keeps_the_last(&r, &all);
        assert!(!r.is_revoked("id-2") && r.is_revoked("id-3"));
    }

    #[test]
    fn times_that_compare_oddly_do_not_change_who_is_forgotten() {
        let now = unix_now();
        let all = ids(MAX_REVOKED + 2);
        // Each earlier than the one before, within the horizon: still the first remembered go.
        let r = revoked_at(&all, |i| now - i as f64 * 1e-3);
        assert_keeps_the_last(&r, &all);
        // Dated far ahead (as a forged `fleet:revoked` entry could be), or infinitely.
        let r = revoked_at(&all, |i| if i % 2 == 0 { f64::INFINITY } else { now + 1e9 });
        assert_keeps_the_last(&r, &all);
        // NaN compares false with everything (no caller passes one: the heartbeat drops it,
        // remote control dates by the clock); the cap holds anyway.
        let r = revoked_at(&all, |_| f64::NAN);
        assert_keeps_the_last(&r, &all);
    }

    #[test]
    fn revoking_a_remembered_id_again_keeps_its_place() {
        let now = unix_now();
        let all = ids(MAX_REVOKED + 1);
        let r = revoked_at(&all[..MAX_REVOKED], |_| now);
        r.revoke(&["id-0"], now + 5.0);
        assert_eq!(r.revoked().len(), MAX_REVOKED, "no second entry for id-0");
        r.revoke(&[all[MAX_REVOKED].as_str()], now);
        assert_keeps_the_last(&r, &all);
    }

    #[test]
    fn ids_older_than_the_horizon_are_forgotten_from_the_front() {
        let now = unix_now();
        let stale = now - HORIZON.as_secs_f64() - 1.0;
        let r = Registry::new("w1@box");
        r.revoke(&["old"], stale);
        assert!(
            !r.is_revoked("old"),
            "an id dated past the horizon is not kept"
        );
        // Behind a live id a stale one waits its turn (oldest remembered first)...
        r.revoke(&["a", "b", "c"], now);
        r.revoke(&["b"], stale);
        assert_eq!(r.revoked(), ["a", "b", "c"]);
        // ...and goes with the stale ones in front of it, up to the first live one.
        r.revoke(&["a"], stale);
        assert_eq!(r.revoked(), ["c"]);
        r.revoke(&["d"], now);
        assert_eq!(r.revoked(), ["c", "d"]);
    }
}
