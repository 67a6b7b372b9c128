//! The worker running in-process against a real redis-server: the two tasks, Celery's outcomes
//! for unknown names, expiry and eta, poison messages, canvas callbacks, webhook retries and the
//! hand-back of unfinished work on shutdown.

use std::collections::HashMap;
use std::time::Duration;

use celery_redis::broker::Broker;
use celery_redis::conn::Conn;
use celery_redis::keys;
use celery_redis::protocol::{Signature, TaskMessage};
use celery_redis::result::{ResultBackend, TaskState};
use celery_redis::shutdown::{self, Trigger};
use redis::AsyncCommands;
use serde_json::{json, Map, Value};
use shop::notifications;
use testkit::{TestRedis, WebhookReceiver};
use time::OffsetDateTime;
use worker::config::WorkerConfig;

mod support;

use support::{start, Running, WAIT};

fn order(order_id: &str, quantity: i64) -> Value {
    json!({"order_id": order_id, "customer": {"id": "c-1", "email": "ada@example.com"},
           "items": [{"sku": "A", "quantity": quantity, "unit_price_cents": 250},
                     {"sku": "B", "quantity": 1, "unit_price_cents": 1099}]})
}

async fn stock(conn: &mut Conn, sku: &str) -> i64 {
    shop::inventory::get_stock(conn, sku).await.unwrap()
}

#[tokio::test]
async fn a_confirmed_order_reserves_stock_and_notifies_the_customer_as_a_chained_task() {
    let w = start(&[]).await;
    shop::inventory::set_stock(&w.conn, "A", 5).await.unwrap();
    shop::inventory::set_stock(&w.conn, "B", 1).await.unwrap();
    let msg = w.send("process_order", order("o-1", 2)).await;
    let meta = w.result(&msg.id).await;
    assert_eq!(meta.status, TaskState::Success, "{meta:?}");
    assert_eq!(
        meta.result,
        json!({"order_id": "o-1", "status": "confirmed", "total_cents": 1599})
    );
    let mut conn = w.conn.clone();
    assert_eq!(
        (stock(&mut conn, "A").await, stock(&mut conn, "B").await),
        (3, 0)
    );

    let child_id = meta.children.as_ref().unwrap()[0][0][0]
        .as_str()
        .unwrap()
        .to_owned();
    let child = w.result(&child_id).await;
    assert_eq!(child.status, TaskState::Success, "{child:?}");
    assert_eq!(
        child.parent_id.as_deref(),
        Some(msg.id.as_str()),
        "chained like Celery"
    );
    let delivered = notifications::delivered_to(&w.conn, "ada@example.com")
        .await
        .unwrap();
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].notification_id, "order-o-1-confirmed");
    assert!(delivered[0].body.contains("15.99"), "{}", delivered[0].body);
    w.stop().await.all_acknowledged();
}

#[tokio::test]
async fn an_order_beyond_stock_is_rejected_not_failed_and_changes_nothing() {
    let w = start(&[]).await;
    shop::inventory::set_stock(&w.conn, "A", 1).await.unwrap();
    shop::inventory::set_stock(&w.conn, "B", 9).await.unwrap();
    let msg = w.send("process_order", order("o-2", 2)).await;
    let meta = w.result(&msg.id).await;
    assert_eq!(meta.status, TaskState::Success);
    assert_eq!(meta.result["status"], "rejected");
    assert_eq!(
        meta.result["reason"],
        "insufficient stock for A: requested 2, available 1"
    );
    assert_eq!(
        meta.children,
        Some(json!([])),
        "no notification for a rejected order"
    );
    let mut conn = w.conn.clone();
    assert_eq!(
        (stock(&mut conn, "A").await, stock(&mut conn, "B").await),
        (1, 9)
    );
    w.stop().await;
}

#[tokio::test]
async fn the_same_order_processed_twice_reserves_once() {
    let w = start(&[]).await;
    shop::inventory::set_stock(&w.conn, "A", 10).await.unwrap();
    shop::inventory::set_stock(&w.conn, "B", 10).await.unwrap();
    let (a, b) = (
        w.send("process_order", order("o-3", 4)).await,
        w.send("process_order", order("o-3", 4)).await,
    );
    assert_eq!(w.result(&a.id).await.result, w.result(&b.id).await.result);
    let mut conn = w.conn.clone();
    assert_eq!(
        (stock(&mut conn, "A").await, stock(&mut conn, "B").await),
        (6, 9)
    );
    w.stop().await;
}

