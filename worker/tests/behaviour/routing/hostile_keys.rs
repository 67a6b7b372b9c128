//! Multi-queue routing attacked as a hostile producer or a careless operator would, against a
//! private redis-server: hostile `TASK_ROUTES`/`WORKER_QUEUES`, crafted entries in routed queues,
//! crafted kombu binding tables, schedules and dead letters, idle waits at shutdown, fairness
//! (the metrics of a task whose routing key names another queue are in `observability::metrics`).
//! Nothing accepted may be lost or duplicated, and no reserved key may be written. A test whose
//! documentation starts with "Found by the review" failed before its fix.

use crate::support::raw::crafted;
use celery_redis::broker::Visibility;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use celery_redis::broker::{Broker, Claim, DeadLetter, Delivery};
use celery_redis::conn::Conn;
use celery_redis::keys;
use celery_redis::protocol::{Envelope, TaskMessage};
use celery_redis::routes::{parse_queues, Routes, MAX_ENTRIES};
use redis::AsyncCommands;
use serde_json::{json, Map, Value};
use testkit::TestRedis;
use worker::config::WorkerConfig;
use worker::worker::{Step, Worker};

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|q| q.to_string()).collect()
}

fn worker_cfg(pairs: &[(&str, &str)]) -> Result<WorkerConfig, String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    WorkerConfig::from_source(&move |k: &str| map.get(k).cloned()).map_err(|e| e.to_string())
}

fn held(claims: &[Claim]) -> Vec<&Delivery> {
    claims
        .iter()
        .filter_map(|c| match c {
            Claim::Message(d) => Some(d),
            _ => None,
        })
        .collect()
}

fn task_id(raw: &str) -> String {
    Envelope::from_json(raw.as_bytes()).unwrap().headers.id
}

async fn all_of(conn: &mut Conn, list: &str) -> Vec<String> {
    conn.lrange(list, 0, -1).await.unwrap()
}

