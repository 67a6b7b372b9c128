//! `revoke` and `hello`: a revoked id is remembered here and in the fleet's set in Redis (so
//! every Rust worker, and this one after a restart, refuses it), a running task is stopped when
//! `terminate` asks, and a task that has not started anywhere is stored REVOKED soon after, as
//! Celery's handler does. One request acts on at most `revoked::MAX_PER_REVOKE` ids, and its
//! REVOKED writes go in the background, in chunks, never holding up the requests after it.

use celery_redis::result::ResultBackend;
use celery_redis::revoked;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use super::{ControlError, Node};

/// The ids in `arguments[key]`: one string or a list of strings (others are ignored).
fn ids<'a>(arguments: &'a Map<String, Value>, key: &str) -> Vec<&'a str> {
    match arguments.get(key) {
        Some(Value::String(id)) => vec![id.as_str()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        // Newer Celery sends `hello`'s revoked as {id: time}.
        Some(Value::Object(map)) => map.keys().map(String::as_str).collect(),
        _ => Vec::new(),
    }
}

/// A signal name or number as `revoke(signal=...)` gives it; SIGTERM when absent.
fn signum(signal: Option<&Value>) -> Result<i32, ControlError> {
    let name = match signal {
        None | Some(Value::Null) => return Ok(15),
        Some(Value::Number(n)) => {
            return n
                .as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .filter(|n| (1..=64).contains(n))
                .ok_or_else(|| ControlError::BadArgument(format!("signal {n}")))
        }
        Some(Value::String(s)) => s.to_ascii_uppercase(),
        Some(other) => return Err(ControlError::BadArgument(format!("signal {other}"))),
    };
    let bare = name.strip_prefix("SIG").unwrap_or(&name);
    Ok(match bare {
        "TERM" => 15,
        "KILL" => 9,
        "INT" => 2,
        "HUP" => 1,
        "QUIT" => 3,
        "USR1" => 10,
        "USR2" => 12,
        _ => {
            return Err(ControlError::BadArgument(format!(
                "unknown signal {name:?}"
            )))
        }
    })
}

/// Stores REVOKED for revoked ids that run nowhere, in the background, a chunk per script call.
#[derive(Clone)]
pub struct RevokeResults(mpsc::Sender<Vec<String>>);

/// Ids per script call.
const CHUNK: usize = 250;
/// Revokes waiting for their writes (each at most `MAX_PER_REVOKE` ids); beyond this a revoke's
/// REVOKED results are not stored at once (each of its tasks is stored REVOKED when a worker
/// takes it), so the request loop never waits for Redis to catch up.
const PENDING: usize = 32;

impl RevokeResults {
    /// The sender, and the writer to run (it ends when every sender is gone).
    pub fn new(results: ResultBackend) -> (Self, impl std::future::Future<Output = ()>) {
        let (tx, mut rx) = mpsc::channel::<Vec<String>>(PENDING);
        let writer = async move {
            while let Some(ids) = rx.recv().await {
                for chunk in ids.chunks(CHUNK) {
                    let chunk: Vec<&str> = chunk.iter().map(String::as_str).collect();
                    if let Err(e) = results.revoke_unstarted(&chunk).await {
                        log::warn!(
                            "could not store REVOKED for {} revoked task(s): {e}",
                            chunk.len()
                        );
                    }
                    // Requests waiting (a ping) go first on a one-thread runtime.
                    tokio::task::yield_now().await;
                }
            }
        };
        (RevokeResults(tx), writer)
    }

    /// Queues the REVOKED writes of `ids`; returns whether they were taken (not when too many
    /// revokes wait already, or the worker is stopping).
    fn store(&self, ids: Vec<String>) -> bool {
        if ids.is_empty() {
            return true;
        }
        let n = ids.len();
        match self.0.try_send(ids) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                log::warn!(
                    "REVOKED not stored now for {n} revoked task(s) that run nowhere: {PENDING} revokes wait for their writes already; each is stored REVOKED when a worker takes it"
                );
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                log::warn!("REVOKED not stored for {n} task(s): the worker is stopping");
                false
            }
        }
    }
}

