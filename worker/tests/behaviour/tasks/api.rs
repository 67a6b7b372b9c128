//! The task API as a user's task meets it, on an in-process worker of the test tasks of
//! `support::test_tasks` (no shop): the request a task sees, its arguments bound as Python binds
//! them, its options (max_retries, time limits and the message's own limit winning,
//! ignore_result, its default queue, blocking), tasks sent on, and a dependency the worker was
//! not given. (Its retry backoff and countdown are in `retries`.)

use crate::support::test_tasks::{start, start_with};
use crate::support::WAIT;
use std::time::Duration;

use celery_redis::protocol::TaskMessage;
use celery_redis::result::TaskState;
use redis::AsyncCommands;
use serde_json::{json, Map};

#[tokio::test]
async fn a_task_sees_its_request_and_its_arguments_bound_by_name() {
    let w = start().await;
    let mut msg = TaskMessage::new("echo", "celery", Map::new());
    msg.body.args = vec![json!(1)];
    msg.body.kwargs = json!({"b": [2]}).as_object().cloned().unwrap();
    msg = msg.child_of("parent-1", "root-1");
    msg.group = Some("group-1".into());
    w.broker.publish(&msg).await.unwrap();
    let meta = w.results.wait(&msg.id, WAIT).await.unwrap();
    assert_eq!(meta.status, TaskState::Success, "{:?}", meta.result);
    assert_eq!(
        meta.result,
        json!({"a": 1, "b": [2], "id": msg.id, "root_id": "root-1", "parent_id": "parent-1",
               "group": "group-1", "retries": 0, "queue": "celery", "hostname": "api@test",
               "args": [1], "kwargs": {"b": [2]}})
    );
    let extra = w.call("echo", json!([1, 2]), json!({"c": 3})).await;
    let meta = w.results.wait(&extra.id, WAIT).await.unwrap();
    assert_eq!(meta.status, TaskState::Failure);
    let exc = meta.exception().unwrap();
    assert_eq!(
        (exc.exc_type.as_str(), exc.message()),
        (
            "TypeError",
            "echo() got an unexpected keyword argument 'c'".to_owned()
        )
    );
    w.stop().await;
}

#[tokio::test]
async fn a_tasks_max_retries_and_time_limit_apply_and_the_messages_own_limit_wins() {
    let w = start().await;
    let flaky = w.call("flaky", json!([]), json!({})).await;
    let meta = w.results.wait(&flaky.id, WAIT).await.unwrap();
    assert_eq!(meta.status, TaskState::Failure);

    let slow = w.call("slow", json!([]), json!({})).await;
    let mut own = TaskMessage::new("slow", "celery", Map::new());
    own.time_limit = Some(0.3);
    w.broker.publish(&own).await.unwrap();
    for (msg, limit) in [(&slow, 0.2), (&own, 0.3)] {
        let meta = w.results.wait(&msg.id, WAIT).await.unwrap();
        let exc = meta.exception().unwrap();
        assert_eq!(exc.exc_type, "TimeLimitExceeded");
        assert_eq!(exc.exc_message, json!([limit]));
    }
    // Given up at once (FAILURE is stored before the dead letter, so after the worker stops).
    let broker = w.broker.clone();
    let _redis = w.stop().await;
    let dead = broker.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, Some(1), "{}", dead[0].reason);
}

#[tokio::test]
async fn ignore_result_stores_nothing_and_children_go_to_their_tasks_queue() {
    let w = start().await;
    let quiet = w.call("quiet", json!([]), json!({})).await;
    // The children are published in the same step as the parent's end: once one has run, the
    // parent has ended.
    let mut conn = w.conn.clone();
    let meta = w
        .results
        .wait(&format!("{}-echo", quiet.id), WAIT)
        .await
        .unwrap();
    assert_eq!(meta.result["a"], "child");
    assert_eq!(meta.result["parent_id"], json!(quiet.id));
    let parent = w.results.get(&quiet.id).await.unwrap();
    assert_eq!(parent.status, TaskState::Pending, "no result stored");
    let routed: i64 = conn.llen("elsewhere").await.unwrap();
    assert_eq!(routed, 1, "routed to its own queue");
    let needy = w.call("needy", json!([]), json!({})).await;
    let meta = w.results.wait(&needy.id, WAIT).await.unwrap();
    assert_eq!(meta.exception().unwrap().exc_type, "RuntimeError");
    w.stop().await;
}

#[tokio::test]
async fn a_tasks_acks_late_and_track_started_override_the_workers() {
    let w = start().await;
    let gated = w.call("gated", json!([]), json!({})).await;
    w.gate.started.notified().await;
    let mut conn = w.conn.clone();
    let held: i64 = conn.hlen(celery_redis::keys::UNACKED).await.unwrap();
    assert_eq!(held, 0, "acknowledged when it started");
    let meta = w.results.get(&gated.id).await.unwrap();
    assert_eq!(meta.status, TaskState::Pending, "no STARTED stored");
    w.gate.release.notify_one();
    let meta = w.results.wait(&gated.id, WAIT).await.unwrap();
    assert_eq!(meta.status, TaskState::Success);
    w.stop().await;
}