/// Records `raw` in `unacked` as a Python worker that died holding it would have: kombu's
/// `[envelope, exchange, routing_key]`, its lease long expired.
async fn orphan(conn: &mut Conn, tag: &str, raw: &str, exchange: &str, routing_key: &str) {
    let entry = format!(
        "[{raw}, {}, {}]",
        serde_json::to_string(exchange).unwrap(),
        serde_json::to_string(routing_key).unwrap()
    );
    redis::pipe()
        .hset(keys::UNACKED, tag, entry)
        .zadd(keys::UNACKED_INDEX, tag, 1_000.0)
        .query_async::<()>(conn)
        .await
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Configuration

#[test]
fn hostile_worker_queues_are_refused_whole_and_64_distinct_are_accepted() {
    let many: Vec<String> = (0..MAX_ENTRIES).map(|i| format!("q{i}")).collect();
    assert_eq!(parse_queues(&many.join(",")).unwrap().len(), MAX_ENTRIES);
    let too_many: Vec<String> = (0..=MAX_ENTRIES).map(|i| format!("q{i}")).collect();
    let long_ok = "q".repeat(keys::MAX_NAME_LEN);
    let long_bad = "q".repeat(keys::MAX_NAME_LEN + 1);
    for bad in [
        too_many.join(","),
        "celery,celery".into(),
        "celery, celery ".into(),
        "orders,,celery".into(),
        ",".into(),
        " ".into(),
        "ördres".into(),
        "orders\u{200b}".into(),
        "a\x06\x16b".into(),
        "a\0b".into(),
        "a\r\nb".into(),
        "a;b".into(),
        "a b".into(),
        "*".into(),
        "orders*".into(),
        "unacked".into(),
        "unacked_index".into(),
        "unacked_mutex".into(),
        "fleet:dead_letter".into(),
        "fleet:processing:celery".into(),
        "fleet:scheduled:celery".into(),
        "_kombu.binding.celery".into(),
        "w@h.celery.pidbox".into(),
        "x.reply.celery.pidbox".into(),
        "celery-task-meta-1".into(),
        ".".into(),
        "..".into(),
        long_bad.clone(),
    ] {
        let err = worker_cfg(&[("WORKER_QUEUES", &bad)]).unwrap_err();
        assert!(err.contains("WORKER_QUEUES"), "{bad:?}: {err}");
    }
    // Trimmed, case-sensitive, the longest name allowed.
    let cfg = worker_cfg(&[("WORKER_QUEUES", &format!(" Orders , orders,{long_ok}"))]).unwrap();
    assert_eq!(cfg.queues, ["Orders", "orders", long_ok.as_str()]);
}

#[test]
fn hostile_task_routes_are_refused_whole() {
    let too_many: Vec<String> = (0..=MAX_ENTRIES).map(|i| format!("t{i}=q")).collect();
    for bad in [
        too_many.join(","),
        "*=unacked".into(),
        "*=fleet:processing:celery".into(),
        "*=_kombu.binding.celery".into(),
        "*=celery-task-meta-x".into(),
        "*=a b".into(),
        "*=orders\x06\x163".into(),
        "tâche=q".into(),
        "t=q=r".into(),
        "t==q".into(),
        "t=q;u=r".into(),
        "t?=q".into(),
        "t[ab]=q".into(),
        format!("{}=q", "t".repeat(keys::MAX_NAME_LEN + 1)),
        "process_order=orders,process_order=orders".into(),
    ] {
        let err = worker_cfg(&[("TASK_ROUTES", &bad)]).unwrap_err();
        assert!(err.contains("TASK_ROUTES"), "{bad:?}: {err}");
    }
    // A default queue routed to by name as well is one queue, listed once.
    let r = Routes::parse("a=celery,b=orders,c=celery", "celery").unwrap();
    assert_eq!(r.queues(), ["celery", "orders"]);
}

/// Found by the review (fixed): `Routes::parse` and `parse_queues` (common/celery/src/routes.rs)
/// check for a repeated entry against every entry kept so far (`rules.iter().any(..)`) and only
/// count the entries after the loop (`if rules.len() > MAX_ENTRIES`): quadratic in the size of
/// the value before the size is refused (~16k entries: seconds at start-up in a debug build).
/// Refusing as soon as entry 65 is read makes it constant.
#[test]
fn an_oversized_route_table_is_refused_quickly() {
    // As much as one environment string can hold on Linux (128 KiB), all distinct entries:
    // refused, and without a quadratic scan of every entry first.
    let mut spec = String::new();
    let mut i = 0;
    while spec.len() < 128 * 1024 {
        spec.push_str(&format!("t{i}=q,"));
        i += 1;
    }
    spec.pop();
    let started = Instant::now();
    assert!(Routes::parse(&spec, "celery").is_err());
    let queues = spec.replace("=q", "");
    assert!(parse_queues(&queues).is_err());
    let took = started.elapsed();
    eprintln!("{i} entries refused in {took:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");
}

/// Found by the review (fixed): `keys::is_queue_name` (common/celery/src/keys.rs) refuses kombu's,
/// Celery's result and this project's keys, but not the Redis result backend's group and chord
/// keys a Python worker of the same fleet writes: `celery-taskset-meta-<group>` (a saved group)
/// and `celery-taskset-meta-<group>.j` (the chord's join list: a task envelope pushed there
/// counts as a finished chord part) or `chord-unlock-<group>`. A route, a worker queue, a
/// callback's `options.queue` or a restored routing key may name them.
#[test]
fn queues_cannot_name_the_result_backends_group_and_chord_keys() {
    for bad in [
        "celery-taskset-meta-6f1c.j",
        "celery-taskset-meta-6f1c",
        "chord-unlock-6f1c",
    ] {
        assert!(!keys::is_queue_name(bad), "{bad:?} is accepted as a queue");
        assert!(
            worker_cfg(&[("WORKER_QUEUES", bad)]).is_err(),
            "WORKER_QUEUES={bad}"
        );
        assert!(
            worker_cfg(&[("TASK_ROUTES", &format!("*={bad}"))]).is_err(),
            "TASK_ROUTES=*={bad}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Crafted entries in routed queues

#[tokio::test]
async fn a_tag_reused_across_two_queues_in_one_claim_holds_both_and_each_returns_to_its_queue() {
    let redis = TestRedis::start();
    let mut conn = redis.manager().await;
    let broker = Broker::new(conn.clone(), "celery", "test@host");
    let (in_a, in_b) = (
        TaskMessage::new("t", "a", Map::new()),
        TaskMessage::new("t", "b", Map::new()),
    );
    // Both carry the same tag, and each a routing key naming the other queue.
    let raw_a = crafted(&in_a, |e| {
        e["properties"]["delivery_tag"] = json!("dup");
        e["properties"]["delivery_info"] = json!({"exchange": "", "routing_key": "b"});
    });
    let raw_b = crafted(&in_b, |e| {
        e["properties"]["delivery_tag"] = json!("dup");
        e["properties"]["delivery_info"] = json!({"exchange": "", "routing_key": "a"});
    });
    conn.lpush::<_, _, ()>("a", &raw_a).await.unwrap();
    conn.lpush::<_, _, ()>("b", &raw_b).await.unwrap();
    let ab = names(&["a", "b"]);

    let claims = broker.claim_from(&ab, 2).await.unwrap();
    let got = held(&claims);
    assert_eq!(got.len(), 2, "{claims:?}");
    assert_ne!(got[0].tag, got[1].tag, "one tag for two held messages");
    assert_eq!(conn.hlen::<_, i64>(keys::UNACKED).await.unwrap(), 2);
    // Each recorded under the queue it came from, whatever its routing key.
    for d in &got {
        let stored: String = conn.hget(keys::UNACKED, &d.tag).await.unwrap();
        let (_, exchange, rk): (Value, String, String) = serde_json::from_str(&stored).unwrap();
        assert_eq!((exchange.as_str(), rk.as_str()), ("", d.queue.as_str()));
    }

    // Handed back: each to its own queue, once.
    for d in &got {
        assert!(broker.requeue(d).await.unwrap());
    }
    assert_eq!(all_of(&mut conn, "a").await, [raw_a]);
    assert_eq!(all_of(&mut conn, "b").await, [raw_b]);

    // Taken again and left to expire: the restore puts each back in its own queue, once.
    let claims = broker.claim_from(&ab, 2).await.unwrap();
    assert_eq!(held(&claims).len(), 2);
    redis.age_leases(keys::UNACKED_INDEX, 60.0).await;
    assert_eq!(
        broker
            .restore_expired(Visibility::both(Duration::ZERO))
            .await
            .unwrap(),
        2
    );
    assert_eq!(conn.hlen::<_, i64>(keys::UNACKED).await.unwrap(), 0);
    let (back_a, back_b) = (all_of(&mut conn, "a").await, all_of(&mut conn, "b").await);
    assert_eq!(
        back_a.iter().map(|r| task_id(r)).collect::<Vec<_>>(),
        [in_a.id]
    );
    assert_eq!(
        back_b.iter().map(|r| task_id(r)).collect::<Vec<_>>(),
        [in_b.id]
    );
}

#[tokio::test]
async fn an_entry_that_is_not_utf8_in_the_second_queue_is_dead_lettered_under_that_queue() {
    let redis = TestRedis::start();
    let mut conn = redis.manager().await;
    let broker = Broker::new(conn.clone(), "celery", "test@host");
    let good_a = TaskMessage::new("t", "a", Map::new());
    let good_b = TaskMessage::new("t", "b", Map::new());
    let bad =
        b"{\"properties\": {\"delivery_info\": {}, \"delivery_tag\": \"t\xff\"}}\xfe".to_vec();
    redis::pipe()
        .lpush("a", good_a.to_json("p@h"))
        .lpush("b", bad)
        .lpush("b", good_b.to_json("p@h"))
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let claims = broker.claim_from(&names(&["a", "b"]), 3).await.unwrap();
    assert_eq!(claims.len(), 3, "{claims:?}");
    let ok: Vec<(&str, String)> = held(&claims)
        .iter()
        .map(|d| (d.queue.as_str(), task_id(&d.raw)))
        .collect();
    assert_eq!(ok, [("a", good_a.id.clone()), ("b", good_b.id.clone())]);
    // Not even shaped like one JSON object: the claim dead-letters it at once (an entry whose
    // tag alone is not UTF-8 would come back as `Claim::Unreadable`, for the worker to do so).
    let Some(Claim::DeadLettered { queue, .. }) = claims.get(1) else {
        panic!("{claims:?}")
    };
    assert_eq!(queue, "b");
    let dead = broker.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].queue.as_deref(), Some("b"));
    for d in held(&claims) {
        assert!(broker.ack(&d.tag).await.unwrap());
    }
    assert_eq!(conn.hlen::<_, i64>(keys::UNACKED).await.unwrap(), 0);
}

#[tokio::test]
async fn foreign_keys_in_place_of_one_queues_lists_are_skipped_and_left_as_they_are() {
    let redis = TestRedis::start();
    let mut conn = redis.manager().await;
    let broker = Broker::new(conn.clone(), "celery", "test@host");
    // Another program's keys where queue `a`'s processing list and `b`'s priority 3 list go.
    conn.set::<_, _, ()>(keys::processing("a"), "string")
        .await
        .unwrap();
    conn.hset::<_, _, _, ()>(keys::queue_list("b", 3), "f", "v")
        .await
        .unwrap();
    let mut sent = Vec::new();
    for (queue, priority) in [("a", 0), ("a", 3), ("b", 0), ("b", 6), ("b", 9)] {
        let mut m = TaskMessage::new("t", queue, Map::new());
        m.priority = priority;
        broker.publish(&m).await.unwrap();
        sent.push(m.id);
    }
    let claims = broker.claim_from(&names(&["a", "b"]), 10).await.unwrap();
    let mut got: Vec<String> = held(&claims).iter().map(|d| task_id(&d.raw)).collect();
    assert_eq!(claims.len(), 5, "{claims:?}");
    got.sort();
    sent.sort();
    assert_eq!(got, sent);
    assert_eq!(
        conn.get::<_, String>(keys::processing("a")).await.unwrap(),
        "string"
    );
    assert_eq!(
        conn.hget::<_, _, String>(keys::queue_list("b", 3), "f")
            .await
            .unwrap(),
        "v"
    );
    // A hand-back to the list of another type goes to the dead-letter list, not lost.
    let mut m = TaskMessage::new("t", "b", Map::new());
    m.priority = 3;
    let raw = crafted(&m, |_| {});
    conn.lpush::<_, _, ()>("b", &raw).await.unwrap();
    let claims = broker.claim_from(&names(&["b"]), 1).await.unwrap();
    assert!(broker.requeue(held(&claims)[0]).await.unwrap());
    let dead = broker.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].queue.as_deref(), Some("b"));
}

