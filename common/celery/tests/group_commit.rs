//! Group commit against a real redis-server: tasks that end (or store a state) together share
//! one script call, and each still gets its own outcome: its SUCCESS guard, its error, its ack.

use std::time::Duration;

use celery_redis::broker::{Broker, Claim};
use celery_redis::keys;
use celery_redis::protocol::{Envelope, TaskMessage};
use celery_redis::result::{ResultMeta, TaskState};
use futures_util::future::join_all;
use redis::AsyncCommands;
use serde_json::{json, Map};
use testkit::TestRedis;

/// Script calls (`EVALSHA` and `EVAL`) the server has run so far.
async fn script_calls(conn: &mut celery_redis::conn::Conn) -> u64 {
    testkit::command_stats(conn)
        .await
        .iter()
        .filter(|c| matches!(c.name.as_str(), "evalsha" | "eval"))
        .map(|c| c.calls)
        .sum()
}

/// 100 tasks held and ended at once: every one is acked, stored and sends its child, in far
/// fewer script calls than tasks; a task whose SUCCESS was already stored keeps it and sends
/// nothing, and says so, while its neighbours in the batch are written.
#[tokio::test]
async fn tasks_ending_together_share_script_calls_and_keep_their_own_outcomes() {
    let redis = TestRedis::start();
    let mut conn = redis.manager().await;
    let results = redis.results(Duration::from_secs(600)).await;
    let broker = Broker::new(conn.clone(), "celery", "test@host");
    let tasks: Vec<TaskMessage> = (0..100)
        .map(|_| TaskMessage::new("process_order", "celery", Map::new()))
        .collect();
    broker.publish_many(&tasks).await.unwrap();
    let held: Vec<_> = broker
        .claim_many(100)
        .await
        .unwrap()
        .into_iter()
        .map(|c| match c {
            Claim::Message(d) => d,
            other => panic!("expected a message, got {other:?}"),
        })
        .collect();
    assert_eq!(held.len(), 100);
    // One of them already succeeded in an earlier run.
    let done = ResultMeta::success(&tasks[7].id, json!("first run"));
    assert!(results.store(&done).await.unwrap());

    let before = script_calls(&mut conn).await;
    let ends = held.iter().map(|d| {
        let id = Envelope::from_json(d.raw.as_bytes()).unwrap().headers.id;
        let child = TaskMessage::new("send_notification", "notifications", Map::new());
        let (broker, results) = (broker.clone(), results.clone());
        let tag = d.tag.clone();
        async move {
            let meta = ResultMeta::success(&id, json!("second run"));
            let written = broker
                .finish(&results, Some(&tag), Some(&meta), &[child])
                .await
                .unwrap();
            (id, written)
        }
    });
    let ended = join_all(ends).await;
    let calls = script_calls(&mut conn).await - before;
    assert!(
        (1..10).contains(&calls),
        "{calls} script calls for 100 ends"
    );

    for (id, written) in &ended {
        let stored = results.get(id).await.unwrap();
        assert_eq!(stored.status, TaskState::Success);
        let first = *id == tasks[7].id;
        assert_eq!(*written, !first, "{id}");
        let value = if first { "first run" } else { "second run" };
        assert_eq!(stored.result, json!(value), "{id}");
    }
    assert_eq!(conn.hlen::<_, i64>(keys::UNACKED).await.unwrap(), 0);
    assert_eq!(conn.llen::<_, i64>("notifications").await.unwrap(), 99);
}

