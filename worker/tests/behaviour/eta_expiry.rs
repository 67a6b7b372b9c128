//! Eta and expiry: eta tasks wait in the schedule and expired ones are revoked; an eta task whose
//! routing key names another key comes back to its own queue.

use crate::support::raw::{later_orders_still_run, push_raw};
use crate::support::start;
use celery_redis::keys;
use celery_redis::protocol::TaskMessage;
use celery_redis::result::TaskState;
use redis::AsyncCommands;
use serde_json::{json, Map};
use time::OffsetDateTime;

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
async fn an_eta_task_whose_routing_key_names_another_key_comes_back_to_its_own_queue() {
    let w = start(&[]).await;
    let mut conn = w.conn.clone();
    conn.set::<_, _, ()>("stringy", "x").await.unwrap();
    for (i, routing_key) in ["stringy", "unacked"].iter().enumerate() {
        let mut msg = TaskMessage::new("no_such_task", routing_key, Map::new());
        msg.eta = Some(time::OffsetDateTime::now_utc() + time::Duration::milliseconds(300));
        msg.id = format!("eta-{i}");
        // Pushed onto our queue, its routing key naming the other key.
        push_raw(&w, &msg.to_json("test@host")).await;
    }
    // When due, each goes back to the queue it was taken from (never to the key its routing
    // key names), runs there and fails as the unknown task it is.
    for id in ["eta-0", "eta-1"] {
        let meta = w.result(id).await;
        assert_eq!(meta.status, TaskState::Failure, "{id}");
        assert!(
            meta.result.to_string().contains("NotRegistered"),
            "{meta:?}"
        );
    }
    assert_eq!(
        conn.zcard::<_, i64>(keys::scheduled("celery"))
            .await
            .unwrap(),
        0
    );
    assert_eq!(conn.get::<_, String>("stringy").await.unwrap(), "x");
    later_orders_still_run(&w).await;
    w.stop().await.all_acknowledged();
}