#[tokio::test]
async fn positional_args_work_and_invalid_arguments_fail_as_value_error() {
    let w = start(&[]).await;
    let o = order("o-4", 1);
    let mut msg = TaskMessage::new("process_order", "celery", Map::new());
    msg.body.args = vec![
        o["order_id"].clone(),
        o["customer"].clone(),
        o["items"].clone(),
    ];
    w.broker.publish(&msg).await.unwrap();
    assert_eq!(w.result(&msg.id).await.status, TaskState::Success);

    let bad = w
        .send("process_order", json!({"order_id": "o-5", "items": []}))
        .await;
    let meta = w.result(&bad.id).await;
    assert_eq!(meta.status, TaskState::Failure);
    let exc = meta.exception().unwrap();
    assert_eq!(
        (exc.exc_type.as_str(), exc.exc_module.as_str()),
        ("ValueError", "builtins")
    );
    assert!(
        exc.message().contains("customer: is required"),
        "{}",
        exc.message()
    );
    w.stop().await;
}

#[tokio::test]
async fn an_unknown_task_is_stored_as_not_registered_and_acknowledged() {
    let w = start(&[]).await;
    let msg = w.send("no_such_task", json!({})).await;
    let meta = w.result(&msg.id).await;
    assert_eq!(meta.status, TaskState::Failure);
    let exc = meta.exception().unwrap();
    assert_eq!(
        (exc.exc_type.as_str(), exc.exc_module.as_str()),
        ("NotRegistered", "celery.exceptions")
    );
    assert_eq!(exc.exc_message, json!(["no_such_task"]));
    w.stop().await.all_acknowledged();
}

#[tokio::test]
async fn poison_messages_are_dead_lettered_and_the_worker_keeps_going() {
    let w = start(&[]).await;
    let mut env = TaskMessage::new("process_order", "celery", Map::new()).to_envelope("test@host");
    let poison_id = env.headers.id.clone();
    env.body = "W1tdLCB7fV0=".into(); // base64 of "[[], {}]": two elements
    let mut conn = w.conn.clone();
    conn.lpush::<_, _, ()>("celery", env.to_json())
        .await
        .unwrap();
    conn.lpush::<_, _, ()>("celery", "\u{1}garbage")
        .await
        .unwrap();
    let meta = w.result(&poison_id).await;
    assert_eq!(meta.status, TaskState::Failure);
    assert_eq!(meta.exception().unwrap().exc_type, "DecodeError");

    // The worker is alive and serves the next message.
    let good = w.send("no_such_task", json!({})).await;
    assert_eq!(w.result(&good.id).await.status, TaskState::Failure);
    let dead = w.broker.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 2, "{dead:?}");
    let envelope_dead = dead.iter().find(|d| d.task_id.is_some()).unwrap();
    assert_eq!(envelope_dead.task_id.as_deref(), Some(poison_id.as_str()));
    assert!(
        envelope_dead.reason.contains("3-element"),
        "{}",
        envelope_dead.reason
    );
    w.stop().await.all_acknowledged();
}

#[tokio::test]
async fn eta_tasks_wait_in_the_schedule_and_expired_tasks_are_revoked() {
    let w = start(&[]).await;
    let now = OffsetDateTime::now_utc();
    let mut later = TaskMessage::new("no_such_task", "celery", Map::new());
    later.eta = Some(now + time::Duration::hours(1));
    let mut past = TaskMessage::new("no_such_task", "celery", Map::new());
    past.eta = Some(now - time::Duration::minutes(1));
    let mut expired = TaskMessage::new("no_such_task", "celery", Map::new());
    expired.expires = Some(now - time::Duration::seconds(1));
    for m in [&later, &past, &expired] {
        w.broker.publish(m).await.unwrap();
    }
    assert_eq!(
        w.result(&past.id).await.status,
        TaskState::Failure,
        "a past eta runs at once"
    );
    let revoked = w.result(&expired.id).await;
    assert_eq!(revoked.status, TaskState::Revoked);
    assert_eq!(revoked.exception().unwrap().exc_message, json!(["expired"]));
    assert_eq!(revoked.children, None);
    // The future one was taken and parked (it is in the schedule, not held by the worker).
    let stopped = w.stop().await;
    stopped.all_acknowledged();
    let mut conn = stopped.conn.clone();
    let scheduled: Vec<String> = conn.zrange(keys::scheduled("celery"), 0, -1).await.unwrap();
    assert_eq!(scheduled.len(), 1);
    assert!(scheduled[0].contains(&later.id));
    assert!(!conn
        .exists::<_, bool>(keys::task_meta(&later.id))
        .await
        .unwrap());
}