/// `revoke`: marks `task_id` (one or a list) revoked, terminates its running deliveries when
/// asked (`terminate`, `signal`), and stores REVOKED for the ones that run nowhere.
pub(crate) async fn revoke(
    node: &Node,
    arguments: &Map<String, Value>,
) -> Result<Value, ControlError> {
    let (ids, ignored) = revoked::per_revoke(ids(arguments, "task_id"));
    if ids.is_empty() {
        return Err(ControlError::BadArgument("task_id names no task".into()));
    }
    let terminate = arguments
        .get("terminate")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let signum = if terminate {
        Some(signum(arguments.get("signal"))?)
    } else {
        None
    };
    if ignored > 0 {
        log::warn!(
            "a revoke named {ignored} id(s) beyond the limit of {} per request; they are ignored",
            revoked::MAX_PER_REVOKE
        );
    }
    node.registry.revoke(&ids, celery_redis::clock::unix_now());
    // Terminated before the fleet-wide write: a terminate waits for no Redis round trip.
    let mut terminated = 0;
    let mut unstarted = Vec::new();
    for id in &ids {
        match signum {
            Some(signum) if node.registry.is_active(id) => {
                let (stopped, finishing) = node.registry.terminate(id, signum);
                terminated += stopped;
                if finishing > 0 {
                    log::info!("task {id} is past its point of no return: it runs to its end");
                }
            }
            _ if node.registry.is_active(id) => {}
            _ => unstarted.push((*id).to_owned()),
        }
    }
    match revoked::remember(&node.conn, &ids).await {
        Ok(Some(_)) => {}
        Ok(None) => log::warn!(
            "revoke of {} task(s) not saved for the fleet: {} holds another type; held by this worker only",
            ids.len(),
            celery_redis::keys::REVOKED
        ),
        Err(e) => log::warn!(
            "revoke of {} task(s) not saved for the fleet ({e}); held by this worker only",
            ids.len()
        ),
    }
    let unstarted_count = unstarted.len();
    let stored = node.revoke_results.store(unstarted);
    log::info!(
        "revoked {} task(s){}",
        ids.len(),
        if terminated == 0 {
            String::new()
        } else {
            format!(", terminating {terminated} running")
        }
    );
    // Celery names every id; a long list is summed up (the reply stays small).
    let named = if ids.len() <= 10 {
        ids.join(", ")
    } else {
        format!("{} ({} in all)", ids[..10].join(", "), ids.len())
    };
    let mut text = format!("tasks {named} flagged as revoked");
    if ignored > 0 {
        text.push_str(&format!(
            "; {ignored} id(s) beyond the limit of {} per revoke ignored",
            revoked::MAX_PER_REVOKE
        ));
    }
    if !stored {
        text.push_str(&format!(
            "; REVOKED not stored yet for {unstarted_count} that run nowhere (stored when a worker takes them)"
        ));
    }
    Ok(json!({"ok": text}))
}

/// `hello` (mingle): takes in the sender's revoked ids, answers with ours and our clock.
pub async fn hello(node: &Node, arguments: &Map<String, Value>) -> Result<Value, ControlError> {
    let theirs = revoked::acceptable(ids(arguments, "revoked"));
    if !theirs.is_empty() {
        node.registry
            .revoke(&theirs, celery_redis::clock::unix_now());
    }
    Ok(json!({"revoked": node.registry.revoked(), "clock": node.events.clock().value()}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name_or_number() {
        assert_eq!(signum(None).unwrap(), 15);
        assert_eq!(signum(Some(&json!(null))).unwrap(), 15);
        assert_eq!(signum(Some(&json!("SIGKILL"))).unwrap(), 9);
        assert_eq!(signum(Some(&json!("term"))).unwrap(), 15);
        assert_eq!(signum(Some(&json!(9))).unwrap(), 9);
        assert!(signum(Some(&json!(0))).is_err());
        assert!(signum(Some(&json!("SIGNOPE"))).is_err());
        assert!(signum(Some(&json!([1]))).is_err());
    }

    #[test]
    fn ids_from_a_string_a_list_or_a_map() {
        let a = |v: Value| Map::from_iter([("task_id".to_owned(), v)]);
        assert_eq!(ids(&a(json!("x")), "task_id"), vec!["x"]);
        assert_eq!(ids(&a(json!(["x", 1, "y"])), "task_id"), vec!["x", "y"]);
        assert_eq!(ids(&a(json!({"x": 1.0})), "task_id"), vec!["x"]);
        assert!(ids(&a(json!(5)), "task_id").is_empty());
    }
}
