//! What one hostile entry may cost Redis and the worker at the claim: junk is moved aside by
//! size-bounded operations, never decoded whole inside Redis, never held and never handed over
//! whole; and a message restores keep giving back is counted, delivery by delivery.

use celery_redis::broker::Visibility;
use std::time::Duration;

use celery_redis::broker::dead::DEAD_RAW_KEEP;
use celery_redis::broker::{Broker, Claim, DeadLetter};
use celery_redis::keys;
use celery_redis::protocol::{Limits, TaskMessage};
use redis::AsyncCommands;
use serde_json::{json, Map};
use testkit::TestRedis;

mod common;
use common::claim;

const JUNK_BYTES: usize = 40 * 1024 * 1024;

async fn lua_memory(conn: &mut celery_redis::conn::Conn) -> u64 {
    testkit::info_number(conn, "memory", "used_memory_lua").await
}

/// Claims one entry the script must dead-letter; returns the claim's fields and the dead
/// letter as stored, after checking both are bounded and nothing is held.
async fn claim_dead(
    broker: &Broker,
    conn: &mut celery_redis::conn::Conn,
) -> (String, String, Option<String>, DeadLetter) {
    let claims = broker.claim_many(1).await.unwrap();
    let Some(Claim::DeadLettered {
        reason,
        raw,
        task_id,
        ..
    }) = claims.into_iter().next()
    else {
        panic!("expected a dead letter");
    };
    assert!(
        raw.len() <= DEAD_RAW_KEEP,
        "handed over {} bytes",
        raw.len()
    );
    let stored: Vec<u8> = conn.lindex(keys::DEAD_LETTER, 0).await.unwrap();
    assert!(
        stored.len() <= DEAD_RAW_KEEP * 2 + 1024,
        "the dead letter holds {} bytes",
        stored.len()
    );
    let dead: DeadLetter = serde_json::from_slice(&stored).unwrap();
    assert_eq!(conn.hlen::<_, i64>(keys::UNACKED).await.unwrap(), 0);
    (reason, raw, task_id, dead)
}

#[tokio::test]
async fn a_40_mb_entry_without_a_tag_is_dead_lettered_without_decoding_it() {
    let redis = TestRedis::start();
    let mut conn = redis.manager().await;
    let broker = Broker::new(conn.clone(), "celery", "test@host");
    let mut junk = String::with_capacity(JUNK_BYTES + 2);
    junk.push('[');
    while junk.len() < JUNK_BYTES {
        junk.push_str("0,");
    }
    junk.push_str("0]");
    let size = junk.len();
    conn.lpush::<_, _, ()>("celery", &junk).await.unwrap();
    drop(junk);
    let lua_before = lua_memory(&mut conn).await;
    let (reason, _, _, dead) = claim_dead(&broker, &mut conn).await;
    let lua_after = lua_memory(&mut conn).await;
    eprintln!("Lua heap: {lua_before} -> {lua_after} bytes");
    assert!(
        reason.starts_with("message is larger than 1048576 bytes"),
        "{reason}"
    );
    assert!(
        reason.ends_with(&format!("(raw keeps its first 4096 of {size} bytes)")),
        "{reason}"
    );
    assert_eq!(dead.raw_bytes, Some(size as u64));
    assert_eq!(dead.raw.len(), DEAD_RAW_KEEP);
    // Popping the entry into the script copies it once; decoding it cost 15 to 30 times that.
    let grown = lua_after.saturating_sub(lua_before);
    assert!(
        grown < 2 * JUNK_BYTES as u64,
        "Lua's heap grew by {grown} bytes"
    );
}