#[tokio::test]
async fn link_callbacks_are_sent_with_parent_and_root_ids() {
    let w = start(&[]).await;
    shop::inventory::set_stock(&w.conn, "A", 5).await.unwrap();
    shop::inventory::set_stock(&w.conn, "B", 5).await.unwrap();
    let mut msg = TaskMessage::new(
        "process_order",
        "celery",
        order("o-6", 1).as_object().cloned().unwrap(),
    );
    let callback: Signature = serde_json::from_value(json!({
        "task": "send_notification", "args": [],
        "kwargs": {"notification_id": "n-cb", "recipient": "ops@example.com", "channel": "log",
                   "subject": "order done", "body": "o-6"},
        "options": {"task_id": "cb-task-1"}, "subtask_type": null, "immutable": true}))
    .unwrap();
    msg.body.embed.callbacks = Some(vec![callback]);
    w.broker.publish(&msg).await.unwrap();
    let parent = w.result(&msg.id).await;
    assert_eq!(parent.status, TaskState::Success);
    let children = parent.children.unwrap();
    assert_eq!(
        children.as_array().unwrap().len(),
        2,
        "confirmation + callback: {children}"
    );
    let cb = w.result("cb-task-1").await;
    assert_eq!(cb.status, TaskState::Success, "{cb:?}");
    assert_eq!(cb.parent_id.as_deref(), Some(msg.id.as_str()));
    assert!(notifications::delivery(&w.conn, "n-cb")
        .await
        .unwrap()
        .is_some());
    w.stop().await;
}

/// A signature of a task parked in queue `held` (nothing consumes it), with a frozen id.
fn held(id: &str) -> Value {
    json!({"task": "echo", "args": [], "kwargs": {}, "immutable": false,
           "options": {"task_id": id, "queue": "held"}})
}

async fn held_messages(conn: &Conn) -> Vec<celery_redis::protocol::Message> {
    let raw: Vec<String> = conn
        .clone()
        .lrange(keys::queue_list("held", 0), 0, -1)
        .await
        .unwrap();
    raw.iter()
        .rev()
        .map(|r| celery_redis::protocol::Message::decode(r.as_bytes()).unwrap())
        .collect()
}

#[tokio::test]
async fn a_chord_as_the_next_chain_step_sends_its_header_and_sets_celerys_chord_size() {
    let w = start(&[]).await;
    shop::inventory::set_stock(&w.conn, "A", 5).await.unwrap();
    shop::inventory::set_stock(&w.conn, "B", 5).await.unwrap();
    let mut msg = TaskMessage::new(
        "process_order",
        "celery",
        order("o-chord-step", 1).as_object().cloned().unwrap(),
    );
    let header = json!({"task": "celery.group", "kwargs": {"tasks": [held("h-0"), held("h-1")]},
                        "options": {"task_id": "g-step"}});
    let step: Signature = serde_json::from_value(json!({"task": "celery.chord", "args": [],
        "kwargs": {"header": header, "body": held("body"), "kwargs": {}},
        "options": {"task_id": "g-step"}, "subtask_type": "chord"}))
    .unwrap();
    msg.body.embed.chain = Some(vec![step]);
    w.broker.publish(&msg).await.unwrap();
    let parent = w.result(&msg.id).await;
    assert_eq!(parent.status, TaskState::Success, "{parent:?}");
    let children = parent.children.unwrap();
    assert_eq!(
        children[1],
        json!([
            ["g-step", null],
            [[["h-0", null], null], [["h-1", null], null]]
        ])
    );
    let mut conn = w.conn.clone();
    let size: Option<u64> = conn.get("celery-taskset-meta-g-step.s").await.unwrap();
    assert_eq!(size, Some(2), "Celery's chord size, for whoever joins");
    let ttl: i64 = conn.ttl("celery-taskset-meta-g-step.s").await.unwrap();
    assert!(ttl > 0, "it expires with the results: {ttl}");
    let header = held_messages(&w.conn).await;
    let ids: Vec<&str> = header.iter().map(|m| m.id()).collect();
    assert_eq!(
        ids,
        ["h-0", "h-1"],
        "the header only, never a task named celery.chord"
    );
    for m in &header {
        assert_eq!(m.envelope.headers.group.as_deref(), Some("g-step"));
        assert_eq!(
            m.body.embed.chord.as_ref().unwrap()["options"]["task_id"],
            "body"
        );
    }
    w.stop().await;
}

#[tokio::test]
async fn a_canvas_beyond_the_bound_fails_its_task_and_sends_nothing() {
    let w = start(&[]).await;
    shop::inventory::set_stock(&w.conn, "A", 5).await.unwrap();
    shop::inventory::set_stock(&w.conn, "B", 5).await.unwrap();
    let mut msg = TaskMessage::new(
        "process_order",
        "celery",
        order("o-wide", 1).as_object().cloned().unwrap(),
    );
    let inner = json!({"task": "celery.group", "options": {},
                       "kwargs": {"tasks": (0..40).map(|i| held(&format!("w{i}"))).collect::<Vec<_>>()}});
    let outer =
        json!({"task": "celery.group", "options": {}, "kwargs": {"tasks": vec![inner; 40]}});
    msg.body.embed.chain = Some(vec![serde_json::from_value(outer).unwrap()]);
    w.broker.publish(&msg).await.unwrap();
    let meta = w.result(&msg.id).await;
    assert_eq!(meta.status, TaskState::Failure);
    let exc = meta.exception().unwrap();
    assert_eq!(exc.exc_type, "ValueError");
    assert!(exc.message().contains("more than 1000 messages"), "{exc:?}");
    assert!(held_messages(&w.conn).await.is_empty());
    w.stop().await.all_acknowledged();
}

