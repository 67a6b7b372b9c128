//! Retries: a webhook's 5xx is retried the Celery way with the same idempotency key; a 4xx fails
//! at once and exhausted retries end in the dead-letter list; retry counts near the largest
//! integer give up without overflow. (A task's own backoff and countdown are in `tasks::api`.)

use crate::support::shop::webhook_note;
use crate::support::start;
use celery_redis::protocol::TaskMessage;
use celery_redis::result::TaskState;
use serde_json::{json, Map};
use shop::notifications;
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
