//! Retries: a webhook's 5xx is retried the Celery way with the same idempotency key; a 4xx fails
//! at once and exhausted retries end in the dead-letter list; retry counts near the largest
//! integer give up without overflow; a task's own backoff doubling and a countdown as given (on
//! the test tasks of `support::test_tasks`), a countdown too long for a date still a retry.

use crate::support::shop::webhook_note;
use crate::support::test_tasks as api;
use crate::support::{start, WAIT};
use celery_redis::protocol::TaskMessage;
use celery_redis::result::TaskState;
use redis::AsyncCommands;
use serde_json::Value;
use serde_json::{json, Map};
use shop::notifications;
use std::time::Duration;
use testkit::WebhookReceiver;

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

#[tokio::test]
async fn retries_near_the_largest_integer_give_up_without_overflow() {
    let w = start(&[("TASK_MAX_RETRIES", "2")]).await;
    let mut msg = TaskMessage::new("send_notification", "celery", Map::new());
    msg.body.kwargs = json!({"notification_id": "n-max", "recipient": "a@example.com",
        "channel": "webhook", "subject": "s", "body": "b", "url": "http://127.0.0.1:9/hook"})
    .as_object()
    .cloned()
    .unwrap();
    msg.retries = i64::MAX;
    w.broker.publish(&msg).await.unwrap();
    assert_eq!(w.result(&msg.id).await.status, TaskState::Failure);
    // The FAILURE is stored first, then the message is dead-lettered: stopping the worker
    // waits for both.
    let broker = w.broker.clone();
    let stopped = w.stop().await;
    stopped.all_acknowledged();
    let dead = broker.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, Some(i64::MAX));
    assert!(!dead[0].reason.contains('-'), "{}", dead[0].reason);
}

#[tokio::test]
async fn retries_wait_the_tasks_own_backoff_doubling_and_a_countdown_as_given() {
    let w = api::start().await;
    let backoff = w.call("backoff", json!([]), json!({})).await;
    let meta = w.results.wait(&backoff.id, WAIT).await.unwrap();
    assert_eq!(
        meta.status,
        TaskState::Failure,
        "given up after two retries"
    );
    let at = std::mem::take(&mut *w.attempts.0.lock().unwrap());
    assert_eq!(at.len(), 3, "the first run and two retries");
    // The worker's own backoff is 20 ms: these gaps are the task's (300 ms, then doubled).
    assert!(
        at[1] - at[0] >= Duration::from_millis(300),
        "{:?}",
        at[1] - at[0]
    );
    assert!(
        at[2] - at[1] >= Duration::from_millis(600),
        "{:?}",
        at[2] - at[1]
    );

    let countdown = w.call("backoff", json!([900]), json!({})).await;
    let meta = w.results.wait(&countdown.id, WAIT).await.unwrap();
    assert_eq!(meta.status, TaskState::Failure);
    let at = std::mem::take(&mut *w.attempts.0.lock().unwrap());
    assert_eq!(at.len(), 3, "a countdown still counts against max_retries");
    for pair in at.windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(900),
            "{:?}",
            pair[1] - pair[0]
        );
    }
    w.stop().await;
}

/// A countdown too long for a date (`RetryAfter` with `u64::MAX` milliseconds, half a billion
/// years) is still a retry, its eta as far ahead as a date goes: not a panic that dead-letters
/// the task as a lost worker.
#[tokio::test]
async fn a_countdown_too_long_for_a_date_is_still_a_retry() {
    let w = api::start().await;
    let far = w.call("backoff", json!([u64::MAX]), json!({})).await;
    let meta = w
        .results
        .wait_for(&far.id, WAIT, |s| *s == TaskState::Retry || s.is_ready())
        .await
        .unwrap();
    assert_eq!(meta.status, TaskState::Retry, "{:?}", meta.result);
    // RETRY is stored before the retry is scheduled: stopped, the worker has done both.
    let (mut conn, broker) = (w.conn.clone(), w.broker.clone());
    let _redis = w.stop().await;
    let scheduled: Vec<(String, f64)> = conn
        .zrange_withscores("fleet:scheduled:celery", 0, -1)
        .await
        .unwrap();
    assert_eq!(scheduled.len(), 1, "{scheduled:?}");
    let entry: Value = serde_json::from_str(&scheduled[0].0).unwrap();
    let envelope = entry.get(0).unwrap_or(&entry);
    let eta = envelope["headers"]["eta"].clone();
    let eta = celery_redis::clock::parse_celery_iso(eta.as_str().unwrap()).unwrap();
    assert!(eta.year() > 2100, "{eta}");
    assert!(broker.dead_letters(10).await.unwrap().is_empty());
}
