//! The broker against a real redis-server: kombu's list and unacked layout, atomic claims,
//! acknowledgement, leases, the eta schedule and restores (including a Python worker's entry).

use celery_redis::broker::Visibility;
use std::time::Duration;

use celery_redis::broker::{Broker, Claim, Submitted, MAX_CLAIM_BATCH};
use celery_redis::keys;
use celery_redis::protocol::{Envelope, TaskMessage};
use futures_util::StreamExt;
use redis::AsyncCommands;
use serde_json::{json, Map, Value};
use testkit::TestRedis;

mod common;
use common::claim;

fn task(priority: i64) -> TaskMessage {
    let mut m = TaskMessage::new("process_order", "celery", Map::new());
    m.priority = priority;
    m
}

async fn server_time(conn: &mut celery_redis::conn::Conn) -> f64 {
    let (s, us): (f64, f64) = redis::cmd("TIME").query_async(conn).await.unwrap();
    s + us / 1e6
}

#[tokio::test]
async fn publish_pushes_left_and_claim_records_in_kombus_unacked_layout() {
    let redis = TestRedis::start();
    let mut conn = redis.manager().await;
    let broker = Broker::new(conn.clone(), "celery", "test@host");
    let (first, second) = (task(0), task(0));
    broker.publish(&first).await.unwrap();
    broker.publish(&second).await.unwrap();
    assert_eq!(conn.llen::<_, i64>("celery").await.unwrap(), 2);

    let before = server_time(&mut conn).await;
    let d = claim(&broker).await;
    let env = Envelope::from_json(d.raw.as_bytes()).unwrap();
    assert_eq!(
        env.headers.id, first.id,
        "FIFO: LPUSH then pop from the right"
    );
    // Held under its tag and the lease mark (restores tell this project's leases by it).
    assert_eq!(
        d.tag,
        format!("{}{}", env.delivery_tag().unwrap(), keys::LEASE_SUFFIX)
    );

    let stored: String = conn.hget(keys::UNACKED, &d.tag).await.unwrap();
    let triple: (Value, String, String) = serde_json::from_str(&stored).unwrap();
    assert_eq!(triple.0, serde_json::from_str::<Value>(&d.raw).unwrap());
    assert_eq!((triple.1.as_str(), triple.2.as_str()), ("", "celery"));
    // Scored with the server's clock in whole seconds, rounded up (kombu reads it as `time()`).
    let score: f64 = conn.zscore(keys::UNACKED_INDEX, &d.tag).await.unwrap();
    assert_eq!(score.fract(), 0.0, "{score}");
    assert!(score >= before && score <= server_time(&mut conn).await.ceil());

    assert!(broker.ack(&d.tag).await.unwrap());
    assert!(!conn
        .hexists::<_, _, bool>(keys::UNACKED, &d.tag)
        .await
        .unwrap());
    assert_eq!(conn.zcard::<_, i64>(keys::UNACKED_INDEX).await.unwrap(), 0);
    assert!(
        !broker.ack(&d.tag).await.unwrap(),
        "a second ack finds nothing"
    );
}

#[tokio::test]
async fn lower_priority_number_is_served_first() {
    let redis = TestRedis::start();
    let broker = Broker::new(redis.manager().await, "celery", "test@host");
    let (p9, p5, p0) = (task(9), task(5), task(0));
    for m in [&p9, &p5, &p0] {
        broker.publish(m).await.unwrap();
    }
    let mut conn = redis.manager().await;
    assert_eq!(conn.llen::<_, i64>("celery\x06\x163").await.unwrap(), 1);
    let order: Vec<String> = [
        claim(&broker).await,
        claim(&broker).await,
        claim(&broker).await,
    ]
    .iter()
    .map(|d| Envelope::from_json(d.raw.as_bytes()).unwrap().headers.id)
    .collect();
    assert_eq!(order, vec![p0.id, p5.id, p9.id]);
    assert!(broker.claim().await.unwrap().is_none());
}

