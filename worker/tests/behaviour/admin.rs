//! The subcommands CI asks instead of copying the fleet's rules into scripts: `worker route`
//! (the queue TASK_ROUTES sends a task to) and `worker queues` (the queues a worker consumes),
//! as `.ci/kubernetes-pods.py` asks them, and
//! `worker check-submissions` (nothing half-enqueued after `.ci/openapi`'s Schemathesis run),
//! run as the real binary against a private Redis.

use std::time::Duration;

use celery_redis::broker::Broker;
use celery_redis::protocol::TaskMessage;
use celery_redis::routes::Routes;
use redis::AsyncCommands;
use serde_json::{json, Map, Value};
use shop::contracts::{Contract, ProcessOrder, SendNotification};
use testkit::stack::run_worker;
use testkit::{unreachable_redis_url, TestRedis};

/// The queue the route table below sends `process_order` to.
const ORDERS: &str = "orders-check";
const ROUTES: &str = "process_order=orders-check, send_*=notifications";

fn worker(args: &[&str], env: &[(&str, String)]) -> (Option<i32>, String, String) {
    run_worker(env!("CARGO_BIN_EXE_worker"), args, env)
}

fn kwargs(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

fn order(id: &str) -> ProcessOrder {
    ProcessOrder::from_kwargs(&kwargs(json!({"order_id": id,
        "customer": {"id": "c-1", "email": "a@b.example"},
        "items": [{"sku": "A", "quantity": 1, "unit_price_cents": 100}]})))
    .unwrap()
}

/// What service-order does with the same settings: a broker routed by ROUTES, each order
/// submitted once with its idempotency key.
async fn submitting(redis: &TestRedis) -> Broker {
    Broker::new(redis.manager().await, "celery", "test@host")
        .with_routes(Routes::parse(ROUTES, "celery").unwrap())
        .with_retention(Duration::from_secs(3600))
}

/// `worker route` prints, per task, the queue TASK_ROUTES (then CELERY_QUEUE) sends it to,
/// without reaching Redis; a route table it refuses exits 2 naming TASK_ROUTES.
#[test]
fn route_prints_the_queue_of_each_task_from_the_settings_alone() {
    let env = |pairs: &[(&'static str, &str)]| {
        let mut env = vec![("REDIS_URL", unreachable_redis_url())];
        env.extend(pairs.iter().map(|(k, v)| (*k, v.to_string())));
        env
    };
    let tasks = ["route", "process_order", "send_notification", "refund"];
    let (code, out, err) = worker(
        &tasks,
        &env(&[("TASK_ROUTES", ROUTES), ("CELERY_QUEUE", "main")]),
    );
    assert_eq!(code, Some(0), "{err}");
    let got: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        got,
        [
            json!({"task": "process_order", "queue": ORDERS}),
            json!({"task": "send_notification", "queue": "notifications"}),
            json!({"task": "refund", "queue": "main"}),
        ]
    );
    let (code, out, _) = worker(&tasks, &env(&[]));
    assert_eq!(code, Some(0));
    assert!(
        out.lines().all(|l| l.contains(r#""queue":"celery""#)),
        "{out}"
    );
    let (code, _, err) = worker(&tasks, &env(&[("TASK_ROUTES", "process_order")]));
    assert_eq!(code, Some(2));
    assert!(err.contains("TASK_ROUTES"), "{err}");
}

/// `worker queues` prints the queues WORKER_QUEUES names (trimmed, in order), else
/// CELERY_QUEUE's, without reaching Redis; a list it refuses exits 2 naming WORKER_QUEUES.
#[test]
fn queues_prints_what_the_worker_consumes_from_the_settings_alone() {
    let run = |pairs: &[(&'static str, &str)]| {
        let mut env = vec![("REDIS_URL", unreachable_redis_url())];
        env.extend(pairs.iter().map(|(k, v)| (*k, v.to_string())));
        worker(&["queues"], &env)
    };
    let queues = |out: &str| serde_json::from_str::<Value>(out.trim()).unwrap()["queues"].clone();
    let (code, out, err) = run(&[
        ("WORKER_QUEUES", " notifications , celery"),
        ("CELERY_QUEUE", "main"),
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(queues(&out), json!(["notifications", "celery"]));
    let (code, out, _) = run(&[("CELERY_QUEUE", "main")]);
    assert_eq!(code, Some(0));
    assert_eq!(queues(&out), json!(["main"]));
    let (code, _, err) = run(&[("WORKER_QUEUES", "orders,orders")]);
    assert_eq!(code, Some(2));
    assert!(err.contains("WORKER_QUEUES"), "{err}");
}

/// What the services submit passes: each id once on its routed queue with its key, a
/// resubmission adding nothing; the other kind's empty queue passes too.
#[tokio::test]
async fn check_submissions_passes_what_the_services_submit() {
    let redis = TestRedis::start();
    let broker = submitting(&redis).await;
    for id in ["o-1", "o-2", "o-1"] {
        shop::submission::submit(&broker, &order(id)).await.unwrap();
    }
    let env = [
        ("REDIS_URL", redis.url()),
        ("TASK_ROUTES", ROUTES.to_owned()),
    ];
    let (code, out, err) = worker(&["check-submissions", "order", "--max-depth", "2"], &env);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        out.trim(),
        format!("order: 2 messages on {ORDERS}, 2 idempotency keys, 0 problems")
    );
    let (code, out, err) = worker(&["check-submissions", "notification"], &env);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("notification: 0 messages on notifications"),
        "{out}"
    );
}

/// Each way a submission can be half-enqueued is named, and the check exits 1: a message
/// without its key, a key holding another task id, a key without expiry, a key without its
/// message, an id queued twice, an entry that does not decode, another task on the queue, an
/// argument list the contract refuses, more messages than the most allowed.
#[tokio::test]
async fn check_submissions_names_every_half_enqueued_submission() {
    let redis = TestRedis::start();
    let broker = submitting(&redis).await;
    for id in ["lost-key", "other-id", "forever", "twice"] {
        shop::submission::submit(&broker, &order(id)).await.unwrap();
    }
    let mut conn = redis.manager().await;
    let key = |id: &str| shop::keys::submitted_task("order", id);
    let _: () = conn.del(key("lost-key")).await.unwrap();
    let _: () = redis::cmd("SET")
        .arg(key("other-id"))
        .arg("not-its-task")
        .arg("KEEPTTL")
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: bool = conn.persist(key("forever")).await.unwrap();
    let _: () = conn.set_ex(key("no-message"), "t-1", 60).await.unwrap();
    let again = TaskMessage::new("process_order", ORDERS, order("twice").to_kwargs());
    broker.publish(&again).await.unwrap();
    let _: () = conn.lpush(ORDERS, "not an envelope").await.unwrap();
    let notification = SendNotification::from_kwargs(&kwargs(json!({
        "notification_id": "n-1", "recipient": "a@b.example", "channel": "log",
        "subject": "s", "body": "b"})))
    .unwrap();
    let stray = TaskMessage::new("send_notification", ORDERS, notification.to_kwargs());
    broker.publish(&stray).await.unwrap();
    let bad = TaskMessage::new("process_order", ORDERS, kwargs(json!({"order_id": "o-x"})));
    broker.publish(&bad).await.unwrap();

    let env = [
        ("REDIS_URL", redis.url()),
        ("TASK_ROUTES", ROUTES.to_owned()),
    ];
    let (code, out, err) = worker(&["check-submissions", "order", "--max-depth", "5"], &env);
    assert_eq!(code, Some(1), "{out}");
    for expected in [
        "half-enqueued: queued order lost-key (task ",
        "half-enqueued: order other-id: its key holds task not-its-task, the queue has ",
        "half-enqueued: the idempotency key of order forever has no expiry (ttl -1)",
        "half-enqueued: the idempotency key of order no-message (task t-1) has no message",
        "half-enqueued: order twice queued twice",
        &format!("half-enqueued: an entry of {ORDERS} does not decode: "),
        &format!(
            "half-enqueued: a send_notification message (task {}) on the order queue {ORDERS}",
            stray.id
        ),
        &format!(
            "half-enqueued: task {}: not a valid process_order: ",
            bad.id
        ),
        &format!("half-enqueued: 8 messages wait on {ORDERS}, over the most allowed, 5"),
        &format!("order: 8 messages on {ORDERS}, 4 idempotency keys, 9 problems"),
    ] {
        assert!(err.contains(expected), "{expected:?} in:\n{err}");
    }
}
