//! Messages the worker cannot run, on an in-process worker of the shop: an unknown task name
//! (Celery's NotRegistered, acknowledged), poison and crafted entries, the entries that crash a
//! Python worker, a zlib bomb and an entry that is not UTF-8 each get a FAILURE where their id is
//! readable and a dead letter, and the worker keeps going.

use crate::support::raw::crafted;
use crate::support::raw::push_raw;
use crate::support::shop::fixtures;
use crate::support::start;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use celery_redis::broker::Broker;
use celery_redis::protocol::TaskMessage;
use celery_redis::result::TaskState;
use redis::AsyncCommands;
use serde_json::{json, Map, Value};
use std::io::Write;

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
    let mut env = TaskMessage::new("process_order", "celery", Map::new())
        .to_envelope("test@host")
        .unwrap();
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

/// A change made to a message's JSON.
type Edit = Box<dyn FnOnce(&mut Value)>;

#[tokio::test]
async fn poison_with_a_readable_id_always_gets_a_failure() {
    let w = start(&[]).await;
    let cases: Vec<(&str, Edit)> = vec![
        ("eta-number", Box::new(|v| v["headers"]["eta"] = json!(12))),
        (
            "retries-string",
            Box::new(|v| v["headers"]["retries"] = json!("3")),
        ),
        (
            "priority-word",
            Box::new(|v| v["properties"]["priority"] = json!("high")),
        ),
        (
            "timelimit-string",
            Box::new(|v| v["headers"]["timelimit"] = json!("10")),
        ),
        (
            "no-properties",
            Box::new(|v| {
                v.as_object_mut().unwrap().remove("properties");
            }),
        ),
        (
            "no-tag",
            Box::new(|v| {
                v["properties"]
                    .as_object_mut()
                    .unwrap()
                    .remove("delivery_tag");
            }),
        ),
    ];
    let mut ids = Vec::new();
    for (name, edit) in cases {
        let mut msg = TaskMessage::new("no_such_task", "celery", Map::new());
        msg.id = format!("poison-{name}");
        push_raw(&w, &crafted(&msg, edit)).await;
        ids.push(msg.id);
    }
    for id in &ids {
        let meta = w.result(id).await;
        assert_eq!(meta.status, TaskState::Failure, "{id}");
    }
    assert_eq!(w.broker.dead_letters(100).await.unwrap().len(), ids.len());
    w.stop().await.all_acknowledged();
}

#[tokio::test]
async fn a_zlib_bomb_is_refused_without_inflating_it() {
    let w = start(&[]).await;
    let mut msg = TaskMessage::new("no_such_task", "celery", Map::new());
    msg.id = "bomb".into();
    // 64 MiB of zeros compress to ~64 KiB.
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..64 {
        z.write_all(&zeros).unwrap();
    }
    let compressed = z.finish().unwrap();
    let raw = crafted(&msg, |v| {
        v["body"] = json!(B64.encode(&compressed));
        v["headers"]["compression"] = json!("application/x-gzip");
    });
    push_raw(&w, &raw).await;
    let meta = w.result("bomb").await;
    assert_eq!(meta.status, TaskState::Failure);
    assert!(meta.exception().unwrap().message().contains("larger than"));
    w.stop().await.all_acknowledged();
}

#[tokio::test]
async fn an_entry_that_is_not_utf8_is_dead_lettered_and_its_batch_runs() {
    let w = start(&[]).await;
    let good = TaskMessage::new("no_such_task", "celery", Map::new());
    let good_raw = good.to_json("test@host");
    // Both in one claim: a valid message and an entry with a tag that is not UTF-8 text.
    let mut bad = b"\xff{\"properties\": {\"delivery_tag\": \"bad\xfe\"}}".to_vec();
    bad.extend_from_slice(b" ");
    redis::pipe()
        .atomic()
        .lpush("celery", good_raw.as_bytes())
        .lpush("celery", bad)
        .query_async::<()>(&mut w.conn.clone())
        .await
        .unwrap();
    assert_eq!(w.result(&good.id).await.status, TaskState::Failure);
    let broker = w.broker.clone();
    let stopped = w.stop().await;
    stopped.all_acknowledged();
    let dead = broker.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    // Not shaped like one JSON object either: the claim dead-letters it itself.
    let reason = &dead[0].reason;
    assert!(
        reason.contains("UTF-8") || reason.contains("not a JSON object"),
        "{reason}"
    );
}