#[tokio::test]
async fn claim_reads_kombus_fields_from_properties_in_any_key_order() {
    // The claim script reads delivery_tag as text, without decoding the envelope: a header with
    // the same name must not fool it, nor a near miss of `"delivery_info"`, nor must properties
    // coming first, nor spaces around the colons. It records the queue the message was taken
    // from, not the producer's exchange and routing key (a named exchange's routing key need not
    // name a queue).
    let redis = TestRedis::start();
    let mut conn = redis.manager().await;
    let broker = Broker::new(conn.clone(), "celery", "test@host");
    let mut env = task(0).to_envelope("test@host").unwrap();
    env.headers.extra.insert("exchange".into(), json!("decoy"));
    env.headers
        .extra
        .insert("routing_key".into(), json!("decoy"));
    env.headers
        .extra
        .insert("delivery_tag".into(), json!(["decoy"]));
    // The claim finds `"delivery_info"` by its tail `y_info"`: near misses come first.
    env.headers
        .extra
        .insert("x_delivery_info".into(), json!("y_info\" delivery_info\""));
    let mut doc = serde_json::to_value(&env).unwrap();
    doc["properties"]["delivery_info"] = json!({"exchange": "orders", "routing_key": "eu"});
    doc["properties"]["delivery_tag"] = json!("tag-1");
    let normal = serde_json::to_string(&doc).unwrap();
    let properties = doc.as_object_mut().unwrap().remove("properties").unwrap();
    let rest = serde_json::to_string(&doc).unwrap();
    let first = format!(
        r#"{{"properties" :  {properties}, {}"#,
        rest.strip_prefix('{').unwrap()
    );
    for raw in [normal, first] {
        conn.lpush::<_, _, ()>("celery", &raw).await.unwrap();
        let d = claim(&broker).await;
        let held = format!("tag-1{}", keys::LEASE_SUFFIX);
        assert_eq!(
            (d.tag.as_str(), d.raw.as_str()),
            (held.as_str(), raw.as_str())
        );
        let stored: String = conn.hget(keys::UNACKED, &held).await.unwrap();
        let triple: (Value, String, String) = serde_json::from_str(&stored).unwrap();
        assert_eq!((triple.1.as_str(), triple.2.as_str()), ("", "celery"));
        assert!(broker.ack(&held).await.unwrap());
    }
}

#[tokio::test]
async fn one_claim_takes_many_and_records_each_in_unacked() {
    let redis = TestRedis::start();
    let mut conn = redis.manager().await;
    let broker = Broker::new(conn.clone(), "celery", "test@host");
    let msgs: Vec<TaskMessage> = (0..250).map(|_| task(0)).collect();
    broker.publish_many(&msgs).await.unwrap();
    let claims = broker.claim_many(240).await.unwrap();
    let ids: Vec<String> = claims
        .iter()
        .map(|c| match c {
            Claim::Message(d) => Envelope::from_json(d.raw.as_bytes()).unwrap().headers.id,
            other => panic!("expected a message, got {other:?}"),
        })
        .collect();
    let expected: Vec<String> = msgs[..240].iter().map(|m| m.id.clone()).collect();
    assert_eq!(ids, expected, "in publish order");
    assert_eq!(conn.hlen::<_, i64>(keys::UNACKED).await.unwrap(), 240);
    assert_eq!(
        conn.zcard::<_, i64>(keys::UNACKED_INDEX).await.unwrap(),
        240
    );
    assert_eq!(conn.llen::<_, i64>("celery").await.unwrap(), 10);
}

#[tokio::test]
async fn a_claim_asked_for_too_many_takes_its_bounded_batch() {
    let redis = TestRedis::start();
    let mut conn = redis.manager().await;
    let broker = Broker::new(conn.clone(), "celery", "test@host");
    let msgs: Vec<TaskMessage> = (0..MAX_CLAIM_BATCH + 5).map(|_| task(0)).collect();
    for chunk in msgs.chunks(500) {
        broker.publish_many(chunk).await.unwrap();
    }
    // usize::MAX is past any count RPOP accepts: bounded, not refused.
    let claims = broker.claim_many(usize::MAX).await.unwrap();
    assert_eq!(claims.len(), MAX_CLAIM_BATCH);
    assert_eq!(conn.llen::<_, i64>("celery").await.unwrap(), 5);
    assert_eq!(broker.claim_many(0).await.unwrap().len(), 1, "at least one");
}

#[tokio::test]
async fn entries_that_are_not_envelopes_are_dead_lettered_by_the_claim() {
    let redis = TestRedis::start();
    let mut conn = redis.manager().await;
    let broker = Broker::new(conn.clone(), "celery", "test@host");
    conn.lpush::<_, _, ()>("celery", "not json at all")
        .await
        .unwrap();
    conn.lpush::<_, _, ()>("celery", r#"{"headers": {}, "properties": {}}"#)
        .await
        .unwrap();
    for expected in [
        "envelope is not a JSON object",
        "envelope has no properties.delivery_tag",
    ] {
        match broker.claim().await.unwrap() {
            Some(Claim::DeadLettered { reason, .. }) => assert_eq!(reason, expected),
            other => panic!("expected a dead letter, got {other:?}"),
        }
    }
    let dead = broker.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[1].raw, "not json at all");
    assert_eq!(conn.hlen::<_, i64>(keys::UNACKED).await.unwrap(), 0);
}

