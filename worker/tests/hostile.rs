//! Crafted messages, as any producer on the Redis can write them, against the worker in-process:
//! none may lose accepted work, break the queue for later tasks, or leave a caller waiting.
//! Each test reproduces a finding of the hardening review and fails on the code before it.

mod support;

use std::io::Write;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use celery_redis::keys;
use celery_redis::protocol::{Envelope, Signature, TaskMessage};
use celery_redis::result::TaskState;
use redis::AsyncCommands;
use serde_json::{json, Map, Value};
use support::{start, Running};

fn order(order_id: &str) -> Map<String, Value> {
    json!({"order_id": order_id, "customer": {"id": "c-1", "email": "ada@example.com"},
           "items": [{"sku": "A", "quantity": 1, "unit_price_cents": 250}]})
    .as_object()
    .cloned()
    .unwrap_or_default()
}

/// A link callback to `no_such_task` whose `options.queue` is `queue`.
fn callback_to(queue: &str) -> Signature {
    serde_json::from_value(json!({"task": "no_such_task", "args": [], "kwargs": {},
        "options": {"queue": queue, "task_id": format!("cb-{queue}")}, "immutable": true}))
    .unwrap()
}

async fn push_raw(w: &Running, raw: &str) {
    w.conn
        .clone()
        .lpush::<_, _, ()>("celery", raw)
        .await
        .unwrap();
}

/// Orders sent after the attack still run: the queue and `unacked` are intact.
async fn later_orders_still_run(w: &Running) {
    w.conn
        .clone()
        .set::<_, _, ()>(shop::keys::stock("A"), 100)
        .await
        .unwrap();
    for i in 0..3 {
        let msg = w
            .send("process_order", json!(order(&format!("later-{i}"))))
            .await;
        assert_eq!(w.result(&msg.id).await.status, TaskState::Success);
    }
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
        let mut msg = TaskMessage::new("process_order", "celery", order(&format!("o-{queue}")));
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
async fn an_eta_task_whose_routing_key_names_another_key_comes_back_to_its_own_queue() {
    let w = start(&[]).await;
    let mut conn = w.conn.clone();
    conn.set::<_, _, ()>("stringy", "x").await.unwrap();
    for (i, routing_key) in ["stringy", "unacked"].iter().enumerate() {
        let mut msg = TaskMessage::new("no_such_task", routing_key, Map::new());
        msg.eta = Some(time::OffsetDateTime::now_utc() + time::Duration::milliseconds(300));
        msg.id = format!("eta-{i}");
        // Pushed onto our queue, its routing key naming the other key.
        push_raw(&w, &msg.to_envelope("test@host").to_json()).await;
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

/// A change made to a message's JSON.
type Edit = Box<dyn FnOnce(&mut Value)>;

/// A raw envelope of `msg` with `edit` applied to its JSON.
fn crafted(msg: &TaskMessage, edit: impl FnOnce(&mut Value)) -> String {
    let mut v: Value = serde_json::from_str(&msg.to_envelope("test@host").to_json()).unwrap();
    edit(&mut v);
    v.to_string()
}

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
async fn an_absurd_time_limit_is_no_limit_not_a_panic() {
    let w = start(&[]).await;
    let mut msg = TaskMessage::new("process_order", "celery", order("o-limit"));
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
        let mut env = Envelope::from_json(msg.to_envelope("t").to_json().as_bytes()).unwrap();
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

/// A listener that counts the connections it accepts (it never answers).
async fn counting_listener() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::mem::forget(socket);
        }
    });
    (port, count)
}

fn webhook_note(id: &str, url: &str) -> serde_json::Value {
    json!({"notification_id": id, "recipient": "ada@example.com", "channel": "webhook",
           "subject": "s", "body": "b", "url": url})
}

#[tokio::test]
async fn webhooks_to_internal_addresses_fail_at_once_without_a_connection() {
    // Nothing but a documentation address is allowed: loopback is refused as by default.
    let w = start(&[("WEBHOOK_ALLOW", "192.0.2.1")]).await;
    let (port, accepted) = counting_listener().await;
    let urls = [
        format!("http://127.0.0.1:{port}/hook"),
        format!("http://localhost:{port}/hook"),
        format!("http://[::1]:{port}/hook"),
        format!("http://user:secret@127.0.0.1:{port}/hook"),
        "http://169.254.169.254/latest/meta-data".to_owned(),
        "http://10.0.0.1/hook".to_owned(),
        "http://192.168.1.1/hook".to_owned(),
    ];
    for (i, url) in urls.iter().enumerate() {
        let msg = w
            .send(
                "send_notification",
                webhook_note(&format!("n-ssrf-{i}"), url),
            )
            .await;
        let meta = w.result(&msg.id).await;
        assert_eq!(meta.status, TaskState::Failure, "{url}");
        let exc = meta.exception().unwrap();
        assert!(
            exc.message().contains("refused"),
            "{url}: {}",
            exc.message()
        );
        assert!(!exc.message().contains("secret"), "{}", exc.message());
    }
    assert_eq!(
        accepted.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "no connection was made"
    );
    w.stop().await.all_acknowledged();
}

#[tokio::test]
async fn a_redirect_is_a_final_failure_and_is_not_followed() {
    let w = start(&[]).await;
    let (elsewhere, followed) = counting_listener().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = socket.read(&mut buf).await;
            let reply = format!(
                "HTTP/1.1 307 Temporary Redirect\r\nlocation: http://127.0.0.1:{elsewhere}/hook\r\ncontent-length: 0\r\n\r\n"
            );
            let _ = socket.write_all(reply.as_bytes()).await;
        }
    });
    let msg = w
        .send("send_notification", webhook_note("n-redirect", &url))
        .await;
    let meta = w.result(&msg.id).await;
    assert_eq!(meta.status, TaskState::Failure);
    assert!(meta.exception().unwrap().message().contains("307"));
    assert_eq!(followed.load(std::sync::atomic::Ordering::SeqCst), 0);
    w.stop().await.all_acknowledged();
}

#[tokio::test]
async fn an_entry_that_is_not_utf8_is_dead_lettered_and_its_batch_runs() {
    let w = start(&[]).await;
    let good = TaskMessage::new("no_such_task", "celery", Map::new());
    let good_raw = good.to_envelope("test@host").to_json();
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

#[tokio::test]
async fn a_restore_pass_survives_an_unacked_entry_that_is_not_utf8() {
    let w = start(&[("VISIBILITY_TIMEOUT_SECS", "1")]).await;
    let mut conn = w.conn.clone();
    // Left behind by a crashed worker: an entry that is not UTF-8, and a real message.
    let orphan = TaskMessage::new("no_such_task", "celery", Map::new());
    let triple = format!(
        r#"[{}, "", "celery"]"#,
        orphan.to_envelope("test@host").to_json()
    );
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