fn webhook_note(id: &str, url: &str) -> Value {
    json!({"notification_id": id, "recipient": "ada@example.com", "channel": "webhook",
           "subject": "s", "body": "b", "url": url})
}

/// A chord of one shop task whose body is an immutable `send_notification.si(...)`: the member
/// completes the chord (`.s` = 1, as a producer sets it) and the body runs with its own
/// arguments, its id the one frozen in its signature.
#[tokio::test]
async fn a_chord_member_completes_its_chord_and_the_body_runs() {
    let w = start(&[]).await;
    let _: () = redis::AsyncCommands::set(&mut w.conn.clone(), "celery-taskset-meta-g-1.s", 1)
        .await
        .unwrap();
    let mut msg = TaskMessage::new(
        "process_order",
        "celery",
        order("o-chord", 1).as_object().cloned().unwrap(),
    );
    msg.group = Some("g-1".to_owned());
    msg.group_index = Some(0);
    msg.body.embed.chord = Some(json!({"task": "send_notification", "args": [],
        "kwargs": {"notification_id": "n-chord", "recipient": "ops@example.com",
                   "channel": "log", "subject": "s", "body": "b"},
        "immutable": true, "options": {"task_id": "body-1"}}));
    w.broker.publish(&msg).await.unwrap();
    assert_eq!(w.result(&msg.id).await.status, TaskState::Success);
    let body = w.result("body-1").await;
    assert_eq!(body.status, TaskState::Success, "{body:?}");
    assert_eq!(body.parent_id.as_deref(), Some(msg.id.as_str()));
    assert!(notifications::delivery(&w.conn, "n-chord")
        .await
        .unwrap()
        .is_some());
    w.stop().await.all_acknowledged();
}

#[tokio::test]
async fn webhook_5xx_is_retried_the_celery_way_with_the_same_idempotency_key() {
    let mut hook = WebhookReceiver::start(vec![503, 200]).await;
    let w = start(&[("TASK_RETRY_BACKOFF_MS", "50")]).await;
    let msg = w
        .send("send_notification", webhook_note("n-hook", &hook.url))
        .await;
    let (first, second) = (hook.next().await, hook.next().await);
    assert_eq!(first.idempotency_key.as_deref(), Some("n-hook"));
    assert_eq!(second.idempotency_key.as_deref(), Some("n-hook"));
    assert_eq!(first.body["subject"], "s");
    let meta = w.result(&msg.id).await;
    assert_eq!(meta.status, TaskState::Success);
    // The retry was the same task re-sent by itself: Celery's parent_id for a retry.
    assert_eq!(meta.parent_id.as_deref(), Some(msg.id.as_str()));
    assert!(notifications::delivery(&w.conn, "n-hook")
        .await
        .unwrap()
        .is_some());
    w.stop().await.all_acknowledged();
}

#[tokio::test]
async fn a_4xx_fails_at_once_and_exhausted_retries_end_in_the_dead_letter_list() {
    let mut hook = WebhookReceiver::start(vec![422, 500, 502, 503]).await;
    let w = start(&[("TASK_RETRY_BACKOFF_MS", "20"), ("TASK_MAX_RETRIES", "2")]).await;
    let refused = w
        .send("send_notification", webhook_note("n-refused", &hook.url))
        .await;
    let meta = w.result(&refused.id).await;
    assert_eq!(meta.status, TaskState::Failure);
    assert!(meta.exception().unwrap().message().contains("422"));
    assert!(hook.next().await.idempotency_key.is_some());

    let flaky = w
        .send("send_notification", webhook_note("n-down", &hook.url))
        .await;
    let meta = w.result(&flaky.id).await;
    assert_eq!(meta.status, TaskState::Failure);
    assert!(
        meta.exception().unwrap().message().contains("HTTP 503"),
        "{meta:?}"
    );
    for _ in 0..3 {
        assert_eq!(hook.next().await.idempotency_key.as_deref(), Some("n-down"));
    }
    assert!(
        hook.hits.try_recv().is_err(),
        "one attempt plus two retries"
    );
    let dead = w.broker.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].task_id.as_deref(), Some(flaky.id.as_str()));
    assert_eq!(dead[0].attempts, Some(3));
    assert!(
        dead[0].reason.starts_with("gave up after 3 attempts"),
        "{}",
        dead[0].reason
    );
    assert!(notifications::delivery(&w.conn, "n-down")
        .await
        .unwrap()
        .is_none());
    w.stop().await.all_acknowledged();
}

