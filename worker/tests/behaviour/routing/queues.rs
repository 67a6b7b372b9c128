//! Routed queues with the real binaries and a private redis-server: orders and their
//! notifications on queues of their own, each served by its own worker; one worker on several
//! queues starving none; `worker stats` per queue.

use celery_redis::broker::Broker;
use celery_redis::keys;
use celery_redis::protocol::TaskMessage;
use celery_redis::result::{ResultMeta, TaskState};
use redis::AsyncCommands;
use serde_json::{json, Value};
use testkit::{Running, Stack};

const ROUTES: &str = "process_order=orders,send_notification=notifications";

/// A stack whose binaries all route by [`ROUTES`].
fn stack() -> Stack {
    Stack::new(env!("CARGO_BIN_EXE_worker"))
}

fn routed(extra: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    let mut vars = vec![("TASK_ROUTES", ROUTES.to_owned())];
    vars.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    vars
}

fn worker(s: &Stack, queues: &str, extra: &[(&'static str, &str)]) -> Running {
    let mut vars = routed(extra);
    vars.push(("WORKER_QUEUES", queues.to_owned()));
    s.worker(&vars)
}

/// Waits for a task's ready state through the result backend's pub/sub; SUCCESS.
async fn finished(s: &Stack, id: &str) -> ResultMeta {
    let meta = s.finished(id).await;
    assert_eq!(meta.status, TaskState::Success, "{meta:?}");
    meta
}

/// POSTs `body` to `path` of `service`; asserts a 202.
async fn post(s: &Stack, service: &Running, path: &str, body: Value) -> Value {
    let (status, reply) = s
        .call(service, reqwest::Method::POST, path, Some(body))
        .await;
    assert_eq!(status, 202, "{reply}");
    reply
}

fn note(id: &str) -> serde_json::Map<String, Value> {
    let v = json!({"notification_id": id, "recipient": "ada@example.com", "channel": "log",
                   "subject": "s", "body": "b"});
    v.as_object().cloned().unwrap()
}

#[tokio::test]
async fn orders_and_their_notifications_run_on_the_workers_of_their_own_queues() {
    let s = stack();
    let mut conn = s.redis.manager().await;
    let order_svc = s.order(&routed(&[]));
    let orders = worker(&s, "orders", &[]);
    conn.set::<_, _, ()>("fleet:stock:A", 5).await.unwrap();

    let accepted = post(
        &s,
        &order_svc,
        "/orders",
        json!({"customer": {"id": "c1", "email": "ada@example.com"},
               "items": [{"sku": "A", "quantity": 2, "unit_price_cents": 100}]}),
    )
    .await;
    let meta = finished(&s, accepted["task_id"].as_str().unwrap()).await;
    let child = meta.children.unwrap()[0][0][0].as_str().unwrap().to_owned();

    // The chained notification was published with the order's result, to its own route,
    // which the orders worker does not consume.
    assert_eq!(conn.llen::<_, i64>("notifications").await.unwrap(), 1);
    assert_eq!(conn.llen::<_, i64>("celery").await.unwrap(), 0);
    assert_eq!(conn.llen::<_, i64>("orders").await.unwrap(), 0);
    assert!(!conn
        .exists::<_, bool>(keys::task_meta(&child))
        .await
        .unwrap());

    // `worker stats`: one line per queue it would consume.
    let (code, out, err) = s.run(
        &["stats"],
        &routed(&[("WORKER_QUEUES", "orders,notifications")]),
    );
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(
        (&lines[0]["queue"], &lines[0]["waiting"][0]),
        (&json!("orders"), &json!(0))
    );
    assert_eq!(
        (&lines[1]["queue"], &lines[1]["waiting"][0]),
        (&json!("notifications"), &json!(1))
    );

    // Its own worker runs it; so does it a notification submitted to the other service.
    let notifications = worker(&s, "notifications", &[]);
    finished(&s, &child).await;
    let note_svc = s.notification(&routed(&[]));
    let accepted = post(
        &s,
        &note_svc,
        "/notifications",
        json!({"recipient": "ops@example.com", "channel": "log", "subject": "s", "body": "b"}),
    )
    .await;
    finished(&s, accepted["task_id"].as_str().unwrap()).await;

    for p in [orders, notifications, order_svc, note_svc] {
        p.stop();
    }
    for q in ["orders", "notifications", "celery"] {
        let processing = keys::processing(q);
        assert_eq!(conn.llen::<_, i64>(&processing).await.unwrap(), 0, "{q}");
    }
}

#[tokio::test]
async fn one_worker_on_two_queues_serves_both_and_starves_neither() {
    let s = stack();
    let conn = s.redis.manager().await;
    let broker = Broker::new(conn.clone(), "celery", "test@host");
    let bulk: Vec<TaskMessage> = (0..100)
        .map(|i| TaskMessage::new("send_notification", "bulk", note(&format!("n-bulk-{i}"))))
        .collect();
    broker.publish_many(&bulk).await.unwrap();
    let urgent = TaskMessage::new("send_notification", "urgent", note("n-urgent"));
    broker.publish(&urgent).await.unwrap();

    let w = worker(&s, "bulk,urgent", &[("WORKER_CONCURRENCY", "1")]);
    let urgent_done = finished(&s, &urgent.id).await.date_done.unwrap();
    let mut before = 0;
    for m in &bulk {
        let done = finished(&s, &m.id).await.date_done.unwrap();
        // ISO 8601 in UTC with microseconds: text order is time order.
        if done < urgent_done {
            before += 1;
        }
    }
    // One slot: the first claim takes from `bulk`, which then goes to the back.
    assert!(before <= 1, "{before} bulk tasks ran before the urgent one");
    w.stop();
}

#[tokio::test]
async fn a_queue_whose_key_holds_another_type_does_not_stop_the_others() {
    let s = stack();
    let redis = &s.redis;
    let mut conn = redis.manager().await;
    conn.set::<_, _, ()>("stringy", "someone else's")
        .await
        .unwrap();
    let env = [
        ("WORKER_QUEUES", "good,stringy"),
        ("WORKER_CONCURRENCY", "2"),
    ];
    let mut w = crate::support::build(&redis.url(), &env, "refusing@test");
    // Its blocking wait on `stringy` fails at once: that queue is set aside, not an error of
    // the whole fetch (which would back the worker off, its other queues included).
    use worker::worker::Step;
    assert_eq!(w.step().await.unwrap(), Step::Idle);
    assert_eq!(w.step().await.unwrap(), Step::Idle);

    let msg = TaskMessage::new("send_notification", "good", note("n-good"));
    Broker::new(conn.clone(), "celery", "test@host")
        .publish(&msg)
        .await
        .unwrap();
    assert_eq!(w.step().await.unwrap(), Step::Started(1));
    finished(&s, &msg.id).await;
    w.shutdown().await;
    assert_eq!(
        conn.get::<_, String>("stringy").await.unwrap(),
        "someone else's"
    );
}

/// `worker <command> --queue Q`, as an operator runs it: success, stdout and stderr.
fn admin(s: &Stack, args: &[&str]) -> (bool, String) {
    let (code, stdout, stderr) = s.run(args, &routed(&[]));
    (code == Some(0), stdout + &stderr)
}

#[tokio::test]
async fn the_dead_letter_commands_work_per_queue() {
    let s = stack();
    let mut conn = s.redis.manager().await;
    // Dead letters of two queues, as workers leave them (each names its queue).
    for (i, queue) in ["orders", "notifications", "orders"].iter().enumerate() {
        let msg = TaskMessage::new("send_notification", queue, note(&format!("n-{i}")));
        let entry =
            celery_redis::broker::DeadLetter::about("test", msg.to_json("t@h")).in_queue(queue);
        conn.lpush::<_, _, ()>(keys::DEAD_LETTER, entry.to_json())
            .await
            .unwrap();
    }
    let listed = |text: String| text.lines().count();
    assert_eq!(listed(admin(&s, &["dead-letters"]).1), 3);
    assert_eq!(
        listed(admin(&s, &["dead-letters", "--queue", "orders"]).1),
        2
    );
    assert_eq!(
        listed(admin(&s, &["dead-letters", "1", "--queue", "orders"]).1),
        1
    );
    assert_eq!(
        admin(&s, &["requeue-dead", "--queue", "notifications"])
            .1
            .trim(),
        "requeued 1"
    );
    assert_eq!(conn.llen::<_, i64>("notifications").await.unwrap(), 1);
    assert_eq!(conn.llen::<_, i64>("orders").await.unwrap(), 0);
    assert_eq!(
        admin(&s, &["purge-dead", "--queue", "orders"]).1.trim(),
        "purged 2"
    );
    assert_eq!(conn.llen::<_, i64>(keys::DEAD_LETTER).await.unwrap(), 0);
    let stats = admin(&s, &["stats", "--queue", "notifications"]).1;
    let line: Value = serde_json::from_str(stats.trim()).unwrap();
    assert_eq!(
        (&line["queue"], &line["waiting"][0]),
        (&json!("notifications"), &json!(1))
    );
    // A name that is no usable queue is refused before anything is read.
    let (ok, text) = admin(&s, &["purge-dead", "--queue", "unacked"]);
    assert!(!ok && text.contains("--queue"), "{text}");
}
