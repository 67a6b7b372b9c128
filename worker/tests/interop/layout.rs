//! kombu's Redis transport options set on both sides (`fleet.py` reads the same variables as the
//! Rust binaries): Celery's documented priority setup (`priority_steps=list(range(10))`,
//! `sep=':'`, `queue_order_strategy='priority'`) and `global_keyprefix`, with Python producers
//! and a Rust worker, and a Rust producer (the worker sending a callback) and a Python worker.

use std::process::Command;

use redis::AsyncCommands;
use serde_json::{json, Value};
use testkit::TestRedis;

use super::{backend, client_with, python, python_worker_with, rust_worker, stock, WAIT};

/// Celery's documented Redis priority setup, as the variables of both sides.
const PRIORITY_SETUP: [(&str, &str); 3] = [
    ("BROKER_PRIORITY_STEPS", "0,1,2,3,4,5,6,7,8,9"),
    ("BROKER_KEY_SEP", ":"),
    ("BROKER_QUEUE_ORDER", "priority"),
];

/// `worker stats` under `extra`, parsed.
fn stats(redis: &TestRedis, extra: &[(&str, &str)]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_worker"))
        .arg("stats")
        .env_clear()
        .env("REDIS_URL", redis.url())
        .envs(extra.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Found in the field (issue 20): Python producers with Celery's priority setup put priorities
/// 1, 5 and 9 into `celery:1`, `celery:5`, `celery:9`, where the Rust worker never looked (they
/// stayed PENDING) and `worker stats` said 0 waiting. With the same options the worker counts
/// them and runs them in priority order.
#[tokio::test]
#[ignore = "needs CELERY_PYTHON, a python with celery[redis]; CI runs it for Celery 5.4 and 5.7"]
async fn python_priorities_under_celerys_priority_setup_run_on_rust_in_order() {
    let py = python();
    let redis = TestRedis::start();
    stock(&redis, "A", 100).await;
    let args = ["publish-priorities", "9", "5", "1"];
    let (ids, redis) = tokio::task::spawn_blocking(move || {
        (client_with(&py, &redis, &args, &PRIORITY_SETUP), redis)
    })
    .await
    .unwrap();
    let mut conn = redis.manager().await;
    for key in ["celery:1", "celery:5", "celery:9"] {
        assert_eq!(
            conn.llen::<_, i64>(key).await.unwrap(),
            1,
            "kombu put one in {key}"
        );
    }
    let counted = stats(&redis, &PRIORITY_SETUP);
    assert_eq!(
        counted["waiting"],
        json!([0, 1, 0, 0, 0, 1, 0, 0, 0, 1]),
        "{counted}"
    );
    assert_eq!(counted["foreign"], json!([]), "{counted}");

    let mut env = PRIORITY_SETUP.to_vec();
    env.extend([("WORKER_CONCURRENCY", "1"), ("WORKER_NAME", "prio@%h")]);
    let _worker = rust_worker(&redis, &env);
    let results = backend(&redis).await;
    let mut done = Vec::new();
    for p in ["1", "5", "9"] {
        let meta = results.wait(ids[p].as_str().unwrap(), WAIT).await.unwrap();
        assert_eq!(meta.result["status"], "confirmed", "{:?}", meta.result);
        done.push((meta.date_done.clone().unwrap(), p));
    }
    done.sort();
    let order: Vec<&str> = done.iter().map(|(_, p)| *p).collect();
    assert_eq!(order, ["1", "5", "9"]);
    // kombu's binding members use the separator too: the Python client's ping binds its reply
    // list as `oid::oid.reply.celery.pidbox`, which the Rust node must find to answer.
    let py = python();
    let nodes =
        tokio::task::spawn_blocking(move || client_with(&py, &redis, &["ping"], &PRIORITY_SETUP))
            .await
            .unwrap();
    let nodes: Vec<&str> = nodes
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(nodes.iter().any(|n| n.starts_with("prio@")), "{nodes:?}");
}

/// An order the Rust worker runs (queue `orders`) sends its callback, at priority 5, to the
/// queue `notifications` a Python worker consumes; both return the callback's result. Under
/// `extra` on both sides, the Rust worker must push it where kombu reads it.
async fn rust_sends_on_to_python(extra: &[(&str, &str)], worker_name: &str) -> (Value, TestRedis) {
    let py = python();
    let redis = TestRedis::start();
    stock(&redis, "A", 100).await;
    let _py_worker = python_worker_with(&py, &redis, &["-Q", "notifications"], extra);
    let mut env = extra.to_vec();
    env.extend([("WORKER_QUEUES", "orders"), ("WORKER_NAME", worker_name)]);
    let _rust = rust_worker(&redis, &env);
    let extra: Vec<(String, String)> = extra
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let (ids, redis) = tokio::task::spawn_blocking(move || {
        let extra: Vec<(&str, &str)> = extra
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        (
            client_with(&py, &redis, &["link-to-python", "5"], &extra),
            redis,
        )
    })
    .await
    .unwrap();
    let results = backend(&redis).await;
    let order = results
        .wait(ids["order"].as_str().unwrap(), WAIT)
        .await
        .unwrap();
    assert_eq!(order.result["status"], "confirmed", "{:?}", order.result);
    let note = results
        .wait(ids["notification"].as_str().unwrap(), WAIT)
        .await
        .unwrap();
    assert_eq!(note.result["runner"], "python", "{:?}", note.result);
    (note.result, redis)
}

/// A Rust producer (the worker's callback at priority 5) and a Python worker with Celery's
/// priority setup: the Rust side pushes to `notifications:5`, where kombu reads.
#[tokio::test]
#[ignore = "needs CELERY_PYTHON, a python with celery[redis]; CI runs it for Celery 5.4 and 5.7"]
async fn a_rust_producer_feeds_a_python_worker_under_celerys_priority_setup() {
    rust_sends_on_to_python(&PRIORITY_SETUP, "rust-prio@%h").await;
}

/// `global_keyprefix` both ways: a Python client's order reaches the Rust worker under the
/// prefix, its callback reaches the Python worker under it, and the Python client's broadcast
/// ping (kombu's prefixed pidbox channel, binding set and reply list) is answered by the Rust
/// node. No broker key is left without the prefix (results are the result backend's: Celery
/// prefixes them only by `result_backend_transport_options`; the shop's keys are not kombu's).
#[tokio::test]
#[ignore = "needs CELERY_PYTHON, a python with celery[redis]; CI runs it for Celery 5.4 and 5.7"]
async fn global_keyprefix_both_ways_and_for_remote_control() {
    let prefixed = [("BROKER_KEY_PREFIX", "app:")];
    let (_, redis) = rust_sends_on_to_python(&prefixed, "rust-pre@%h").await;
    let py = python();
    let _rust = rust_worker(
        &redis,
        &[("BROKER_KEY_PREFIX", "app:"), ("WORKER_NAME", "pinged@%h")],
    );
    let (nodes, redis) = tokio::task::spawn_blocking(move || {
        (client_with(&py, &redis, &["ping"], &prefixed), redis)
    })
    .await
    .unwrap();
    let nodes: Vec<&str> = nodes
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(nodes.iter().any(|n| n.starts_with("pinged@")), "{nodes:?}");
    let mut conn = redis.manager().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    let unprefixed: Vec<&String> = keys
        .iter()
        .filter(|k| {
            let broker_key = ["fleet:processing:", "fleet:scheduled:", "fleet:dead_letter"]
                .iter()
                .any(|p| k.starts_with(p));
            // Results, and the shop's own keys, are not the broker's.
            let not_broker = ["celery-task-meta-", "fleet:"]
                .iter()
                .any(|p| k.starts_with(p));
            !k.starts_with("app:") && (broker_key || !not_broker)
        })
        .collect();
    assert!(unprefixed.is_empty(), "{unprefixed:?} (all: {keys:?})");
}
