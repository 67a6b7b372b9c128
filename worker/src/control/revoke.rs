//! `revoke` and `hello`: a revoked id is remembered here and in the fleet's set in Redis (so
//! every Rust worker, and this one after a restart, refuses it), a running task is stopped when
//! `terminate` asks, and a task that has not started anywhere is stored REVOKED at once, as
//! Celery's handler does.

use celery_redis::result::ResultBackend;
use celery_redis::revoked;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use super::{ControlError, Node};

/// The ids in `arguments[key]`: one string or a list of strings (others are ignored).
fn ids(arguments: &Map<String, Value>, key: &str) -> Vec<String> {
    match arguments.get(key) {
        Some(Value::String(id)) => vec![id.clone()],
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        // Newer Celery sends `hello`'s revoked as {id: time}.
        Some(Value::Object(map)) => map.keys().cloned().collect(),
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
const CHUNK: usize = 500;
/// Revokes waiting for their writes; beyond this the request loop waits (backpressure).
const PENDING: usize = 16;

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
                }
            }
        };
        (RevokeResults(tx), writer)
    }

    async fn store(&self, ids: Vec<String>) {
        if !ids.is_empty() && self.0.send(ids).await.is_err() {
            log::warn!("REVOKED not stored: the worker is stopping");
        }
    }
}

pub async fn revoke(node: &Node, arguments: &Map<String, Value>) -> Result<Value, ControlError> {
    let all = ids(arguments, "task_id");
    let ids = revoked::acceptable(all.iter().map(String::as_str));
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
    node.registry.revoke(&ids, celery_redis::clock::unix_now());
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
    // Stored REVOKED off the request loop (a revoke may name 50,000 ids).
    node.revoke_results.store(unstarted).await;
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
    Ok(json!({"ok": format!("tasks {named} flagged as revoked")}))
}

/// `hello` (mingle): takes in the sender's revoked ids, answers with ours and our clock.
pub async fn hello(node: &Node, arguments: &Map<String, Value>) -> Result<Value, ControlError> {
    let theirs = ids(arguments, "revoked");
    let theirs = revoked::acceptable(theirs.iter().map(String::as_str));
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