/// States stored at once (STARTED of many tasks) share script calls; a key of another type fails
/// its own store only, with Redis's WRONGTYPE, and a stored SUCCESS is never replaced.
#[tokio::test]
async fn states_stored_together_share_script_calls_and_fail_alone() {
    let redis = TestRedis::start();
    let mut conn = redis.manager().await;
    let results = redis.results(Duration::from_secs(600)).await;
    conn.hset::<_, _, _, ()>(keys::task_meta("t-13"), "not", "a string")
        .await
        .unwrap();
    assert!(results
        .store(&ResultMeta::success("t-14", json!(1)))
        .await
        .unwrap());

    let before = script_calls(&mut conn).await;
    let stores = (0..100).map(|i| {
        let results = results.clone();
        async move {
            let meta = ResultMeta::started(&format!("t-{i}"), "w@host");
            (i, results.store(&meta).await)
        }
    });
    let stored = join_all(stores).await;
    let calls = script_calls(&mut conn).await - before;
    assert!(
        (1..10).contains(&calls),
        "{calls} script calls for 100 states"
    );

    for (i, outcome) in stored {
        match i {
            13 => assert!(outcome.unwrap_err().to_string().contains("WRONGTYPE")),
            14 => assert!(!outcome.unwrap(), "a SUCCESS is kept"),
            _ => assert!(outcome.unwrap(), "t-{i}"),
        }
    }
    let id = |i: i32| format!("t-{i}");
    assert_eq!(
        results.get(&id(14)).await.unwrap().status,
        TaskState::Success
    );
    assert_eq!(
        results.get(&id(99)).await.unwrap().status,
        TaskState::Started
    );
}

/// A server that lost its scripts (a restart without persistence, `SCRIPT FLUSH`): the next
/// batch loads the script again and runs, instead of failing every call in it.
#[tokio::test]
async fn a_batch_loads_its_script_again_when_the_server_lost_it() {
    let redis = TestRedis::start();
    let mut conn = redis.manager().await;
    let results = redis.results(Duration::from_secs(600)).await;
    let started = ResultMeta::started("t-1", "w@host");
    assert!(results.store(&started).await.unwrap());
    let (calls, loads) = (script_calls(&mut conn).await, script_loads(&mut conn).await);
    let () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();
    let done = ResultMeta::success("t-1", json!("after the flush"));
    assert!(results.store(&done).await.unwrap());
    assert_eq!(
        results.get("t-1").await.unwrap().result,
        json!("after the flush")
    );
    assert_eq!(script_loads(&mut conn).await - loads, 1, "loaded again");
    assert_eq!(
        script_calls(&mut conn).await - calls,
        2,
        "refused, then run"
    );
}

async fn script_loads(conn: &mut celery_redis::conn::Conn) -> u64 {
    testkit::command_stats(conn)
        .await
        .iter()
        .filter(|c| c.name == "script|load")
        .map(|c| c.calls)
        .sum()
}

/// A result key that holds another type (another program's list): that task's end writes no
/// result and leaves the key as it was, but is still acked and still sends its child; the
/// task ending beside it in the same batch is stored as usual.
#[tokio::test]
async fn a_result_key_of_another_type_is_left_alone_and_the_task_still_ends() {
    let redis = TestRedis::start();
    let mut conn = redis.manager().await;
    let results = redis.results(Duration::from_secs(600)).await;
    let broker = Broker::new(conn.clone(), "celery", "test@host");
    let tasks: Vec<TaskMessage> = (0..2)
        .map(|_| TaskMessage::new("process_order", "celery", Map::new()))
        .collect();
    broker.publish_many(&tasks).await.unwrap();
    let held: Vec<_> = broker.claim_many(2).await.unwrap();
    assert_eq!(held.len(), 2);
    let foreign = keys::task_meta(&tasks[0].id);
    let _: () = conn.rpush(&foreign, "not a result").await.unwrap();

    let ends = held.iter().map(|c| {
        let Claim::Message(d) = c else {
            panic!("expected a message, got {c:?}")
        };
        let id = Envelope::from_json(d.raw.as_bytes()).unwrap().headers.id;
        let child = TaskMessage::new("send_notification", "notifications", Map::new());
        let (broker, results, tag) = (broker.clone(), results.clone(), d.tag.clone());
        async move {
            let meta = ResultMeta::success(&id, json!("done"));
            broker
                .finish(&results, Some(&tag), Some(&meta), &[child])
                .await
                .unwrap();
        }
    });
    join_all(ends).await;

    let kept: Vec<String> = conn.lrange(&foreign, 0, -1).await.unwrap();
    assert_eq!(kept, ["not a result"]);
    let stored = results.get(&tasks[1].id).await.unwrap();
    assert_eq!(stored.status, TaskState::Success);
    assert_eq!(conn.hlen::<_, i64>(keys::UNACKED).await.unwrap(), 0);
    assert_eq!(conn.llen::<_, i64>("notifications").await.unwrap(), 2);
}