/// A blocking task spinning a CPU for longer than the visibility timeout: its lease is renewed
/// (it is not delivered again), the worker's heartbeats go on (Flower does not show it
/// offline) and remote control answers, all while the task never awaits. (Without `blocking`
/// the worker's thread spins: no heartbeat, no reply, and the test cannot let it go.)
#[tokio::test]
async fn a_blocking_task_spinning_past_the_visibility_timeout_starves_nothing() {
    use celery_redis::control::client::{call, Mailbox, Target};
    use futures_util::StreamExt;
    use std::sync::atomic::Ordering;

    let w = start_with(&[("VISIBILITY_TIMEOUT_SECS", "1")]).await;
    let mut pubsub = w._redis.client().get_async_pubsub().await.unwrap();
    pubsub
        .psubscribe("/0.celeryev/worker.heartbeat")
        .await
        .unwrap();
    let mut heartbeats = pubsub.into_on_message();
    let spin = w.call("spin", json!([]), json!({})).await;
    w.spin.started.notified().await;
    // Two heartbeats (2 s apart) after it started: the visibility timeout passed twice over.
    for _ in 0..2 {
        tokio::time::timeout(WAIT, heartbeats.next())
            .await
            .unwrap()
            .unwrap();
    }
    let mailbox = Mailbox {
        layout: celery_redis::keys::default_layout(),
        db: 0,
    };
    let clock = celery_redis::control::Lamport::default();
    let target = Target::Nodes(vec!["api@test".into()]);
    let control = w._redis.manager().await;
    let replies = call(&control, mailbox, &clock, "ping", json!({}), &target, WAIT)
        .await
        .unwrap();
    assert_eq!(
        replies,
        vec![("api@test".to_owned(), json!({"ok": "pong"}))]
    );
    assert_eq!(w.spin.runs.load(Ordering::SeqCst), 1, "delivered again");
    w.spin.release.store(true, Ordering::SeqCst);
    let meta = w.results.wait(&spin.id, WAIT).await.unwrap();
    assert_eq!(
        meta.result,
        json!("let go"),
        "the test could not let it go in time"
    );
    assert_eq!(w.spin.runs.load(Ordering::SeqCst), 1);
    w.stop().await;
}

/// A blocking task terminated while it never awaits keeps its thread place until it really
/// ends: stopped tasks cannot pile up threads, the next blocking task waits for the place.
#[tokio::test]
async fn a_terminated_blocking_task_holds_its_thread_place_until_its_thread_ends() {
    use celery_redis::control::client::{call, Mailbox, Target};
    use std::sync::atomic::Ordering;

    let w = start_with(&[("WORKER_CONCURRENCY", "1")]).await;
    let first = w.call("spin", json!([]), json!({})).await;
    w.spin.started.notified().await;
    let mailbox = Mailbox {
        layout: celery_redis::keys::default_layout(),
        db: 0,
    };
    let clock = celery_redis::control::Lamport::default();
    let control = w._redis.manager().await;
    let args = json!({"task_id": first.id, "terminate": true, "signal": "SIGTERM"});
    let target = Target::Nodes(vec!["api@test".into()]);
    call(&control, mailbox, &clock, "revoke", args, &target, WAIT)
        .await
        .unwrap();
    let meta = w.results.wait(&first.id, WAIT).await.unwrap();
    assert_eq!(meta.status, TaskState::Revoked);
    // Its slot is free again, its thread still spins: the next one is taken but cannot start.
    let second = w.call("spin", json!([]), json!({})).await;
    let started = tokio::time::timeout(Duration::from_millis(500), w.spin.started.notified());
    assert!(
        started.await.is_err(),
        "started beside a thread still spinning"
    );
    assert_eq!(w.spin.runs.load(Ordering::SeqCst), 1);
    w.spin.release.store(true, Ordering::SeqCst);
    let meta = w.results.wait(&second.id, WAIT).await.unwrap();
    assert_eq!(meta.result, json!("let go"));
    assert_eq!(w.spin.runs.load(Ordering::SeqCst), 2);
    w.stop().await;
}

/// A blocking task that panics on its thread: FAILURE (the worker lost it) and a dead letter,
/// and its thread place is given back: with one place, the next blocking task still runs.
#[tokio::test]
async fn a_blocking_task_that_panics_fails_and_gives_its_thread_place_back() {
    let w = start_with(&[("WORKER_CONCURRENCY", "1")]).await;
    let boom = w.call("boom", json!([]), json!({})).await;
    let meta = w.results.wait(&boom.id, WAIT).await.unwrap();
    assert_eq!(meta.status, TaskState::Failure);
    assert_eq!(meta.exception().unwrap().exc_type, "WorkerLostError");
    w.spin
        .release
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let spin = w.call("spin", json!([]), json!({})).await;
    let meta = w.results.wait(&spin.id, WAIT).await.unwrap();
    assert_eq!(meta.result, json!("let go"));
    let broker = w.broker.clone();
    let _redis = w.stop().await;
    assert_eq!(broker.dead_letters(10).await.unwrap().len(), 1);
}
