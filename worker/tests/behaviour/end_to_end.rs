//! End to end: the three real binaries as processes against a private redis-server, driven
//! over HTTP exactly as a user would (services on port 0, addresses read from their logs).

use celery_redis::result::TaskState;
use reqwest::Method;
use serde_json::{json, Value};
use testkit::{openapi, Binaries, Binary, Hit, Running, Stack, TestRedis, WebhookReceiver};

use crate::support::WAIT;

/// The worker (4 slots, the test's loopback webhook receiver allowed) and both services.
struct E2e {
    s: Stack,
    worker: Running,
    order: Running,
    notification: Running,
}

fn start() -> E2e {
    let s = Stack::new(env!("CARGO_BIN_EXE_worker"));
    let worker = s.worker(&[
        ("WORKER_CONCURRENCY", "4".to_owned()),
        // The test's webhook receiver listens on loopback, refused unless allowed.
        ("WEBHOOK_ALLOW", "127.0.0.1".to_owned()),
    ]);
    let order = s.order(&[]);
    let notification = s.notification(&[]);
    E2e {
        s,
        worker,
        order,
        notification,
    }
}

impl E2e {
    async fn order_api(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.s.call(&self.order, method, path, body).await
    }

    async fn notification_api(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.s.call(&self.notification, method, path, body).await
    }

    /// `GET /inventory/{sku}`: what is available.
    async fn available(&self, sku: &str) -> Value {
        let path = format!("/inventory/{sku}");
        self.order_api(Method::GET, &path, None).await.1["available"].clone()
    }

    /// `GET /notifications?recipient=…`: the first page of what `recipient` was sent.
    async fn notified(&self, recipient: &str) -> Vec<Value> {
        let path = format!("/notifications?recipient={recipient}");
        let (status, listed) = self.notification_api(Method::GET, &path, None).await;
        assert_eq!(status, 200, "{listed}");
        listed["notifications"].as_array().unwrap().clone()
    }

    async fn finished(&self, task_id: &str) -> celery_redis::result::ResultMeta {
        self.s.finished(task_id).await
    }

    /// Posts notification `id` by webhook to `hook`; once its task succeeded, returns what the
    /// receiver got and `GET /notifications/{id}`.
    async fn notify_by_webhook(&self, hook: &mut WebhookReceiver, id: &str) -> (Hit, Value) {
        let body = json!({"notification_id": id, "recipient": "ops@example.com", "channel": "webhook",
                          "subject": "deploy", "body": "done", "url": hook.url});
        let (status, accepted) = self
            .notification_api(Method::POST, "/notifications", Some(body))
            .await;
        assert_eq!(status, 202, "{accepted}");
        let hit = hook.next().await;
        let task_id = accepted["task_id"].as_str().unwrap();
        assert_eq!(self.finished(task_id).await.status, TaskState::Success);
        let path = format!("/notifications/{id}");
        let (status, view) = self.notification_api(Method::GET, &path, None).await;
        assert_eq!(status, 200, "{view}");
        (hit, view)
    }

    fn stop(self) {
        for p in [self.worker, self.order, self.notification] {
            p.stop();
        }
    }
}