#[tokio::test]
async fn blocking_wait_moves_into_the_processing_list_and_any_claim_takes_it() {
    let redis = TestRedis::start();
    let broker = Broker::new(redis.manager().await, "celery", "test@host");
    let mut blocking = redis.manager().await;
    let waiter = {
        let broker = broker.clone();
        tokio::spawn(async move {
            broker
                .wait_for_message(&mut blocking, Duration::from_secs(20))
                .await
        })
    };
    // The BLMOVE is blocked until this push (CLIENT LIST shows it, but the push alone suffices:
    // whichever comes first, the message ends in the processing list or stays in the queue).
    let m = task(0);
    broker.publish(&m).await.unwrap();
    assert!(
        waiter.await.unwrap().unwrap(),
        "the wait returns once a message arrives"
    );
    let mut conn = redis.manager().await;
    assert_eq!(
        conn.llen::<_, i64>(keys::processing("celery"))
            .await
            .unwrap(),
        1
    );
    let d = claim(&broker).await;
    assert_eq!(
        Envelope::from_json(d.raw.as_bytes()).unwrap().headers.id,
        m.id
    );
    assert_eq!(
        conn.llen::<_, i64>(keys::processing("celery"))
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn blocking_wait_times_out_when_nothing_comes() {
    let redis = TestRedis::start();
    let broker = Broker::new(redis.manager().await, "celery", "test@host");
    let mut blocking = redis.manager().await;
    assert!(!broker
        .wait_for_message(&mut blocking, Duration::from_millis(100))
        .await
        .unwrap());
}

#[tokio::test]
async fn requeue_puts_a_held_message_at_the_consuming_end() {
    let redis = TestRedis::start();
    let broker = Broker::new(redis.manager().await, "celery", "test@host");
    let (a, b) = (task(0), task(0));
    broker.publish(&a).await.unwrap();
    broker.publish(&b).await.unwrap();
    let held = claim(&broker).await;
    assert!(broker.requeue(&held).await.unwrap());
    assert_eq!(
        claim(&broker).await.raw,
        held.raw,
        "handed back first in line"
    );
}

#[tokio::test]
async fn settling_a_lost_delivery_does_not_duplicate_it() {
    let redis = TestRedis::start();
    let mut conn = redis.manager().await;
    let broker = Broker::new(conn.clone(), "celery", "test@host");
    broker.publish(&task(0)).await.unwrap();
    let held = claim(&broker).await;
    // Its worker was gone long enough, and someone else restored it meanwhile.
    redis.age_leases(keys::UNACKED_INDEX, 60.0).await;
    assert_eq!(
        broker
            .restore_expired(Visibility::both(Duration::ZERO))
            .await
            .unwrap(),
        1
    );
    assert!(!broker.requeue(&held).await.unwrap());
    assert_eq!(
        conn.llen::<_, i64>("celery").await.unwrap(),
        1,
        "exactly one copy"
    );
}

#[tokio::test]
async fn scheduled_messages_come_back_when_due_by_the_server_clock() {
    let redis = TestRedis::start();
    let mut conn = redis.manager().await;
    let broker = Broker::new(conn.clone(), "celery", "test@host");
    let (soon, later) = (task(0), task(6));
    broker.publish(&soon).await.unwrap();
    broker.publish(&later).await.unwrap();
    let now = server_time(&mut conn).await;
    let d1 = claim(&broker).await;
    let d2 = claim(&broker).await;
    assert!(broker.schedule(&d1, now - 1.0).await.unwrap());
    assert!(broker.schedule(&d2, now + 3600.0).await.unwrap());
    assert_eq!(
        conn.hlen::<_, i64>(keys::UNACKED).await.unwrap(),
        0,
        "scheduled is not unacked"
    );

    let (moved, next) = broker.promote_due().await.unwrap();
    assert_eq!(moved, 1);
    let next = next.expect("one still scheduled");
    assert!(next > Duration::from_secs(3500) && next <= Duration::from_secs(3600));
    let back = claim(&broker).await;
    assert_eq!(back.raw, d1.raw);
    assert_eq!(
        conn.zcard::<_, i64>(keys::scheduled("celery"))
            .await
            .unwrap(),
        1
    );
}

/// A member due later than a `Duration` can say (a score of 1e20 seconds, put there by
/// another program or a task's far-off delay): the wait until it is "very long", not a panic
/// that ended the worker's scheduler (no eta, retry or deferred task came back after it).
#[tokio::test]
async fn a_member_due_past_what_a_duration_holds_is_a_long_wait() {
    let redis = TestRedis::start();
    let mut conn = redis.manager().await;
    let broker = Broker::new(conn.clone(), "celery", "test@host");
    let far = TaskMessage::new("process_order", "celery", Map::new());
    conn.zadd::<_, _, _, ()>(keys::scheduled("celery"), far.to_json("test@host"), 1e20)
        .await
        .unwrap();
    let (moved, next) = broker.promote_due().await.unwrap();
    assert_eq!((moved, next), (0, Some(Duration::MAX)));
}

#[tokio::test]
async fn renewed_leases_are_not_restored_and_expired_ones_are() {
    let redis = TestRedis::start();
    let mut conn = redis.manager().await;
    let broker = Broker::new(conn.clone(), "celery", "test@host");
    broker.publish(&task(0)).await.unwrap();
    broker.publish(&task(3)).await.unwrap();
    let live = claim(&broker).await;
    let dead = claim(&broker).await;
    // Age both leases by an hour, then renew only the live one.
    for d in [&live, &dead] {
        conn.zadd::<_, _, _, ()>(keys::UNACKED_INDEX, &d.tag, d.taken_at - 3600.0)
            .await
            .unwrap();
    }
    let renewing = server_time(&mut conn).await;
    assert_eq!(
        broker.renew(std::slice::from_ref(&live.tag)).await.unwrap(),
        1
    );
    // Renewed to the server's clock in whole seconds, rounded up: not earlier than the renewal.
    let renewed: f64 = conn.zscore(keys::UNACKED_INDEX, &live.tag).await.unwrap();
    assert_eq!(renewed.fract(), 0.0, "{renewed}");
    assert!(renewed >= renewing, "{renewed} {renewing}");
    assert_eq!(
        broker
            .restore_expired(Visibility::both(Duration::from_secs(60)))
            .await
            .unwrap(),
        1
    );

    assert!(conn
        .hexists::<_, _, bool>(keys::UNACKED, &live.tag)
        .await
        .unwrap());
    let restored: Vec<String> = conn.lrange("celery\x06\x163", 0, -1).await.unwrap();
    assert_eq!(restored.len(), 1, "back in its priority list");
    let v: Value = serde_json::from_str(&restored[0]).unwrap();
    assert_eq!(v["headers"]["redelivered"], json!(true));
    assert_eq!(v["properties"]["delivery_info"]["redelivered"], json!(true));
    assert_eq!(
        v["properties"]["delivery_tag"],
        json!(dead.tag.strip_suffix(keys::LEASE_SUFFIX).unwrap()),
        "keeps its tag"
    );
    assert!(
        conn.get::<_, Option<String>>(keys::UNACKED_MUTEX)
            .await
            .unwrap()
            .is_none(),
        "lock released"
    );
}

#[tokio::test]
async fn restore_understands_a_python_workers_unacked_entry() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/celery-vectors/restore/restore_after_worker_crash.json");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let (tag, entry) = doc["unacked_before_kill"]["unacked_hash"]
        .as_object()
        .unwrap()
        .iter()
        .next()
        .unwrap();
    let raw = entry["raw"].as_str().unwrap();

    let redis = TestRedis::start();
    let mut conn = redis.manager().await;
    conn.hset::<_, _, _, ()>(keys::UNACKED, tag, raw)
        .await
        .unwrap();
    conn.zadd::<_, _, _, ()>(keys::UNACKED_INDEX, tag, 1_000.0)
        .await
        .unwrap();
    let broker = Broker::new(conn.clone(), "celery", "test@host");
    assert_eq!(
        broker
            .restore_expired(Visibility::both(Duration::from_secs(5)))
            .await
            .unwrap(),
        1
    );

    let ours: Value =
        serde_json::from_str(&conn.lindex::<_, String>("celery", 0).await.unwrap()).unwrap();
    let kombus: Value =
        serde_json::from_str(doc["restored_messages_rpushed"][0]["raw"].as_str().unwrap()).unwrap();
    assert_eq!(ours, kombus, "the same envelope kombu's restore pushed");
}

#[tokio::test]
async fn publish_once_enqueues_a_key_only_once() {
    let redis = TestRedis::start();
    let mut conn = redis.manager().await;
    let broker = Broker::new(conn.clone(), "celery", "test@host");
    let (a, b) = (task(0), task(0));
    assert_eq!(
        broker.publish_once("k", &a).await.unwrap(),
        Submitted::Created(a.id.clone())
    );
    assert_eq!(
        broker.publish_once("k", &b).await.unwrap(),
        Submitted::Existing(a.id)
    );
    assert_eq!(conn.llen::<_, i64>("celery").await.unwrap(), 1);
    assert_eq!(broker.depth().await.unwrap(), 1);
}

#[tokio::test]
async fn a_full_queue_refuses_new_submissions_and_writes_nothing() {
    let redis = TestRedis::start();
    let mut conn = redis.manager().await;
    let broker = Broker::new(conn.clone(), "celery", "test@host").with_max_depth(2);
    broker.publish_once("k1", &task(0)).await.unwrap();
    broker.publish_once("k2", &task(6)).await.unwrap();
    assert_eq!(
        broker.publish_once("k3", &task(0)).await.unwrap(),
        Submitted::QueueFull(2)
    );
    assert!(
        !conn.exists::<_, bool>("k3").await.unwrap(),
        "no idempotency key left behind"
    );
    assert_eq!(broker.depth().await.unwrap(), 2);
    // An id accepted before is still answered with its task when the queue is full.
    assert!(matches!(
        broker.publish_once("k1", &task(0)).await.unwrap(),
        Submitted::Existing(_)
    ));
}

#[tokio::test]
async fn publish_many_keeps_order_and_priorities() {
    let redis = TestRedis::start();
    let broker = Broker::new(redis.manager().await, "celery", "test@host");
    let msgs = vec![task(0), task(0), task(9), task(0)];
    broker.publish_many(&msgs).await.unwrap();
    let mut got = Vec::new();
    while let Some(Claim::Message(d)) = broker.claim().await.unwrap() {
        got.push(Envelope::from_json(d.raw.as_bytes()).unwrap().headers.id);
    }
    assert_eq!(
        got,
        vec![
            msgs[0].id.clone(),
            msgs[1].id.clone(),
            msgs[3].id.clone(),
            msgs[2].id.clone()
        ]
    );
}

#[tokio::test]
async fn the_dead_letter_list_keeps_its_newest_entries_and_counts_the_rest() {
    let redis = TestRedis::start();
    let mut conn = redis.manager().await;
    let broker = Broker::new(conn.clone(), "celery", "test@host");
    for i in 0..5 {
        let entry = celery_redis::broker::DeadLetter::new(format!("r{i}"), "raw");
        conn.lpush::<_, _, ()>(keys::DEAD_LETTER, entry.to_json())
            .await
            .unwrap();
    }
    assert_eq!(broker.trim_dead(3).await.unwrap(), 2);
    assert_eq!(broker.trim_dead(3).await.unwrap(), 0);
    let kept: Vec<String> = broker
        .dead_letters(10)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.reason)
        .collect();
    assert_eq!(kept, vec!["r4", "r3", "r2"], "the newest stay");
    let stats = broker.stats().await.unwrap();
    assert_eq!((stats.dead, stats.dead_dropped), (3, 2));
}

