//! Leases and shutdown on in-process workers of the shop: unfinished tasks handed back at once;
//! a task longer than the visibility timeout keeps its lease on a live worker and through a
//! long shutdown; a reused delivery tag never overwrites another held message; a restore pass
//! survives an unacked entry that is not UTF-8; a `Worker` built, stepped and shut down.

use crate::support::raw::push_raw;
use crate::support::shop::{silent_webhook, webhook_note};
use crate::support::{start, Handle, Running, WAIT};
use celery_redis::broker::Broker;
use celery_redis::keys;
use celery_redis::protocol::{Envelope, TaskMessage};
use celery_redis::result::{ResultBackend, TaskState};
use celery_redis::shutdown::Trigger;
use redis::AsyncCommands;
use serde_json::{json, Map};
use std::time::Duration;
use testkit::TestRedis;

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
fn watcher(first: &Running, env: &[(&str, &str)]) -> (Trigger, Handle) {
    let mut env = env.to_vec();
    env.push(("WEBHOOK_ALLOW", "127.0.0.1"));
    crate::support::spawn(&first._redis.url(), &env)
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
    let env = [("WORKER_CONCURRENCY", "4")];
    let mut worker = crate::support::build(&redis.url(), &env, "stepper@test");
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
async fn a_reused_delivery_tag_never_overwrites_another_message_held() {
    let w = start(&[]).await;
    let mut conn = w.conn.clone();
    // A message some other worker holds under "shared-tag", its lease fresh for a long while.
    let held = r#"[{"held": "elsewhere"}, "", "celery"]"#;
    conn.hset::<_, _, _, ()>(keys::UNACKED, "shared-tag", held)
        .await
        .unwrap();
    conn.zadd::<_, _, _, ()>(keys::UNACKED_INDEX, "shared-tag", 4.0e9)
        .await
        .unwrap();
    let a = TaskMessage::new("no_such_task", "celery", Map::new());
    let b = TaskMessage::new("no_such_task", "celery", Map::new());
    let same_tag = |msg: &TaskMessage| {
        let mut env = Envelope::from_json(msg.to_json("t").as_bytes()).unwrap();
        env.properties.delivery_tag = Some("shared-tag".into());
        env.to_json()
    };
    // Both in one claim (four free slots), both with the tag already held.
    push_raw(&w, &same_tag(&a)).await;
    push_raw(&w, &same_tag(&b)).await;
    assert_eq!(w.result(&a.id).await.status, TaskState::Failure);
    assert_eq!(w.result(&b.id).await.status, TaskState::Failure);
    assert_eq!(
        conn.hget::<_, _, String>(keys::UNACKED, "shared-tag")
            .await
            .unwrap(),
        held,
        "the other worker's entry is untouched"
    );
    let stopped = w.stop().await;
    assert_eq!((stopped.unacked, stopped.queued.len()), (1, 0));
}

#[tokio::test]
async fn a_restore_pass_survives_an_unacked_entry_that_is_not_utf8() {
    let w = start(&[("VISIBILITY_TIMEOUT_SECS", "1")]).await;
    let mut conn = w.conn.clone();
    // Left behind by a crashed worker: an entry that is not UTF-8, and a real message.
    let orphan = TaskMessage::new("no_such_task", "celery", Map::new());
    let triple = format!(r#"[{}, "", "celery"]"#, orphan.to_json("test@host"));
    redis::pipe()
        .hset(keys::UNACKED, "orphan", triple)
        .hset(keys::UNACKED, b"bad\xff".as_slice(), b"\xff\xfe".as_slice())
        .zadd(keys::UNACKED_INDEX, "orphan", 1.0)
        .zadd(keys::UNACKED_INDEX, b"bad\xff".as_slice(), 1.0)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    // The orphan is restored and runs; the unreadable entry is dead-lettered.
    assert_eq!(w.result(&orphan.id).await.status, TaskState::Failure);
    let broker = w.broker.clone();
    let stopped = w.stop().await;
    stopped.all_acknowledged();
    let dead = broker.dead_letters(10).await.unwrap();
    assert!(dead.iter().any(|d| d.reason.contains("UTF-8")), "{dead:?}");
}