// Issue 19, item 5: webhook receivers that never answer held every worker slot: 8 such
// notifications delayed 20 orders by 90 s. Now at most `WEBHOOK_CONCURRENCY` deliveries (by
// default half the slots) wait on receivers; a notification over the limit goes back to the
// schedule for a moment instead of taking a slot.
#[tokio::test]
async fn webhooks_that_never_answer_cannot_hold_every_slot() {
    const SLOTS: usize = 4;
    const TIMEOUT: Duration = Duration::from_secs(10);
    let mut hook = WebhookReceiver::hanging().await;
    let w = start(&[
        ("WORKER_CONCURRENCY", "4"),
        ("WEBHOOK_TIMEOUT_MS", "10000"),
        ("TASK_MAX_RETRIES", "0"),
    ])
    .await;
    shop::inventory::set_stock(&w.conn, "A", 100).await.unwrap();
    shop::inventory::set_stock(&w.conn, "B", 100).await.unwrap();
    let mut notes = Vec::new();
    for i in 0..SLOTS {
        let note = webhook_note(&format!("n-hung-{i}"), &hook.url);
        notes.push(w.send("send_notification", note).await);
    }
    // The first ones are stuck at the receiver; the orders queue behind them all.
    hook.next().await;
    let mut orders = Vec::new();
    for i in 0..SLOTS {
        orders.push(
            w.send("process_order", order(&format!("o-busy-{i}"), 1))
                .await,
        );
    }
    for o in &orders {
        let meta = w
            .results
            .wait(&o.id, TIMEOUT / 4)
            .await
            .expect("an order waited for the hung webhooks");
        assert_eq!(meta.status, TaskState::Success, "{meta:?}");
    }
    // Each hung notification ends as the webhook timeout says (no retry allowed here).
    for n in &notes {
        let meta = w.results.wait(&n.id, WAIT).await.unwrap();
        assert_eq!(meta.status, TaskState::Failure, "{meta:?}");
        let exc = meta.exception().unwrap();
        assert!(
            exc.message().contains("did not answer within 10000 ms"),
            "{}",
            exc.message()
        );
    }
    let mut posted = 1;
    while hook.hits.try_recv().is_ok() {
        posted += 1;
    }
    assert_eq!(posted, SLOTS, "each hung notification was POSTed once");
    w.stop().await.all_acknowledged();
}

#[tokio::test]
async fn a_time_limit_stops_the_task_with_time_limit_exceeded() {
    let (url, accepted) = silent_webhook().await;
    let w = start(&[("WEBHOOK_TIMEOUT_MS", "600000")]).await;
    let mut msg = TaskMessage::new(
        "send_notification",
        "celery",
        webhook_note("n-limit", &url).as_object().cloned().unwrap(),
    );
    msg.time_limit = Some(0.5);
    w.broker.publish(&msg).await.unwrap();
    tokio::time::timeout(WAIT, accepted).await.unwrap().unwrap();
    let meta = w.result(&msg.id).await;
    assert_eq!(meta.status, TaskState::Failure);
    let exc = meta.exception().unwrap();
    assert_eq!(
        (exc.exc_type.as_str(), exc.exc_module.as_str()),
        ("TimeLimitExceeded", "billiard.exceptions")
    );
    w.stop().await.all_acknowledged();
}

/// A webhook that accepts the connection and never answers; resolves the receiver on accept.
async fn silent_webhook() -> (String, tokio::sync::oneshot::Receiver<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (accepted_tx, accepted) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let _ = accepted_tx.send(());
        let _hold = socket;
        std::future::pending::<()>().await;
    });
    (url, accepted)
}

#[tokio::test]
async fn shutdown_hands_unfinished_tasks_back_to_the_queue_at_once() {
    // A webhook that never answers keeps the task running.
    let (url, accepted) = silent_webhook().await;
    let w = start(&[
        ("WORKER_SHUTDOWN_TIMEOUT_SECS", "0"),
        ("WEBHOOK_TIMEOUT_MS", "600000"),
    ])
    .await;
    let msg = w
        .send(
            "send_notification",
            json!({"notification_id": "n-slow", "recipient": "a@example.com",
            "channel": "webhook", "subject": "s", "body": "b", "url": url}),
        )
        .await;
    tokio::time::timeout(WAIT, accepted).await.unwrap().unwrap();
    let mut stopped = w.stop().await;
    assert_eq!(stopped.queued.len(), 1, "handed back");
    assert!(stopped.queued[0].contains(&msg.id));
    assert_eq!(stopped.unacked, 0);
    assert_eq!(
        stopped
            .conn
            .zcard::<_, i64>(keys::UNACKED_INDEX)
            .await
            .unwrap(),
        0
    );
}