#[tokio::test]
async fn a_restore_lock_left_behind_holds_restores_off_for_two_seconds_at_most() {
    let redis = TestRedis::start();
    let mut conn = redis.manager().await;
    let broker = Broker::new(conn.clone(), "celery", "test@host");
    broker.publish(&task(0)).await.unwrap();
    claim(&broker).await; // held by a worker that then died
    redis.age_leases(keys::UNACKED_INDEX, 60.0).await;
    // A restorer died holding the lock (or a Redis restart kept it in the AOF), with the
    // lifetime our restorers give it.
    redis::cmd("SET")
        .arg(keys::UNACKED_MUTEX)
        .arg("a-dead-restorer")
        .arg("PX")
        .arg(celery_redis::broker::restore::MUTEX_TTL_MS)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("notify-keyspace-events")
        .arg("Ex")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let mut events = redis.client().get_async_pubsub().await.unwrap();
    events.subscribe("__keyevent@0__:expired").await.unwrap();
    assert_eq!(
        broker
            .restore_expired(Visibility::both(Duration::ZERO))
            .await
            .unwrap(),
        0,
        "locked"
    );
    // The lock expires on its own well within three seconds (kombu's lasts 300 s).
    let mut expired = events.on_message();
    let gone = tokio::time::timeout(Duration::from_secs(3), async {
        while let Some(msg) = expired.next().await {
            if msg.get_payload::<String>().unwrap() == keys::UNACKED_MUTEX {
                return;
            }
        }
    })
    .await;
    assert!(gone.is_ok(), "the lock outlived three seconds");
    assert_eq!(
        broker
            .restore_expired(Visibility::both(Duration::ZERO))
            .await
            .unwrap(),
        1
    );
}

