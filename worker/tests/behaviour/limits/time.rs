//! Time limits on the shop's tasks: a task past its limit ends with Celery's
//! `TimeLimitExceeded`; an absurd limit is no limit, not a panic. (A task's own limit and the
//! message's are in `tasks::api`; limits changed by remote control in `rate`.)

use crate::support::shop::small_order;
use crate::support::shop::{silent_webhook, webhook_note};
use crate::support::{start, WAIT};
use celery_redis::protocol::TaskMessage;
use celery_redis::result::TaskState;
use redis::AsyncCommands;

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

#[tokio::test]
async fn an_absurd_time_limit_is_no_limit_not_a_panic() {
    let w = start(&[]).await;
    let mut msg = TaskMessage::new("process_order", "celery", small_order("o-limit"));
    msg.time_limit = Some(1e300);
    w.conn
        .clone()
        .set::<_, _, ()>(shop::keys::stock("A"), 1)
        .await
        .unwrap();
    w.broker.publish(&msg).await.unwrap();
    assert_eq!(w.result(&msg.id).await.status, TaskState::Success);
    w.stop().await.all_acknowledged();
}