#[tokio::test]
async fn orders_are_confirmed_or_rejected_and_customers_notified() {
    let s = start();
    for (sku, n) in [("A", 5), ("B", 2)] {
        let (status, _) = s
            .order_api(
                Method::PUT,
                &format!("/inventory/{sku}"),
                Some(json!({"available": n})),
            )
            .await;
        assert_eq!(status, 200);
    }
    let order = json!({"customer": {"id": "c-9", "email": "grace@example.com"},
                       "items": [{"sku": "A", "quantity": 2, "unit_price_cents": 1250},
                                 {"sku": "B", "quantity": 1, "unit_price_cents": 99}]});
    let accepted = s.s.post_order(&s.order, order).await.unwrap();
    let order_id = accepted.order_id.clone();
    let meta = s.finished(&accepted.task_id).await;
    assert_eq!(meta.status, TaskState::Success);

    let (_, view) = s.order_api(Method::GET, &accepted.status_url, None).await;
    assert_eq!(view["state"], "SUCCESS");
    assert_eq!(
        view["result"],
        json!({"order_id": order_id, "status": "confirmed", "total_cents": 2599})
    );
    assert_eq!(s.available("A").await, 3);
    assert_eq!(s.available("B").await, 1);

    // The confirmation is a chained task; wait for it, then read it through the other service.
    let child = meta.children.unwrap()[0][0][0].as_str().unwrap().to_owned();
    assert_eq!(s.finished(&child).await.status, TaskState::Success);
    let notes = s.notified("grace@example.com").await;
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0]["subject"], format!("Order {order_id} confirmed"));
    let (status, note) = s
        .notification_api(
            Method::GET,
            &format!(
                "/notifications/{}",
                notes[0]["notification_id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!((status, note["delivered"].as_bool()), (200, Some(true)));

    // Beyond stock: rejected with a reason, stock unchanged, nobody notified.
    let big = json!({"order_id": "too-big", "customer": {"id": "c-9", "email": "grace@example.com"},
                     "items": [{"sku": "A", "quantity": 4, "unit_price_cents": 1}]});
    let accepted = s.s.post_order(&s.order, big).await.unwrap();
    s.finished(&accepted.task_id).await;
    let (_, view) = s.order_api(Method::GET, "/orders/too-big", None).await;
    assert_eq!(view["result"]["status"], "rejected");
    assert_eq!(
        view["result"]["reason"],
        "insufficient stock for A: requested 4, available 3"
    );
    assert_eq!(s.available("A").await, 3);
    assert_eq!(s.notified("grace@example.com").await.len(), 1);
    s.stop();
}

#[tokio::test]
async fn a_webhook_notification_reaches_the_receiver_with_its_idempotency_key() {
    let mut hook = WebhookReceiver::start(vec![]).await;
    let s = start();
    let (hit, view) = s.notify_by_webhook(&mut hook, "n-e2e").await;
    assert_eq!(hit.idempotency_key.as_deref(), Some("n-e2e"));
    assert_eq!(hit.body["body"], "done");
    assert_eq!(
        (view["state"].as_str(), view["delivered"].as_bool()),
        (Some("SUCCESS"), Some(true))
    );
    assert!(hook.hits.try_recv().is_err(), "delivered once");
    s.stop();
}

/// The delivery record a client reads (written by the worker's task, served by
/// service-notification) against what the served OpenAPI document says of it: the record has
/// every field the document lists (a webhook delivery: `url` too) and no other, each of its
/// documented type, and so do the notification's view and the recipient's listing holding it.
#[tokio::test]
async fn the_documented_delivery_record_has_the_fields_of_a_real_one() {
    let mut hook = WebhookReceiver::start(vec![]).await;
    let s = start();
    let (_, view) = s.notify_by_webhook(&mut hook, "n-doc").await;
    let (status, doc) = s.notification_api(Method::GET, "/openapi.json", None).await;
    assert_eq!(status, 200);
    let listing = "/notifications?recipient=ops@example.com";
    let (_, listed) = s.notification_api(Method::GET, listing, None).await;
    assert_eq!(listed["notifications"][0], view["delivery"]);

    let view_schema = openapi::reply_schema(&doc, "get", "/notifications/{notification_id}", 200);
    let record_schema = view_schema["properties"]["delivery"]["oneOf"]
        .as_array()
        .and_then(|o| o.iter().find(|s| s["$ref"].is_string()))
        .map(|s| openapi::resolve(&doc, s))
        .expect("the view documents its delivery as a named schema");
    let mut documented: Vec<&String> = record_schema["properties"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    let mut real: Vec<&String> = view["delivery"].as_object().unwrap().keys().collect();
    documented.sort();
    real.sort();
    assert_eq!(
        real, documented,
        "the fields of a real record, and the documented ones"
    );
    for (schema, value, at) in [
        (record_schema, &view["delivery"], "delivery"),
        (view_schema, &view, "view"),
        (
            openapi::reply_schema(&doc, "get", "/notifications", 200),
            &listed,
            "listing",
        ),
    ] {
        assert_eq!(openapi::mismatch(&doc, schema, value, at), None, "{value}");
    }
    s.stop();
}

#[tokio::test]
async fn operators_list_requeue_and_purge_dead_letters_and_see_queue_counts() {
    let s = Stack::new(env!("CARGO_BIN_EXE_worker"));
    let redis = &s.redis;
    let mut conn = redis.manager().await;
    use redis::AsyncCommands;
    let stats: Value = serde_json::from_str(&s.admin(&["stats"])).unwrap();
    assert_eq!(
        stats,
        json!({"queue": "celery", "steps": [0, 3, 6, 9], "waiting": [0, 0, 0, 0], "scheduled": 0, "in_flight": 0, "dead": 0, "dead_dropped": 0, "foreign": []})
    );
    // Two poison entries: the worker dead-letters them.
    conn.lpush::<_, _, ()>("celery", "not json").await.unwrap();
    conn.lpush::<_, _, ()>("celery", "{}").await.unwrap();
    let worker = s.worker(&[]);
    // A known message behind them; once it is done, both poison entries were handled.
    let results = s.results().await;
    let probe =
        celery_redis::protocol::TaskMessage::new("no_such_task", "celery", Default::default());
    celery_redis::broker::Broker::new(conn.clone(), "celery", "test@host")
        .publish(&probe)
        .await
        .unwrap();
    results.wait(&probe.id, WAIT).await.unwrap();
    worker.stop();

    let listed = s.admin(&["dead-letters"]);
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert!(listed
        .lines()
        .all(|l| serde_json::from_str::<Value>(l).unwrap()["reason"].is_string()));
    let stats: Value = serde_json::from_str(&s.admin(&["stats"])).unwrap();
    assert_eq!(stats["dead"], 2);
    assert_eq!(s.admin(&["requeue-dead", "1"]).trim(), "requeued 1");
    let stats: Value = serde_json::from_str(&s.admin(&["stats"])).unwrap();
    assert_eq!(
        (stats["dead"].as_i64(), stats["waiting"][0].as_i64()),
        (Some(1), Some(1))
    );
    assert_eq!(s.admin(&["purge-dead"]).trim(), "purged 1");
    assert_eq!(s.admin(&["dead-letters"]).trim(), "");
}

/// A rollback to Python workers: `worker return-scheduled` puts every parked eta/retry message
/// back on its queue as a producer put it (eta header unchanged), so whichever worker takes
/// it next, a Python one included, runs it at its time; nothing stays parked where only Rust
/// workers look.
#[tokio::test]
async fn return_scheduled_hands_parked_messages_back_to_their_queue() {
    use celery_redis::broker::{Broker, Claim};
    use redis::AsyncCommands;
    let s = Stack::new(env!("CARGO_BIN_EXE_worker"));
    let redis = &s.redis;
    let mut conn = redis.manager().await;
    let broker = Broker::new(conn.clone(), "celery", "test@host");
    let mut later = celery_redis::protocol::TaskMessage::new("add", "celery", Default::default());
    later.eta = Some(time::macros::datetime!(2999-01-01 0:00 UTC));
    broker.publish(&later).await.unwrap();
    // Parked as a worker parks it: claimed, then moved to the queue's schedule.
    let claims = broker.claim_from(&["celery".to_owned()], 1).await.unwrap();
    let Some(Claim::Message(delivery)) = claims.into_iter().next() else {
        panic!("nothing claimed")
    };
    assert!(broker.schedule(&delivery, 32_503_680_000.0).await.unwrap());
    let stats: Value = serde_json::from_str(&s.admin(&["stats"])).unwrap();
    assert_eq!(
        (&stats["scheduled"], &stats["waiting"][0]),
        (&json!(1), &json!(0))
    );

    assert_eq!(
        s.admin(&["return-scheduled"]).trim(),
        "returned 1 to celery"
    );
    let queued: Vec<String> = conn.lrange("celery", 0, -1).await.unwrap();
    assert_eq!(queued.len(), 1);
    let env: Value = serde_json::from_str(&queued[0]).unwrap();
    assert_eq!(env["headers"]["id"], json!(later.id));
    let eta = env["headers"]["eta"].as_str().unwrap();
    assert!(eta.starts_with("2999-01-01T00:00:00"), "{eta}");
    let parked: usize = conn
        .zcard(celery_redis::keys::scheduled("celery"))
        .await
        .unwrap();
    let held: usize = conn.hlen(celery_redis::keys::UNACKED).await.unwrap();
    assert_eq!((parked, held), (0, 0));
    // Nothing left: a second run returns nothing.
    assert_eq!(
        s.admin(&["return-scheduled"]).trim(),
        "returned 0 to celery"
    );
}

/// A task nobody here runs, with `UNKNOWN_TASK_HANDBACKS=2`: handed back to its queue twice
/// (for another worker), then FAILURE `NotRegistered` and a dead letter saying so.
#[tokio::test]
async fn unknown_tasks_are_handed_back_a_bounded_number_of_times_then_failed() {
    let s = Stack::new(env!("CARGO_BIN_EXE_worker"));
    let redis = &s.redis;
    let conn = redis.manager().await;
    let _worker = s.worker(&[
        ("UNKNOWN_TASK_HANDBACKS", "2".into()),
        ("UNKNOWN_TASK_HANDBACK_DELAY_MS", "20".into()),
    ]);
    let results = s.results().await;
    let msg = celery_redis::protocol::TaskMessage::new("py_only", "celery", Default::default());
    celery_redis::broker::Broker::new(conn.clone(), "celery", "test@host")
        .publish(&msg)
        .await
        .unwrap();
    let meta = results.wait(&msg.id, WAIT).await.unwrap();
    assert_eq!(meta.status, TaskState::Failure);
    assert_eq!(meta.exception().unwrap().exc_type, "NotRegistered");
    let listed = s.admin(&["dead-letters"]);
    let dead: Value = serde_json::from_str(listed.trim()).unwrap();
    assert!(
        dead["reason"].as_str().unwrap().contains("2 hand-backs"),
        "{dead}"
    );
    // The dead letter keeps the message as it came the last time: counted twice.
    let raw: Value = serde_json::from_str(dead["raw"].as_str().unwrap()).unwrap();
    assert_eq!(raw["headers"]["fleet_handbacks"], 2);
}

/// The worker's log reads like Celery's: a start-up banner with its queues and tasks,
/// `Task name[id] received`, `... succeeded in Xs: result`, and failures at ERROR as
/// `... raised unexpected: Exception(...)`.
#[tokio::test]
async fn the_log_reads_like_celerys() {
    use std::io::BufRead;
    let redis = TestRedis::start();
    let conn = redis.manager().await;
    // Started its own way (every log line kept), with the environment every test's worker gets.
    let mut child = Binaries::at(&redis.url(), env!("CARGO_BIN_EXE_worker"))
        .command(Binary::Worker, &[])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let broker = celery_redis::broker::Broker::new(conn.clone(), "celery", "test@host");
    let kwargs = json!({"notification_id": "n-log", "recipient": "a@example.com",
        "channel": "log", "subject": "s", "body": "b"});
    let good = celery_redis::protocol::TaskMessage::new(
        "send_notification",
        "celery",
        kwargs.as_object().unwrap().clone(),
    );
    let bad =
        celery_redis::protocol::TaskMessage::new("no_such_task", "celery", Default::default());
    broker.publish(&good).await.unwrap();
    broker.publish(&bad).await.unwrap();
    let wanted = [
        "[queues]".to_owned(),
        ".> celery".to_owned(),
        "  . send_notification".to_owned(),
        format!("Task send_notification[{}] received", good.id),
        format!("Task send_notification[{}] succeeded in ", good.id),
        format!(
            "Task no_such_task[{}] raised unexpected: NotRegistered('no_such_task')",
            bad.id
        ),
    ];
    let mut seen: Vec<Option<String>> = vec![None; wanted.len()];
    let deadline = std::time::Instant::now() + WAIT;
    while seen.iter().any(Option::is_none) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("missing: {seen:?}"));
        for (w, s) in wanted.iter().zip(seen.iter_mut()) {
            if line.contains(w.as_str()) {
                *s = Some(line.clone());
            }
        }
    }
    let failed = seen[5].as_deref().unwrap();
    assert!(failed.contains("ERROR"), "{failed}");
    assert!(
        seen[4]
            .as_deref()
            .unwrap()
            .contains("'status': 'delivered'"),
        "{seen:?}"
    );
    let _ = child.kill();
    let _ = child.wait();
}