/// Found by the review (fixed): one queue's priority list holding another type of value makes
/// `Broker::stats` fail (`[u64; 8]` of LLENs, common/celery/src/broker/mod.rs `stats`), and
/// `stats_of` (mod.rs `stats_of`, `?` per queue) then fails for every queue: the worker's and the
/// services' `/metrics` export no queue length at all (`export(None)`: `redis_up` 0) and
/// `worker stats` prints nothing, for the healthy queues too. One SET by any producer blinds the
/// autoscaler of every queue a pool serves.
#[tokio::test]
async fn a_foreign_key_in_one_queue_does_not_blind_the_counts_of_the_others() {
    let redis = TestRedis::start();
    let mut conn = redis.manager().await;
    let broker = Broker::new(conn.clone(), "celery", "test@host");
    for _ in 0..3 {
        broker
            .publish(&TaskMessage::new("t", "a", Map::new()))
            .await
            .unwrap();
    }
    conn.set::<_, _, ()>(keys::queue_list("b", 9), "x")
        .await
        .unwrap();
    let counted = broker.stats_of(&["a", "b"]).await;
    let counted = counted.expect("the counts of queue a are lost because of queue b");
    assert_eq!(counted[0].waiting, [3, 0, 0, 0]);
}

/// Found by the review (fixed): a claim that only dead-letters entries of a queue (no delivery tag,
/// not JSON, not UTF-8) does not rotate that queue to the back: `Worker::fetch`
/// (worker/src/worker.rs, `self.rotation.delivered(...)` keeps only `Claim::Message`, and
/// `Claim::DeadLettered` does not even carry its queue). A producer filling one queue with junk
/// keeps it first in every claim, and a real message in the worker's other queue waits until
/// all the junk is drained.
#[tokio::test]
async fn junk_in_one_queue_does_not_starve_the_workers_other_queue() {
    let redis = TestRedis::start();
    let url = redis.url();
    let cfg = worker_cfg(&[
        ("REDIS_URL", &url),
        ("WORKER_QUEUES", "junk,real"),
        ("WORKER_CONCURRENCY", "1"),
    ])
    .unwrap();
    let mut conn = redis.manager().await;
    let junk: Vec<String> = (0..40).map(|i| format!("not json {i}")).collect();
    conn.lpush::<_, _, ()>("junk", &junk).await.unwrap();
    let real = TaskMessage::new("no_such_task", "real", Map::new());
    conn.lpush::<_, _, ()>("real", real.to_json("p@h"))
        .await
        .unwrap();
    let mut w = Worker::build(
        cfg.clone(),
        worker::shop::tasks(&testkit::vars(&[]), &cfg).unwrap(),
        "hostile@routing".into(),
    )
    .unwrap();
    let mut steps = 0;
    loop {
        steps += 1;
        match w.step().await.unwrap() {
            Step::Started(n) if n > 0 => break,
            _ if steps > 60 => panic!("the real message never started"),
            _ => {}
        }
    }
    let left: i64 = conn.llen("junk").await.unwrap();
    assert!(
        steps <= 2,
        "the real message started at step {steps}, after {} junk entries ({left} left)",
        40 - left
    );
}