fn fixtures() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../common/celery/tests/fixtures/celery-vectors")
}

/// Raw list entries Python Celery 5.7 and 5.4 producers wrote.
fn captured_producer_messages() -> Vec<String> {
    let mut raws = Vec::new();
    for dir in ["messages", "messages_celery54"] {
        for entry in std::fs::read_dir(fixtures().join(dir)).unwrap() {
            let doc: Value =
                serde_json::from_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap())
                    .unwrap();
            match doc["list_entries_in_send_order"].as_array() {
                Some(list) => {
                    raws.extend(list.iter().map(|e| e["raw"].as_str().unwrap().to_owned()))
                }
                None => raws.push(doc["raw"].as_str().unwrap().to_owned()),
            }
        }
    }
    raws
}

#[tokio::test]
async fn every_message_a_python_producer_sent_is_run_to_a_result_and_none_is_dead_lettered() {
    let w = start(&[]).await;
    let raws = captured_producer_messages();
    let mut conn = w.conn.clone();
    let (mut ids, mut future) = (Vec::new(), Vec::new());
    for raw in &raws {
        let msg = celery_redis::protocol::Message::decode(raw.as_bytes()).unwrap();
        let env = &msg.envelope;
        let list = keys::queue_list(env.routing_key().unwrap(), env.priority());
        conn.lpush::<_, _, ()>(list, raw).await.unwrap();
        if msg.eta().is_some_and(|eta| eta > OffsetDateTime::now_utc()) {
            future.push(env.headers.id.clone()); // e.g. eta=2030: parked, not run
        } else if !env.headers.ignore_result {
            ids.push(env.headers.id.clone());
        }
    }
    for id in &ids {
        let meta = w
            .results
            .wait(id, WAIT)
            .await
            .unwrap_or_else(|e| panic!("{id}: {e}"));
        // These captures use the capture app's own signatures, so most fail validation: what
        // matters is that each was decoded, run and answered the way Celery answers.
        assert!(meta.status.is_ready(), "{id}: {meta:?}");
    }
    let stopped = w.stop().await;
    stopped.all_acknowledged();
    let mut conn = stopped.conn.clone();
    let dead: i64 = conn.llen(keys::DEAD_LETTER).await.unwrap();
    assert_eq!(dead, 0, "a Python producer's message was refused");
    let scheduled: Vec<String> = conn.zrange(keys::scheduled("celery"), 0, -1).await.unwrap();
    assert_eq!(scheduled.len(), future.len());
    assert!(future
        .iter()
        .all(|id| scheduled.iter().any(|s| s.contains(id))));
    assert!(ids.len() >= 25 && !future.is_empty());
}

#[tokio::test]
async fn the_messages_that_crash_a_python_worker_are_dead_lettered_here() {
    let doc: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("experiments_tolerance.json")).unwrap(),
    )
    .unwrap();
    let w = start(&[]).await;
    let mut conn = w.conn.clone();
    let mut poison_ids = Vec::new();
    for case in doc["part_a_python_worker_vs_handmade_messages"]
        .as_array()
        .unwrap()
    {
        let variant = &case["variant"].as_str().unwrap()[..3];
        if ["A05", "A06", "A08", "A10", "A11"].contains(&variant) {
            conn.lpush::<_, _, ()>("celery", case["envelope_sent"].to_string())
                .await
                .unwrap();
            poison_ids.push(
                case["envelope_sent"]["headers"]["id"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
    }
    // A good message after them proves the worker survived.
    let good = w.send("no_such_task", json!({})).await;
    assert_eq!(w.result(&good.id).await.status, TaskState::Failure);
    let stopped = w.stop().await;
    stopped.all_acknowledged();
    let dead = Broker::new(stopped.conn.clone(), "celery", "test@host")
        .dead_letters(20)
        .await
        .unwrap();
    assert_eq!(dead.len(), poison_ids.len(), "{dead:?}");
    for id in poison_ids {
        // A06 has no delivery tag: it is dead-lettered by the claim itself, raw.
        assert!(
            dead.iter().any(|d| d.raw.contains(&id)),
            "{id} not dead-lettered"
        );
    }
}

/// A webhook that holds each request for `hold`, then answers 200. Counts the requests, and
/// says when the first one has arrived (the task is running).
async fn holding_webhook(
    hold: Duration,
) -> (
    String,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
    tokio::sync::oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    let (first_tx, first) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut first_tx = Some(first_tx);
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if let Some(tx) = first_tx.take() {
                let _ = tx.send(());
            }
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                // Holding the task is the point: visibility timeouts pass meanwhile.
                tokio::time::sleep(hold).await;
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                    .await;
            });
        }
    });
    (url, accepted, first)
}

