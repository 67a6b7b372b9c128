//! The worker binary under kombu's transport options (`BROKER_PRIORITY_STEPS`, `BROKER_KEY_SEP`,
//! `BROKER_KEY_PREFIX`): lists of its queue in another layout are warned of at start and counted
//! by `worker stats`; under the fleet's layout it runs what producers of that layout queued; with
//! a prefix, remote control (the health check's ping) goes over the prefixed channel and lists.

use std::process::Command;
use std::time::Duration;

use celery_redis::broker::Broker;
use celery_redis::keys::Layout;
use celery_redis::protocol::TaskMessage;
use celery_redis::result::{ResultBackend, TaskState};
use serde_json::{json, Map, Value};
use testkit::{Proc, TestRedis};

use crate::support::WAIT;

/// Celery's documented priority setup, as the variables of both sides.
const TEN_STEPS: [(&str, &str); 2] = [
    ("BROKER_PRIORITY_STEPS", "0,1,2,3,4,5,6,7,8,9"),
    ("BROKER_KEY_SEP", ":"),
];

fn env<'a>(redis: &TestRedis, extra: &[(&'a str, &str)]) -> Vec<(&'a str, String)> {
    let mut env = vec![("REDIS_URL", redis.url())];
    env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    env
}

fn admin(env: &[(&str, String)], args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_worker"))
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A `send_notification` (log channel) as a producer of the ten-step layout queues it.
fn notification(id: &str, priority: i64) -> TaskMessage {
    let kwargs: Map<String, Value> = serde_json::from_value(json!({
        "notification_id": id, "recipient": "a@b.example", "channel": "log",
        "subject": "s", "body": "b"}))
    .unwrap();
    let mut m = TaskMessage::new("send_notification", "celery", kwargs);
    m.priority = priority;
    m
}

/// Found in the field (issue 20): with Celery's priority setup on the Python side, priorities
/// 1-9 sat in `celery:<n>` forever while `worker stats` said 0 waiting. Now the worker of the
/// default layout says so at start and in `worker stats`; one of the fleet's layout runs them.
#[tokio::test]
async fn lists_in_another_layout_are_warned_of_then_run_under_the_fleets_layout() {
    let redis = TestRedis::start();
    let conn = redis.manager().await;
    let python = Broker::new(conn.clone(), "celery", "py@host")
        .with_layout(Layout::new(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], ":", "").unwrap());
    let msg = notification("n-5", 5);
    python.publish(&msg).await.unwrap();

    let default = env(&redis, &[]);
    let (first, line) = Proc::spawn(
        env!("CARGO_BIN_EXE_worker").as_ref(),
        &[],
        &default,
        "in another key layout",
    );
    assert!(
        line.contains("celery:5") && line.contains("1 message"),
        "{line}"
    );
    assert!(line.contains("BROKER_PRIORITY_STEPS=0,3,6,9"), "{line}");
    let (code, out, err) = admin(&default, &["stats"]);
    assert_eq!(code, Some(0), "{err}");
    let stats: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(stats["foreign"], json!([{"key": "celery:5", "waiting": 1}]));
    assert_eq!(stats["waiting"], json!([0, 0, 0, 0]));
    drop(first);

    let ten = env(&redis, &TEN_STEPS);
    let _worker = Proc::spawn(
        env!("CARGO_BIN_EXE_worker").as_ref(),
        &[],
        &ten,
        "consuming queue",
    );
    let results = ResultBackend::new(conn, redis.client(), Duration::from_secs(60), true);
    let meta = results.wait(&msg.id, WAIT).await.unwrap();
    assert_eq!(meta.status, TaskState::Success, "{:?}", meta.result);
    let (code, out, err) = admin(&ten, &["stats"]);
    assert_eq!(code, Some(0), "{err}");
    let stats: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(stats["steps"], json!([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]));
    assert_eq!(stats["foreign"], json!([]));
}

/// With `BROKER_KEY_PREFIX`, the health check's ping and its reply go over the prefixed pidbox
/// channel, binding set and reply list (kombu's prefixed client), so a fleet with the same
/// prefix answers and one without it does not (nor does the worker act on its requests).
#[test]
fn remote_control_goes_over_the_prefixed_channel() {
    let redis = TestRedis::start();
    let named = [("BROKER_KEY_PREFIX", "app:"), ("WORKER_NAME", "pre@%h")];
    let prefixed = env(&redis, &named);
    let (_worker, _) = Proc::spawn(
        env!("CARGO_BIN_EXE_worker").as_ref(),
        &[],
        &prefixed,
        "consuming queue",
    );
    let (code, out, err) = admin(&prefixed, &["healthcheck"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("pong"), "{out}");
    let bare = env(
        &redis,
        &[("WORKER_NAME", "pre@%h"), ("REDIS_TIMEOUT_MS", "300")],
    );
    let (code, _, err) = admin(&bare, &["healthcheck"]);
    assert_eq!(code, Some(1), "{err}");
}