// ---------------------------------------------------------------------------------------------
// Crafted kombu binding tables, schedules and dead letters

#[tokio::test]
async fn hostile_binding_tables_dead_letter_the_orphan_and_write_no_reserved_key() {
    let redis = TestRedis::start();
    let mut conn = redis.manager().await;
    let broker = Broker::new(conn.clone(), "celery", "test@host");
    let sep = keys::SEP;
    // A list some reserved keys could be tricked into (they must stay as they are).
    conn.rpush::<_, _, ()>(keys::processing("celery"), "sentinel")
        .await
        .unwrap();
    conn.set::<_, _, ()>("_kombu.binding.stringy", "x")
        .await
        .unwrap();
    let huge: Vec<String> = (0..1001).map(|i| format!("rk{i}{sep}{sep}q{i}")).collect();
    conn.sadd::<_, _, ()>("_kombu.binding.huge", &huge)
        .await
        .unwrap();
    for (exchange, members) in [
        ("plain", vec!["rk".to_owned(), format!("rk{sep}")]),
        ("unacked", vec![format!("rk{sep}{sep}unacked")]),
        (
            "fleet",
            vec![format!("rk{sep}{sep}fleet:processing:celery")],
        ),
        ("kombu", vec![format!("rk{sep}{sep}_kombu.binding.celery")]),
        ("empty", vec![format!("rk{sep}{sep}")]),
        ("spaced", vec![format!("rk{sep}{sep}a b")]),
    ] {
        conn.sadd::<_, _, ()>(format!("_kombu.binding.{exchange}"), members)
            .await
            .unwrap();
    }
    let exchanges = [
        "stringy", "huge", "plain", "unacked", "fleet", "kombu", "empty", "spaced", "sh op",
        "sh*op", "none",
    ];
    let mut ids = Vec::new();
    for (i, exchange) in exchanges.iter().enumerate() {
        let msg = TaskMessage::new("t", "orders", Map::new());
        let raw = crafted(&msg, |e| {
            e["properties"]["delivery_info"] = json!({"exchange": exchange, "routing_key": "rk"})
        });
        orphan(&mut conn, &format!("o{i}"), &raw, exchange, "rk").await;
        ids.push(msg.id);
    }
    let restored = broker
        .restore_expired(Visibility::both(Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(restored, exchanges.len());
    assert_eq!(conn.hlen::<_, i64>(keys::UNACKED).await.unwrap(), 0);
    let dead = broker.dead_letters(100).await.unwrap();
    let mut dead_ids: Vec<String> = dead.iter().filter_map(|d| d.task_id.clone()).collect();
    dead_ids.sort();
    ids.sort();
    assert_eq!(dead_ids, ids, "{dead:#?}");
    assert_eq!(
        all_of(&mut conn, &keys::processing("celery")).await,
        ["sentinel"]
    );
    for key in ["_kombu.binding.celery", "a b", "rk", "orders", "celery"] {
        assert!(!conn.exists::<_, bool>(key).await.unwrap(), "{key} written");
    }
}

/// Found by the review (fixed): a member of a kombu binding table that is not UTF-8 makes
/// `bound_queue` fail (common/celery/src/broker/restore.rs, `let members: Vec<String> =
/// SMEMBERS`): the error ends the whole restore pass (`bound_queue(..).await?` in
/// `restore_locked`), and since the oldest lease is listed first again next time, every pass
/// of every worker fails the same way: no orphan of any queue is ever restored again.
#[tokio::test]
async fn a_binding_member_that_is_not_utf8_does_not_stop_every_restore() {
    let redis = TestRedis::start();
    let mut conn = redis.manager().await;
    let broker = Broker::new(conn.clone(), "celery", "test@host");
    let mut member = format!("shop.orders{0}{0}orders", keys::SEP).into_bytes();
    redis::pipe()
        .sadd("_kombu.binding.shop", member.clone())
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    member.extend_from_slice(b"\xff");
    redis::pipe()
        .sadd("_kombu.binding.shop", member)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let from_shop = TaskMessage::new("t", "orders", Map::new());
    let raw = crafted(&from_shop, |e| {
        e["properties"]["delivery_info"] = json!({"exchange": "shop", "routing_key": "shop.orders"})
    });
    orphan(&mut conn, "py-1", &raw, "shop", "shop.orders").await;
    // Another queue's orphan, expired later.
    let plain = TaskMessage::new("t", "celery", Map::new());
    let entry = format!(r#"[{}, "", "celery"]"#, plain.to_json("p@h"));
    redis::pipe()
        .hset(keys::UNACKED, "rs-1", entry)
        .zadd(keys::UNACKED_INDEX, "rs-1", 2_000.0)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let restored = broker
        .restore_expired(Visibility::both(Duration::from_secs(5)))
        .await;
    assert_eq!(
        restored.expect("the restore pass fails on the binding table"),
        2
    );
    assert_eq!(conn.hlen::<_, i64>(keys::UNACKED).await.unwrap(), 0);
    let celery = all_of(&mut conn, "celery").await;
    assert_eq!(celery.len(), 1);
}

/// Found by the review (fixed): an entry of a queue's
/// schedule that is not UTF-8 makes `promote_due` fail (common/celery/src/broker/schedule.rs,
/// `let listed: Vec<String> = DUE...`): it is listed first on every pass, so no eta or retry of
/// that queue is ever promoted again.
#[tokio::test]
async fn a_scheduled_entry_that_is_not_utf8_does_not_stop_its_queues_schedule() {
    let redis = TestRedis::start();
    let mut conn = redis.manager().await;
    let broker = Broker::new(conn.clone(), "celery", "test@host").for_queue("a");
    let due = TaskMessage::new("t", "a", Map::new());
    redis::pipe()
        .zadd(keys::scheduled("a"), b"\xff\xfe".as_slice(), 1.0)
        .zadd(keys::scheduled("a"), due.to_json("p@h"), 2.0)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let promoted = broker.promote_due().await;
    promoted.expect("the schedule of queue a is stuck");
    assert_eq!(conn.llen::<_, i64>("a").await.unwrap(), 1);
    assert_eq!(conn.zcard::<_, i64>(keys::scheduled("a")).await.unwrap(), 0);
}

#[tokio::test]
async fn a_scheduled_entry_of_another_queue_comes_due_in_the_queue_whose_schedule_held_it() {
    let redis = TestRedis::start();
    let mut conn = redis.manager().await;
    let broker = Broker::new(conn.clone(), "celery", "test@host");
    let mut foreign = TaskMessage::new("t", "b", Map::new());
    foreign.priority = 6;
    let raw = crafted(&foreign, |_| {});
    for list in ["unacked", "fleet:x"] {
        let raw = crafted(&foreign, |e| {
            e["properties"]["delivery_info"] = json!({"exchange": "", "routing_key": list})
        });
        conn.zadd::<_, _, _, ()>(keys::scheduled("a"), raw, 1.0)
            .await
            .unwrap();
    }
    conn.zadd::<_, _, _, ()>(keys::scheduled("a"), &raw, 1.0)
        .await
        .unwrap();
    let (moved, _) = broker.for_queue("a").promote_due().await.unwrap();
    assert_eq!(moved, 3);
    assert_eq!(
        conn.llen::<_, i64>(keys::queue_list("a", 6)).await.unwrap(),
        3
    );
    for key in ["b", "b\x06\x166", "fleet:x"] {
        assert!(!conn.exists::<_, bool>(key).await.unwrap(), "{key}");
    }
    assert_eq!(conn.hlen::<_, i64>(keys::UNACKED).await.unwrap(), 0);
}

/// Found by the review (fixed): `requeue-dead` trusts the `queue` a
/// dead-letter entry names as far as `keys::is_key_part` (common/celery/src/broker/dead.rs
/// `requeue_dead`, `.filter(|q| keys::is_key_part(q))`), not `keys::is_queue_name`. Any producer
/// can LPUSH an entry naming `fleet:dead_letter` (the message is then pushed raw into the
/// dead-letter list, where `dead_letters` no longer lists it and trimming drops it) or
/// `fleet:processing:<q>` / `_kombu.binding.<x>`.
#[tokio::test]
async fn requeue_dead_never_pushes_into_a_reserved_key() {
    let redis = TestRedis::start();
    let mut conn = redis.manager().await;
    let broker = Broker::new(conn.clone(), "celery", "test@host");
    let msg = TaskMessage::new("t", "celery", Map::new());
    let mut entry = DeadLetter::about("crafted", msg.to_json("p@h"));
    entry.queue = Some(keys::DEAD_LETTER.to_owned());
    conn.lpush::<_, _, ()>(keys::DEAD_LETTER, serde_json::to_string(&entry).unwrap())
        .await
        .unwrap();
    broker.requeue_dead(0).await.unwrap();
    // Either still listed as a dead letter, or back in a real queue: never invisible.
    let listed = broker.dead_letters(10).await.unwrap();
    let queued = all_of(&mut conn, "celery").await;
    let raw_in_dead_list = all_of(&mut conn, keys::DEAD_LETTER)
        .await
        .iter()
        .any(|e| serde_json::from_str::<DeadLetter>(e).is_err());
    assert!(
        !raw_in_dead_list && listed.len() + queued.len() == 1,
        "listed {listed:?}, queued {queued:?}, raw message pushed into the dead-letter list: {raw_in_dead_list}"
    );
}

// ---------------------------------------------------------------------------------------------
// Many queues, idle waits, shutdown

/// The idle worker's waits on many queues at shutdown: messages pushed while the worker stops
/// are each either still in their queue or run, exactly once; no processing list keeps any.
#[tokio::test]
async fn messages_pushed_while_a_many_queue_worker_stops_are_neither_lost_nor_stuck() {
    let queues: Vec<String> = (0..8).map(|i| format!("q{i}")).collect();
    for delay_ms in [0u64, 300, 900] {
        let w = crate::support::start(&[
            ("WORKER_QUEUES", queues.join(",").as_str()),
            ("WORKER_SHUTDOWN_TIMEOUT_SECS", "5"),
        ])
        .await;
        let mut conn = w.conn.clone();
        // Idle: every queue has a blocking wait in flight.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        w.trigger.fire();
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        let mut ids = Vec::new();
        for q in &queues {
            let m = TaskMessage::new("no_such_task", q, Map::new());
            w.broker.publish(&m).await.unwrap();
            ids.push((q.clone(), m.id));
        }
        w.handle.await.unwrap().unwrap();
        for q in &queues {
            let stuck: i64 = conn.llen(keys::processing(q)).await.unwrap();
            assert_eq!(stuck, 0, "delay {delay_ms}: processing list of {q}");
        }
        assert_eq!(conn.hlen::<_, i64>(keys::UNACKED).await.unwrap(), 0);
        for (q, id) in &ids {
            let queued: Vec<String> = conn.lrange(q, 0, -1).await.unwrap();
            let in_queue = queued.iter().filter(|r| task_id(r) == *id).count();
            let ran: bool = conn.exists(keys::task_meta(id)).await.unwrap();
            assert_eq!(
                in_queue + usize::from(ran),
                1,
                "delay {delay_ms}: {id} of {q}: queued {in_queue}, ran {ran}"
            );
        }
    }
}

/// 64 queues (the most allowed): a message on the last one runs promptly; the connections one
/// idle worker holds grow by one per queue and no more.
#[tokio::test]
async fn a_worker_on_64_queues_serves_the_last_and_holds_one_wait_connection_per_queue() {
    let queues: Vec<String> = (0..MAX_ENTRIES).map(|i| format!("q{i}")).collect();
    let w = crate::support::start(&[("WORKER_QUEUES", queues.join(",").as_str())]).await;
    let mut conn = w.conn.clone();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let last = TaskMessage::new("no_such_task", "q63", Map::new());
    let started = Instant::now();
    w.broker.publish(&last).await.unwrap();
    let meta = w.result(&last.id).await;
    assert!(meta.status.is_ready());
    let took = started.elapsed();
    let clients: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut conn)
        .await
        .unwrap();
    let connected = clients.lines().count();
    eprintln!("64 queues: the last served in {took:?}; {connected} client connections");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(connected <= MAX_ENTRIES + 16, "{connected} connections");
    w.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Hand-back and restore with several queues

/// Deliveries of two queues still running when the grace period ends (each with a routing key
/// naming the other queue, and two sharing one tag) are handed back, each to its own queue,
/// once; a second worker then runs each exactly once.
#[tokio::test]
async fn held_deliveries_of_several_queues_go_back_to_their_own_queues_once_at_shutdown() {
    let (port, accepted) = crate::support::shop::counting_listener().await;
    let url = format!("http://127.0.0.1:{port}/hook");
    let w = crate::support::start(&[
        ("WORKER_QUEUES", "a,b"),
        ("WORKER_SHUTDOWN_TIMEOUT_SECS", "1"),
        ("WEBHOOK_TIMEOUT_MS", "60000"),
        // All four run at once (by default webhooks take half the slots).
        ("WEBHOOK_CONCURRENCY", "4"),
    ])
    .await;
    let mut conn = w.conn.clone();
    let mut sent: Vec<(&str, String)> = Vec::new();
    for (i, (queue, other)) in [("a", "b"), ("a", "b"), ("b", "a"), ("b", "a")]
        .into_iter()
        .enumerate()
    {
        let note = json!({"notification_id": format!("n-{i}"), "recipient": "ada@example.com",
                          "channel": "webhook", "subject": "s", "body": "b", "url": url});
        let msg = TaskMessage::new(
            "send_notification",
            queue,
            note.as_object().cloned().unwrap(),
        );
        let raw = crafted(&msg, |e| {
            e["properties"]["delivery_info"] = json!({"exchange": "", "routing_key": other});
            if i % 2 == 0 {
                e["properties"]["delivery_tag"] = json!("shared");
            }
        });
        conn.lpush::<_, _, ()>(queue, raw).await.unwrap();
        sent.push((queue, msg.id));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while accepted.load(std::sync::atomic::Ordering::SeqCst) < 4 {
        assert!(
            Instant::now() < deadline,
            "the four tasks never all started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(conn.hlen::<_, i64>(keys::UNACKED).await.unwrap(), 4);
    w.trigger.fire();
    w.handle.await.unwrap().unwrap();
    assert_eq!(conn.hlen::<_, i64>(keys::UNACKED).await.unwrap(), 0);
    for queue in ["a", "b"] {
        let mut back: Vec<String> = all_of(&mut conn, queue)
            .await
            .iter()
            .map(|r| task_id(r))
            .collect();
        back.sort();
        let mut want: Vec<String> = sent
            .iter()
            .filter(|(q, _)| *q == queue)
            .map(|(_, id)| id.clone())
            .collect();
        want.sort();
        assert_eq!(back, want, "queue {queue}");
        assert_eq!(
            conn.llen::<_, i64>(keys::processing(queue)).await.unwrap(),
            0
        );
    }
    // None finished (at most STARTED): each runs again, exactly once, on the next worker.
    for (_, id) in &sent {
        let meta = w.results.get(id).await.unwrap();
        assert!(!meta.status.is_ready(), "{id}: {meta:?}");
    }
}

/// Found by this review (fixed): the claim script found a delivery tag in an entry that is not
/// JSON (a plain text search) and recorded it in `unacked`, where it was not a kombu triple
/// either; the restore left such entries in place, listed again first on every pass, so 100 of
/// them (`EXPIRED` lists the oldest 100) stopped every later orphan of every queue from ever
/// being restored. Now the claim dead-letters what is not shaped like one JSON object, and the
/// restore dead-letters any `unacked` entry it cannot read.
#[tokio::test]
async fn entries_the_restore_cannot_read_do_not_block_every_later_orphan() {
    let redis = TestRedis::start();
    let mut conn = redis.manager().await;
    let broker = Broker::new(conn.clone(), "celery", "test@host");
    // Messages any producer can push to a routed queue: a tag, and not one JSON value.
    let junk: Vec<String> = (0..100)
        .map(|i| format!(r#"{{"properties": {{"delivery_info": {{}}, "delivery_tag": "j{i}"}}}}]"#))
        .collect();
    conn.lpush::<_, _, ()>("a", &junk).await.unwrap();
    // The claim itself dead-letters an entry not shaped like one JSON object...
    let claims = broker.claim_from(&names(&["a"]), 100).await.unwrap();
    assert_eq!(claims.len(), 100);
    assert!(claims
        .iter()
        .all(|c| matches!(c, Claim::DeadLettered { queue, .. } if queue == "a")));
    // ... but another writer (an older worker, another program) can leave such entries in
    // `unacked`, as a worker that died holding them.
    for (i, raw) in junk.iter().enumerate() {
        let tag = format!("j{i}");
        conn.hset::<_, _, _, ()>(keys::UNACKED, &tag, format!(r#"[{raw}, "", "a"]"#))
            .await
            .unwrap();
        conn.zadd::<_, _, _, ()>(keys::UNACKED_INDEX, &tag, 1_000.0)
            .await
            .unwrap();
    }
    // A real message of queue b, taken later by a worker that dies too.
    let real = TaskMessage::new("t", "b", Map::new());
    broker.publish(&real).await.unwrap();
    assert_eq!(
        held(&broker.claim_from(&names(&["b"]), 1).await.unwrap()).len(),
        1
    );
    redis.age_leases(keys::UNACKED_INDEX, 60.0).await;
    for _ in 0..3 {
        broker
            .restore_expired(Visibility::both(Duration::ZERO))
            .await
            .unwrap();
    }
    let back = all_of(&mut conn, "b").await;
    let left: i64 = conn.hlen(keys::UNACKED).await.unwrap();
    assert_eq!(
        (back.len(), left),
        (1, 0),
        "the real orphan is restored and the junk dead-lettered"
    );
}

/// Orphans whose recorded routing key is hostile (unicode, huge, another queue's priority list,
/// a reserved key) are dead-lettered; one with neither routing key nor `delivery_info` goes to
/// the default queue. Nothing is pushed anywhere else.
#[tokio::test]
async fn orphans_with_hostile_routing_keys_are_dead_lettered_and_none_is_lost() {
    let redis = TestRedis::start();
    let mut conn = redis.manager().await;
    let broker = Broker::new(conn.clone(), "celery", "test@host");
    let huge = "q".repeat(100_000);
    let keys_named = [
        "ördres",
        huge.as_str(),
        "a\x06\x163",
        "unacked",
        "fleet:processing:a",
        "_kombu.binding.celery",
        "a b",
        "*",
    ];
    let mut dead_ids = Vec::new();
    for (i, rk) in keys_named.iter().enumerate() {
        let msg = TaskMessage::new("t", "a", Map::new());
        let raw = crafted(&msg, |e| {
            e["properties"]["delivery_info"] = json!({"exchange": "", "routing_key": rk})
        });
        orphan(&mut conn, &format!("h{i}"), &raw, "", rk).await;
        dead_ids.push(msg.id);
    }
    let bare = TaskMessage::new("t", "a", Map::new());
    let raw = crafted(&bare, |e| {
        e["properties"]
            .as_object_mut()
            .unwrap()
            .remove("delivery_info");
    });
    orphan(&mut conn, "bare", &raw, "", "").await;

    let restored = broker
        .restore_expired(Visibility::both(Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(restored, keys_named.len() + 1);
    assert_eq!(conn.hlen::<_, i64>(keys::UNACKED).await.unwrap(), 0);
    let mut dead: Vec<String> = broker
        .dead_letters(100)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|d| d.task_id)
        .collect();
    dead.sort();
    dead_ids.sort();
    assert_eq!(dead, dead_ids);
    let celery = all_of(&mut conn, "celery").await;
    assert_eq!(
        celery.iter().map(|r| task_id(r)).collect::<Vec<_>>(),
        [bare.id]
    );
    // No other key was written (the mutex may still be there for a moment).
    let every: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    let allowed = ["celery", keys::DEAD_LETTER, keys::UNACKED_MUTEX];
    assert!(
        every.iter().all(|k| allowed.contains(&k.as_str())),
        "{every:?}"
    );
}