#[tokio::test]
async fn an_entry_over_the_limit_is_dead_lettered_with_its_id_and_never_held() {
    let redis = TestRedis::start();
    let mut conn = redis.manager().await;
    let broker = Broker::new(conn.clone(), "celery", "test@host");
    let msg = TaskMessage::new("process_order", "celery", Map::new());
    // A valid envelope with a findable tag, its body 40 MB of text: kombu's key order puts the
    // body first and the headers (the id) at the end.
    let mut env: serde_json::Value = serde_json::from_str(&msg.to_json("t@h")).unwrap();
    env["body"] = json!("A".repeat(JUNK_BYTES));
    let raw = serde_json::to_string(&env).unwrap();
    assert!(raw.starts_with(r#"{"body":"AAAA"#));
    conn.lpush::<_, _, ()>("celery", &raw).await.unwrap();
    let (reason, handed, task_id, dead) = claim_dead(&broker, &mut conn).await;
    assert!(
        reason.starts_with("message is larger than 1048576 bytes"),
        "{reason}"
    );
    assert_eq!(task_id.as_deref(), Some(msg.id.as_str()));
    assert_eq!(dead.task.as_deref(), Some("process_order"));
    assert_eq!(dead.raw_bytes, Some(raw.len() as u64));
    assert_eq!(handed, dead.raw);
    assert!(raw.starts_with(&dead.raw));
    // Such an entry is not that message: requeue leaves it where it is.
    assert_eq!(broker.requeue_dead(0).await.unwrap(), 0);
    assert_eq!(conn.llen::<_, i64>(keys::DEAD_LETTER).await.unwrap(), 1);
}

#[tokio::test]
async fn the_limit_is_the_brokers_and_an_entry_within_it_is_held() {
    let redis = TestRedis::start();
    let mut conn = redis.manager().await;
    let limits = Limits {
        max_bytes: 64 * 1024,
        ..Limits::default()
    };
    let broker = Broker::new(conn.clone(), "celery", "test@host").with_limits(limits);
    let pad = |n: usize| json!({"pad": "x".repeat(n)}).as_object().cloned().unwrap();
    // Base64 makes the envelope a third larger than its body.
    let small = TaskMessage::new("process_order", "celery", pad(40 * 1024));
    let mut large = TaskMessage::new("process_order", "celery", pad(64 * 1024));
    large.id = "large".into();
    broker.publish(&small).await.unwrap();
    broker.publish(&large).await.unwrap();
    let claims = broker.claim_many(2).await.unwrap();
    assert!(matches!(&claims[0], Claim::Message(d) if d.deliveries == 1));
    assert!(matches!(&claims[1], Claim::DeadLettered { task_id: Some(id), .. } if id == "large"));
    assert_eq!(conn.hlen::<_, i64>(keys::UNACKED).await.unwrap(), 1);
}

#[tokio::test]
async fn junk_over_the_decoding_bound_is_not_decoded_and_keeps_a_prefix() {
    let redis = TestRedis::start();
    let mut conn = redis.manager().await;
    let broker = Broker::new(conn.clone(), "celery", "test@host");
    // A JSON object whose tag cannot be found by searching: only decoding would find it.
    let junk = format!(
        r#"{{"headers": {{"task": "t", "id": "junk-1", "pad": "{}"}}, "properties": {{"delivery_tag": 7}}}}"#,
        "x".repeat(20_000)
    );
    conn.lpush::<_, _, ()>("celery", &junk).await.unwrap();
    let (reason, _, task_id, dead) = claim_dead(&broker, &mut conn).await;
    assert!(reason.contains("too large to decode here"), "{reason}");
    assert_eq!(task_id.as_deref(), Some("junk-1"));
    assert_eq!(dead.raw_bytes, Some(junk.len() as u64));
}

/// Ages every lease and runs a restore, as a worker does once the holder is gone.
async fn lapse_and_restore(broker: &Broker, conn: &mut celery_redis::conn::Conn) {
    let tags: Vec<String> = conn.hkeys(keys::UNACKED).await.unwrap();
    for tag in &tags {
        conn.zadd::<_, _, _, ()>(keys::UNACKED_INDEX, tag, 1.0)
            .await
            .unwrap();
    }
    assert_eq!(
        broker
            .restore_expired(Visibility::both(Duration::from_secs(1)))
            .await
            .unwrap(),
        tags.len()
    );
}

async fn counters(conn: &mut celery_redis::conn::Conn) -> Vec<String> {
    conn.keys(format!("{}*", keys::DELIVERIES_PREFIX))
        .await
        .unwrap()
}

#[tokio::test]
async fn each_delivery_a_restore_gave_back_is_counted_and_the_count_ends_past_the_limit() {
    let redis = TestRedis::start();
    let mut conn = redis.manager().await;
    let broker = counting_broker(&conn);
    broker
        .publish(&TaskMessage::new("process_order", "celery", Map::new()))
        .await
        .unwrap();
    let first = claim(&broker).await;
    assert_eq!(first.deliveries, 1);
    assert!(
        counters(&mut conn).await.is_empty(),
        "a first delivery costs nothing"
    );
    let mut seen = Vec::new();
    for _ in 0..4 {
        lapse_and_restore(&broker, &mut conn).await;
        let d = claim(&broker).await;
        assert_eq!(d.tag, first.tag, "a restore keeps the tag");
        seen.push(d.deliveries);
    }
    assert_eq!(seen, [2, 3, 4, 2]);
    // Past the limit the counter went away, so a requeued dead letter starts again; the
    // counter of a message within it lives on, and expires.
    let left = counters(&mut conn).await;
    assert_eq!(left.len(), 1);
    let ttl: i64 = conn.ttl(&left[0]).await.unwrap();
    assert!(ttl > 0 && ttl <= 7 * 86_400, "{ttl}");
}

/// Only a restore counts: a message restored once and then parked by a live worker (an eta
/// wait, a webhook deferral) or handed back is not lost again at its next claim, however often
/// that happens (each such claim counted one more lost delivery, and a notification deferred
/// behind busy webhooks was dead-lettered as WorkerLostError).
#[tokio::test]
async fn parking_or_handing_back_a_restored_message_does_not_count_as_losing_it() {
    let redis = TestRedis::start();
    let mut conn = redis.manager().await;
    let broker = counting_broker(&conn);
    broker
        .publish(&TaskMessage::new("process_order", "celery", Map::new()))
        .await
        .unwrap();
    claim(&broker).await;
    lapse_and_restore(&broker, &mut conn).await;
    let mut d = claim(&broker).await;
    assert_eq!(d.deliveries, 2);
    for round in 0..6 {
        if round % 2 == 0 {
            assert!(broker.schedule(&d, 0.0).await.unwrap());
            assert_eq!(broker.promote_due().await.unwrap().0, 1);
        } else {
            assert!(broker.requeue(&d).await.unwrap());
        }
        d = claim(&broker).await;
        assert_eq!(d.deliveries, 1, "round {round}");
    }
}

#[tokio::test]
async fn a_message_a_python_worker_restored_is_counted_too() {
    let redis = TestRedis::start();
    let mut conn = redis.manager().await;
    let broker = Broker::new(conn.clone(), "celery", "test@host");
    let restored = kombu_restored();
    let restored = restored.as_str();
    assert!(restored.contains(r#""redelivered": true"#));
    for expected in [2, 3] {
        conn.lpush::<_, _, ()>("celery", restored).await.unwrap();
        let d = claim(&broker).await;
        assert_eq!(d.deliveries, expected);
        assert!(broker.ack(&d.tag).await.unwrap());
    }
    // An earlier `false` (a decoy) does not hide the flag.
    let decoy = restored.replacen(
        r#""delivery_info": {"#,
        r#""delivery_info": {"x": {"redelivered": false}, "#,
        1,
    );
    assert_ne!(decoy, restored);
    conn.lpush::<_, _, ()>("celery", decoy).await.unwrap();
    assert_eq!(claim(&broker).await.deliveries, 4);
}

/// A delivery counter another program set to a huge number counts as just past the limit (the
/// claim writes its count as an integer, never as `1e+15`, so it is read as a count).
#[tokio::test]
async fn a_delivery_counter_set_huge_counts_as_just_past_the_limit() {
    let redis = TestRedis::start();
    let mut conn = redis.manager().await;
    let broker = counting_broker(&conn);
    let restored = kombu_restored();
    let envelope: serde_json::Value = serde_json::from_str(&restored).unwrap();
    let tag = envelope["properties"]["delivery_tag"].as_str().unwrap();
    let digest: String = redis::cmd("EVAL")
        .arg("return redis.sha1hex(ARGV[1])")
        .arg(0)
        .arg(tag)
        .query_async(&mut conn)
        .await
        .unwrap();
    let counter = format!("{}{digest}", keys::DELIVERIES_PREFIX);
    conn.set::<_, _, ()>(&counter, "1000000000000000")
        .await
        .unwrap();
    conn.lpush::<_, _, ()>("celery", &restored).await.unwrap();
    assert_eq!(claim(&broker).await.deliveries, 4);
    // Past the limit, the counter is gone: a requeued dead letter starts again.
    assert!(!conn.exists::<_, bool>(&counter).await.unwrap());
}

/// A broker that dead-letters a message past its third delivery.
fn counting_broker(conn: &celery_redis::conn::Conn) -> Broker {
    let limits = Limits {
        max_deliveries: 3,
        ..Limits::default()
    };
    Broker::new(conn.clone(), "celery", "test@host").with_limits(limits)
}

/// A message as kombu's restore pushed it back (a capture in celery-vectors): with
/// `"redelivered": true` in its headers and delivery_info.
fn kombu_restored() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/celery-vectors/restore/restore_after_worker_crash.json"
    );
    let capture: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    capture["restored_messages_rpushed"][0]["raw"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn output_bytes(conn: &mut celery_redis::conn::Conn) -> u64 {
    testkit::info_number(conn, "stats", "total_net_output_bytes").await
}

#[tokio::test]
async fn the_blocking_wait_moves_a_large_entry_without_receiving_it() {
    let redis = TestRedis::start();
    let mut conn = redis.manager().await;
    let broker = Broker::new(conn.clone(), "celery", "test@host");
    let mut blocking = redis.manager().await;
    let large = "x".repeat(10 * 1024 * 1024);
    conn.lpush::<_, _, ()>("celery", &large).await.unwrap();
    let before = output_bytes(&mut conn).await;
    let moved = broker.wait_for_message(&mut blocking, Duration::from_secs(5));
    assert!(
        moved.await.unwrap(),
        "a message waits in the processing list"
    );
    let sent = output_bytes(&mut conn).await - before;
    assert!(sent < 64 * 1024, "Redis sent {sent} bytes");
    let processing: i64 = conn.llen(keys::processing("celery")).await.unwrap();
    assert_eq!(processing, 1);
    // The claim then moves it aside, bounded.
    let (_, _, _, dead) = claim_dead(&broker, &mut conn).await;
    assert_eq!(dead.raw_bytes, Some(large.len() as u64));
}

#[tokio::test]
async fn a_server_refusing_client_reply_gets_plain_waits() {
    let redis = TestRedis::start();
    let mut conn = redis.manager().await;
    redis::cmd("ACL")
        .arg(
            &[
                "SETUSER",
                "waiter",
                "on",
                ">a-long-password",
                "~*",
                "&*",
                "+@all",
                "-client",
            ][..],
        )
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let url = format!(
        "redis://waiter:a-long-password@127.0.0.1:{}/0",
        redis.port()
    );
    let url = celery_redis::conn::RedisUrl::parse(&url).unwrap();
    let waits = celery_redis::conn::Waits {
        response: Some(Duration::from_secs(10)),
        connect_retries: 1,
    };
    let broker = Broker::new(conn.clone(), "celery", "test@host");
    let mut blocking = celery_redis::conn::Conn::new(&url, waits).unwrap();
    let refused = broker.wait_for_message(&mut blocking, Duration::from_millis(100));
    let e = refused.await.unwrap_err();
    assert!(e.to_string().contains("CLIENT REPLY refused"), "{e}");
    // A fresh connection waits the plain way.
    let mut blocking = celery_redis::conn::Conn::new(&url, waits).unwrap();
    broker
        .publish(&TaskMessage::new("process_order", "celery", Map::new()))
        .await
        .unwrap();
    let moved = broker.wait_for_message(&mut blocking, Duration::from_secs(5));
    assert!(moved.await.unwrap());
    let processing: i64 = conn.llen(keys::processing("celery")).await.unwrap();
    assert_eq!(processing, 1);
}