/// A second worker on the same Redis as `first`, restoring expired leases every half second.
fn watcher(
    first: &Running,
    env: &[(&str, &str)],
) -> (
    Trigger,
    tokio::task::JoinHandle<Result<(), worker::worker::WorkerError>>,
) {
    let mut vars: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    vars.insert("REDIS_URL".into(), first._redis.url());
    vars.insert("WEBHOOK_ALLOW".into(), "127.0.0.1".into());
    vars.insert("WORKER_METRICS_BIND".into(), "127.0.0.1:0".into());
    let src = move |k: &str| vars.get(k).cloned();
    let cfg = WorkerConfig::from_source(&src).unwrap();
    let (trigger, stop) = shutdown::channel();
    (
        trigger,
        tokio::spawn(worker::run(
            cfg.clone(),
            worker::shop::tasks(&src, &cfg).unwrap(),
            stop,
        )),
    )
}

#[tokio::test]
async fn a_task_longer_than_the_visibility_timeout_on_a_live_worker_is_not_handed_to_another() {
    // The webhook holds the request for 3 visibility timeouts.
    let (url, accepted, running) = holding_webhook(Duration::from_secs(3)).await;
    let env = [
        ("VISIBILITY_TIMEOUT_SECS", "1"),
        ("WEBHOOK_TIMEOUT_MS", "60000"),
    ];
    let first = start(&env).await;
    let msg = first
        .send("send_notification", webhook_note("n-long", &url))
        .await;
    // The first worker runs it; only then does the second one start watching.
    tokio::time::timeout(WAIT, running).await.unwrap().unwrap();
    let (second_trigger, second) = watcher(&first, &env);
    assert_eq!(first.result(&msg.id).await.status, TaskState::Success);
    assert_eq!(
        accepted.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the running task was never redelivered"
    );
    second_trigger.fire();
    second.await.unwrap().unwrap();
    first.stop().await.all_acknowledged();
}

#[tokio::test]
async fn a_task_running_through_a_shutdown_longer_than_the_visibility_timeout_keeps_its_lease() {
    // The grace period (30 s) is far longer than the visibility timeout (1 s), and the task
    // outlives four visibility timeouts after the shutdown began, with another worker watching
    // (it restores expired leases every second).
    let (url, accepted, running) = holding_webhook(Duration::from_secs(4)).await;
    let env = [
        ("VISIBILITY_TIMEOUT_SECS", "1"),
        ("WEBHOOK_TIMEOUT_MS", "60000"),
        ("WORKER_SHUTDOWN_TIMEOUT_SECS", "30"),
    ];
    let first = start(&env).await;
    let msg = first
        .send("send_notification", webhook_note("n-shutdown", &url))
        .await;
    // The first worker runs it; only then does the second one start watching.
    tokio::time::timeout(WAIT, running).await.unwrap().unwrap();
    let (second_trigger, second) = watcher(&first, &env);
    let stopped = first.stop().await;
    let results = ResultBackend::new(
        stopped.conn.clone(),
        stopped._redis.client(),
        Duration::from_secs(3600),
        true,
    );
    let meta = results.wait(&msg.id, WAIT).await.unwrap();
    assert_eq!(meta.status, TaskState::Success);
    assert_eq!(
        accepted.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the task finishing during the shutdown was never redelivered"
    );
    second_trigger.fire();
    second.await.unwrap().unwrap();
    stopped.all_acknowledged();
}

#[tokio::test]
async fn a_worker_can_be_built_stepped_and_shut_down() {
    let redis = TestRedis::start();
    let vars = HashMap::from([
        ("REDIS_URL".to_owned(), redis.url()),
        ("WORKER_CONCURRENCY".to_owned(), "4".to_owned()),
    ]);
    let src = move |k: &str| vars.get(k).cloned();
    let cfg = WorkerConfig::from_source(&src).unwrap();
    let mut worker = worker::Worker::build(
        cfg.clone(),
        worker::shop::tasks(&src, &cfg).unwrap(),
        "stepper@test".into(),
    )
    .unwrap();
    assert_eq!(worker.node(), "stepper@test");
    // Nothing queued: one step waits for a message and comes back idle.
    assert_eq!(worker.step().await.unwrap(), worker::worker::Step::Idle);

    let conn = redis.manager().await;
    let broker = Broker::new(conn.clone(), "celery", "test@host");
    let results = ResultBackend::new(conn.clone(), redis.client(), Duration::from_secs(60), true);
    let msgs: Vec<TaskMessage> = (0..3)
        .map(|i| {
            TaskMessage::new("no_such_task", "celery", Map::new()).child_of(&format!("p{i}"), "r")
        })
        .collect();
    broker.publish_many(&msgs).await.unwrap();
    // One step claims all three (four slots are free) and starts them.
    assert_eq!(
        worker.step().await.unwrap(),
        worker::worker::Step::Started(3)
    );
    for m in &msgs {
        let meta = results.wait(&m.id, WAIT).await.unwrap();
        assert_eq!(meta.status, TaskState::Failure);
        let exc = meta.exception().unwrap();
        assert_eq!(exc.exc_type, "NotRegistered");
    }
    worker.shutdown().await;
    let mut conn = conn;
    assert_eq!(conn.hlen::<_, i64>(keys::UNACKED).await.unwrap(), 0);
}

