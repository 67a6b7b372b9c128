//! What a task sends on when it ends: link callbacks with their parent and root ids, a chord as
//! the next chain step (its header and Celery's chord size), a chord member completing its
//! chord; a canvas beyond the bound, callbacks routed to reserved keys or to a key of another
//! type, and a message fanning out into too many callbacks are refused or dead-lettered with
//! nothing lost.

use crate::support::raw::later_orders_still_run;
use crate::support::shop::order;
use crate::support::shop::small_order;
use crate::support::start;
use celery_redis::conn::Conn;
use celery_redis::keys;
use celery_redis::protocol::{Signature, TaskMessage};
use celery_redis::result::TaskState;
use redis::AsyncCommands;
use serde_json::{json, Map, Value};
use shop::notifications;

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

/// A link callback to `no_such_task` whose `options.queue` is `queue`.
fn callback_to(queue: &str) -> Signature {
    serde_json::from_value(json!({"task": "no_such_task", "args": [], "kwargs": {},
        "options": {"queue": queue, "task_id": format!("cb-{queue}")}, "immutable": true}))
    .unwrap()
}

#[tokio::test]
async fn callbacks_routed_to_reserved_keys_are_dead_lettered_and_nothing_is_lost() {
    let w = start(&[]).await;
    let mut conn = w.conn.clone();
    conn.set::<_, _, ()>(shop::keys::stock("A"), 10)
        .await
        .unwrap();
    for queue in [
        "unacked",
        "unacked_index",
        "fleet:stock:A",
        "celery-task-meta-x",
    ] {
        let mut msg = TaskMessage::new(
            "process_order",
            "celery",
            small_order(&format!("o-{queue}")),
        );
        msg.body.embed.callbacks = Some(vec![callback_to(queue)]);
        msg.body.embed.errbacks = Some(vec![callback_to(queue)]);
        w.broker.publish(&msg).await.unwrap();
        assert_eq!(
            w.result(&msg.id).await.status,
            TaskState::Success,
            "{queue}"
        );
        // The callback could not be routed: dead-lettered, and a FAILURE for its id.
        let cb = w.result(&format!("cb-{queue}")).await;
        assert_eq!(cb.status, TaskState::Failure, "{queue}");
        assert!(cb.exception().unwrap().message().contains(queue));
    }
    let kind: String = redis::cmd("TYPE")
        .arg(keys::UNACKED)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(kind == "hash" || kind == "none", "unacked is a {kind}");
    assert_eq!(conn.get::<_, i64>(shop::keys::stock("A")).await.unwrap(), 6);
    later_orders_still_run(&w).await;
    let dead = w.broker.dead_letters(100).await.unwrap();
    assert_eq!(dead.len(), 4, "{dead:?}");
    w.stop().await.all_acknowledged();
}

#[tokio::test]
async fn a_callback_queue_holding_another_type_is_dead_lettered_in_the_same_step() {
    let w = start(&[]).await;
    let mut conn = w.conn.clone();
    conn.set::<_, _, ()>("not-a-list", "someone else's string")
        .await
        .unwrap();
    let mut msg = TaskMessage::new("no_such_task", "celery", Map::new());
    msg.body.embed.errbacks = Some(vec![callback_to("not-a-list")]);
    w.broker.publish(&msg).await.unwrap();
    assert_eq!(w.result(&msg.id).await.status, TaskState::Failure);
    assert_eq!(w.result("cb-not-a-list").await.status, TaskState::Failure);
    assert_eq!(
        conn.get::<_, String>("not-a-list").await.unwrap(),
        "someone else's string"
    );
    later_orders_still_run(&w).await;
    w.stop().await.all_acknowledged();
}

#[tokio::test]
async fn a_message_fanning_out_into_too_many_callbacks_is_refused() {
    let w = start(&[]).await;
    let mut msg = TaskMessage::new("no_such_task", "celery", Map::new());
    msg.body.embed.callbacks = Some(vec![callback_to("celery"); 1001]);
    w.broker.publish(&msg).await.unwrap();
    let meta = w.result(&msg.id).await;
    assert_eq!(meta.status, TaskState::Failure);
    assert!(meta
        .exception()
        .unwrap()
        .message()
        .contains("more than 1000"));
    let queued: i64 = w.conn.clone().llen("celery").await.unwrap();
    assert_eq!(queued, 0, "nothing fanned out");
    w.stop().await.all_acknowledged();
}