/// kombu's `json.dumps`: `", "` and `": "` between items (what a Python worker writes into
/// `unacked`), ASCII only is left to the caller.
fn python_dumps(value: &Value) -> String {
    use serde::Serialize;
    struct Spaced;
    impl serde_json::ser::Formatter for Spaced {
        fn begin_array_value<W: ?Sized + std::io::Write>(
            &mut self,
            w: &mut W,
            first: bool,
        ) -> std::io::Result<()> {
            w.write_all(if first { b"" } else { b", " })
        }
        fn begin_object_key<W: ?Sized + std::io::Write>(
            &mut self,
            w: &mut W,
            first: bool,
        ) -> std::io::Result<()> {
            w.write_all(if first { b"" } else { b", " })
        }
        fn begin_object_value<W: ?Sized + std::io::Write>(
            &mut self,
            w: &mut W,
        ) -> std::io::Result<()> {
            w.write_all(b": ")
        }
    }
    let mut out = Vec::new();
    value
        .serialize(&mut serde_json::Serializer::with_formatter(
            &mut out, Spaced,
        ))
        .unwrap();
    String::from_utf8(out).unwrap()
}

/// A producer chooses a message's delivery tag, and a Python worker records the message it
/// holds under that tag: a tag ending with `keys::LEASE_SUFFIX` must not make a restore take a
/// Python worker's eta or long task after this project's short lease (it would run twice), nor
/// may a hundred such entries hold back the restore of a real orphan behind them.
#[tokio::test]
async fn a_producer_chosen_tag_ending_like_a_lease_is_still_a_python_workers_entry() {
    let redis = TestRedis::start();
    let mut conn = redis.manager().await;
    let broker = Broker::new(conn.clone(), "celery", "test@host");
    let now = server_time(&mut conn).await;
    // A Python worker holds forged entries taken 60 s ago (kombu's visibility timeout: 1 h):
    // 101 with ASCII tags, and one whose tag json.dumps escapes (ensure_ascii).
    let mut forged = Vec::new();
    for n in 0..102 {
        let tag = match n {
            0 => format!("caf\u{e9}-{n}{}", keys::LEASE_SUFFIX),
            n => format!("py-{n}{}", keys::LEASE_SUFFIX),
        };
        let mut doc = serde_json::to_value(task(0).to_envelope("py@host").unwrap()).unwrap();
        doc["properties"]["delivery_tag"] = json!(tag);
        let value = python_dumps(&json!([doc, "", "celery"])).replace('\u{e9}', "\\u00e9");
        conn.hset::<_, _, _, ()>(keys::UNACKED, &tag, &value)
            .await
            .unwrap();
        conn.zadd::<_, _, _, ()>(keys::UNACKED_INDEX, &tag, now - 60.0 - f64::from(n))
            .await
            .unwrap();
        forged.push(tag);
    }
    // And a Rust worker died holding one 40 s ago.
    broker.publish(&task(0)).await.unwrap();
    let orphan = claim(&broker).await;
    conn.zadd::<_, _, _, ()>(keys::UNACKED_INDEX, &orphan.tag, now - 40.0)
        .await
        .unwrap();

    let visibility = Visibility {
        own: Duration::from_secs(30),
        foreign: Duration::from_secs(3600),
    };
    assert_eq!(broker.restore_expired(visibility).await.unwrap(), 1);
    assert!(!conn
        .hexists::<_, _, bool>(keys::UNACKED, &orphan.tag)
        .await
        .unwrap());
    for tag in &forged {
        assert!(
            conn.hexists::<_, _, bool>(keys::UNACKED, tag)
                .await
                .unwrap(),
            "{tag} taken from the Python worker holding it"
        );
    }
    assert_eq!(conn.llen::<_, i64>("celery").await.unwrap(), 1);
}