#[tokio::test]
async fn every_key_an_order_writes_has_a_lifetime() {
    let w = start(&[("RETENTION_SECS", "100")]).await;
    let mut conn = w.conn.clone();
    shop::inventory::set_stock(&conn, "A", 5).await.unwrap();
    shop::inventory::set_stock(&conn, "B", 5).await.unwrap();
    let msg = w.send("process_order", order("o-ttl", 1)).await;
    let done = w.result(&msg.id).await;
    assert_eq!(done.status, TaskState::Success);
    // The confirmation is the order's child; its delivery record and the recipient's list
    // exist once it has run.
    let child = done
        .children
        .as_ref()
        .and_then(|c| c[0][0][0].as_str())
        .unwrap()
        .to_owned();
    assert_eq!(w.result(&child).await.status, TaskState::Success);
    let confirmation = shop::contracts::notification::confirmation_id("o-ttl");
    for key in [
        shop::keys::order_reservation("o-ttl"),
        shop::keys::notification_delivery(&confirmation),
        shop::keys::recipient_deliveries("ada@example.com"),
        shop::keys::recipient_pushed("ada@example.com"),
    ] {
        let ttl: i64 = conn.ttl(&key).await.unwrap();
        assert!((1..=100).contains(&ttl), "{key} lives {ttl}");
    }
    let result_ttl: i64 = conn.ttl(keys::task_meta(&msg.id)).await.unwrap();
    assert!(result_ttl > 0, "results expire too ({result_ttl})");
    w.stop().await.all_acknowledged();
}

/// Redis commands per order, as the benchmark counts them (one queue, concurrency 64). A guard
/// that does not depend on the host's speed: a change that adds a command to every order
/// fails it; one that removes commands lowers `BUDGET` (docs/performance.md has the history).
#[tokio::test]
async fn an_order_costs_no_more_redis_commands_than_its_budget() {
    const ORDERS: usize = 2000;
    const BUDGET: f64 = 21.5;
    let redis = TestRedis::start();
    let mut conn = redis.manager().await;
    shop::inventory::set_stock(&conn, "A", 1_000_000)
        .await
        .unwrap();
    let broker = Broker::new(conn.clone(), "celery", "test@host");
    let msgs: Vec<TaskMessage> = (0..ORDERS)
        .map(|i| {
            let kwargs = json!({"order_id": format!("b-{i}"),
                "customer": {"id": "c", "email": "c@example.com"},
                "items": [{"sku": "A", "quantity": 1, "unit_price_cents": 100}]});
            TaskMessage::new(
                "process_order",
                "celery",
                kwargs.as_object().cloned().unwrap(),
            )
        })
        .collect();
    for chunk in msgs.chunks(500) {
        broker.publish_many(chunk).await.unwrap();
    }
    let url = redis.url();
    // Results are waited for on their pub/sub channel: one command, whatever the count.
    let mut pubsub = redis.client().get_async_pubsub().await.unwrap();
    pubsub.psubscribe("celery-task-meta-*").await.unwrap();
    let mut stored = pubsub.into_on_message();
    let before = testkit::info_number(&mut conn, "stats", "total_commands_processed").await;
    // The confirmations go to a queue nobody consumes here: the orders alone are counted.
    let extra = [
        ("WORKER_CONCURRENCY", "64"),
        ("TASK_ROUTES", "send_notification=confirmations"),
    ];
    let w = support::start_on(redis, &url, &extra).await;
    let mut succeeded = 0;
    while succeeded < ORDERS {
        let msg = tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut stored))
            .await
            .unwrap()
            .unwrap();
        let meta: Value = serde_json::from_slice(msg.get_payload_bytes()).unwrap();
        succeeded += usize::from(meta["status"] == "SUCCESS");
    }
    // The INFO that reads the count is counted too.
    let ours = 1;
    let per_order = (testkit::info_number(&mut conn, "stats", "total_commands_processed").await
        - before
        - ours) as f64
        / ORDERS as f64;
    let confirmations: u64 = conn.llen("confirmations").await.unwrap();
    assert_eq!(confirmations, ORDERS as u64, "every order ran");
    println!("redis commands per order: {per_order:.2} (budget {BUDGET})");
    assert!(
        per_order <= BUDGET,
        "{per_order:.2} commands per order, budget {BUDGET}"
    );
    w.stop().await.all_acknowledged();
}
