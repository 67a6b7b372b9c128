//! Worker events: `worker-online` at start, `worker-heartbeat` every [`FREQ`] (Flower and
//! `celery events` count a worker alive for two periods after the last one), `worker-offline`
//! at shutdown. The same beat refreshes this worker's copy of the fleet's revoked ids.

use std::sync::Arc;
use std::time::Duration;

use celery_redis::conn::Conn;
use celery_redis::events::Events;
use celery_redis::revoked;
use celery_redis::shutdown::Shutdown;
use serde_json::{json, Map, Value};

use crate::registry::Registry;

/// Celery's heartbeat period.
pub const FREQ: Duration = Duration::from_secs(2);
/// The `freq` of a heartbeat sent on demand (the answer to a `heartbeat` control cast).
pub const ON_DEMAND_FREQ: f64 = 5.0;
/// What `sw_ident` says this worker is (Python workers say `py-celery`).
pub const SW_IDENT: &str = "rust-celery-fleet";
/// Revokes are read again from this far before the newest one seen (servers' clocks differ
/// between writers' scripts only by the time a script takes, but a margin costs nothing).
const REVOKE_OVERLAP: f64 = 5.0;

fn software() -> Map<String, Value> {
    Map::from_iter([
        ("sw_ident".to_owned(), json!(SW_IDENT)),
        ("sw_ver".to_owned(), json!(env!("CARGO_PKG_VERSION"))),
        ("sw_sys".to_owned(), json!(sys_name())),
    ])
}

fn sys_name() -> &'static str {
    match std::env::consts::OS {
        "linux" => "Linux",
        "macos" => "Darwin",
        other => other,
    }
}

/// The fields of `worker-online`, `-heartbeat` and `-offline`.
pub fn fields(registry: &Registry) -> Map<String, Value> {
    let mut f = software();
    f.insert("freq".into(), json!(FREQ.as_secs_f64()));
    f.insert("active".into(), json!(registry.active_count()));
    f.insert("processed".into(), json!(registry.processed()));
    f.insert("loadavg".into(), json!(loadavg()));
    f
}

/// The heartbeat a `heartbeat` control cast asks for (Celery sends only these fields).
pub fn on_demand() -> Map<String, Value> {
    let mut f = software();
    f.insert("freq".into(), json!(ON_DEMAND_FREQ));
    f
}

/// `/proc/loadavg`'s three numbers (zeros where it cannot be read).
fn loadavg() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut it = text
        .split_whitespace()
        .map(|v| v.parse::<f64>().unwrap_or(0.0));
    [
        it.next().unwrap_or(0.0),
        it.next().unwrap_or(0.0),
        it.next().unwrap_or(0.0),
    ]
}

/// Loads the fleet's revoked ids newer than `since`; returns the newest time seen. An entry
/// dated ahead of this machine's clock (by more than the overlap) is left for a later beat, so
/// one bogus future entry cannot move the cursor past every real revoke to come.
pub async fn sync_revoked(conn: &Conn, registry: &Registry, since: f64) -> f64 {
    match revoked::since(conn, since - REVOKE_OVERLAP).await {
        Ok(found) => {
            let limit = celery_redis::clock::unix_now() + REVOKE_OVERLAP;
            let mut newest = since;
            for (id, at) in found.iter().filter(|(_, at)| *at <= limit) {
                registry.revoke(&[id.as_str()], *at);
                newest = newest.max(*at);
            }
            newest
        }
        Err(e) => {
            log::warn!("could not read the fleet's revoked ids ({e}); retrying at the next beat");
            since
        }
    }
}

/// At a graceful stop: the task events still buffered (within `limit`), then `worker-offline`.
pub async fn offline(events: &Events, registry: &Registry, limit: Duration) {
    if tokio::time::timeout(limit, events.flush()).await.is_err() {
        log::warn!("task events still buffered at shutdown were dropped");
    }
    if let Err(e) = events.send_now("worker-offline", fields(registry)).await {
        log::warn!("could not send worker-offline: {e}");
    }
}

/// Sends `worker-online`, then a heartbeat every [`FREQ`] until `stop`.
pub async fn beat(events: Events, registry: Arc<Registry>, conn: Conn, mut stop: Shutdown) {
    if let Err(e) = events.send_now("worker-online", fields(&registry)).await {
        log::warn!("could not send worker-online: {e}");
    }
    let mut newest = sync_revoked(&conn, &registry, f64::NEG_INFINITY).await;
    let mut ticks = tokio::time::interval(FREQ);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        tokio::select! {
            _ = stop.wait() => return,
            _ = ticks.tick() => {}
        }
        if let Err(e) = events.send_now("worker-heartbeat", fields(&registry)).await {
            log::warn!("could not send a heartbeat: {e}");
        }
        newest = sync_revoked(&conn, &registry, newest).await;
    }
}
