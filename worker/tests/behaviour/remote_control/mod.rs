//! Remote control as Celery's and Flower's commands use it (`commands`) and hostile control
//! traffic, revokes and replies (`hostile`).

mod commands;
mod hostile;

use std::time::Duration;

use celery_redis::conn::Conn;
use celery_redis::control::client::{call, Mailbox, Target};
use celery_redis::control::Lamport;
use serde_json::{json, Map, Value};

use crate::support::{start, Running};

pub(super) const NODE: &str = "rust-test@box";
pub(super) const SHORT: Duration = Duration::from_secs(1);

/// Remote control of a fleet with kombu's default key layout, on database 0.
pub(super) fn bare() -> Mailbox<'static> {
    Mailbox {
        layout: celery_redis::keys::default_layout(),
        db: 0,
    }
}

pub(super) async fn named(extra: &[(&str, &str)]) -> Running {
    let mut env = vec![("WORKER_NAME", NODE)];
    env.extend_from_slice(extra);
    start(&env).await
}

/// Calls `method` on `target` until a reply comes (the worker may still be subscribing).
pub(super) async fn ask(
    conn: &Conn,
    method: &str,
    args: Value,
    target: &Target,
) -> Vec<(String, Value)> {
    let clock = Lamport::default();
    for _ in 0..30 {
        let replies = call(conn, bare(), &clock, method, args.clone(), target, SHORT)
            .await
            .unwrap();
        if !replies.is_empty() {
            return replies;
        }
    }
    panic!("no reply to {method}");
}

pub(super) async fn ask_node(conn: &Conn, method: &str, args: Value) -> Value {
    let replies = ask(conn, method, args, &Target::Nodes(vec![NODE.into()])).await;
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert_eq!(replies[0].0, NODE);
    replies[0].1.clone()
}

pub(super) fn order(id: &str) -> Value {
    json!({"order_id": id, "customer": {"id": "c1", "email": "c1@example.com"},
           "items": [{"sku": "A", "quantity": 1, "unit_price_cents": 100}]})
}

pub(super) fn as_map(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}
