//! kombu's transport options that name keys (`priority_steps`, `sep`, `global_keyprefix`) and
//! order queues (`queue_order_strategy`), against a real redis-server: where producers put a
//! message, the order claims take them, restores, the counts, and lists of a queue in another
//! layout reported rather than left unread.

use celery_redis::broker::Visibility;
use std::time::Duration;

use celery_redis::broker::{Broker, DeadLetter, Foreign, Rotation};
use celery_redis::keys::{self, Layout, QueueOrder};
use celery_redis::protocol::TaskMessage;
use redis::AsyncCommands;
use serde_json::Map;
use testkit::TestRedis;

mod common;
use common::{held, id_of};

/// Celery's documented Redis priority setup: every step, `:` between queue and step.
fn ten_steps() -> Layout {
    Layout::new(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], ":", "").unwrap()
}

fn task(queue: &str, priority: i64) -> TaskMessage {
    let mut m = TaskMessage::new("process_order", queue, Map::new());
    m.priority = priority;
    m
}

async fn len(conn: &mut celery_redis::conn::Conn, key: &str) -> i64 {
    conn.llen(key).await.unwrap()
}

/// Marks every held delivery's lease as long expired (as a dead worker's).
async fn expire_leases(conn: &mut celery_redis::conn::Conn, index: &str) {
    let tags: Vec<String> = conn.zrange(index, 0, -1).await.unwrap();
    for tag in tags {
        conn.zadd::<_, _, _, ()>(index, tag, 1_000.0).await.unwrap();
    }
}

/// Found in the field (issue 20): with Celery's priority setup, Python producers put priorities
/// 1, 5 and 9 into `celery:1`, `celery:5`, `celery:9`, which a worker of kombu's default layout
/// never reads (it claimed from `celery\x06\x163`...). Under the fleet's layout a message goes
/// where kombu puts it, is claimed in kombu's order (0 first), and a restore puts it back on
/// `_q_for_pri(queue, priority)`.
#[tokio::test]
async fn the_ten_step_layout_puts_priority_5_in_celery_5_and_claims_in_kombus_order() {
    let redis = TestRedis::start();
    let mut conn = redis.manager().await;
    let broker = Broker::new(conn.clone(), "celery", "test@host").with_layout(ten_steps());
    let msgs: Vec<TaskMessage> = [9, 5, 1, 0].iter().map(|&p| task("celery", p)).collect();
    broker.publish(&msgs[0]).await.unwrap();
    broker.publish_many(&msgs[1..3]).await.unwrap();
    broker.publish_once("key:p0", &msgs[3]).await.unwrap();
    for key in ["celery", "celery:1", "celery:5", "celery:9"] {
        assert_eq!(len(&mut conn, key).await, 1, "{key}");
    }
    assert!(!conn.exists::<_, bool>("celery\x06\x163").await.unwrap());

    let got = held(broker.claim_many(10).await.unwrap());
    let ids: Vec<String> = got.iter().map(id_of).collect();
    let want: Vec<String> = [3, 2, 1, 0].iter().map(|&i| msgs[i].id.clone()).collect();
    assert_eq!(ids, want, "priority 0, 1, 5, 9");

    // A dead worker's priority-5 delivery goes back to celery:5 (kombu's restore).
    expire_leases(&mut conn, keys::UNACKED_INDEX).await;
    let restored = broker
        .restore_expired(Visibility::both(Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(restored, 4);
    let back: String = conn.lindex("celery:5", 0).await.unwrap();
    assert!(back.contains(&msgs[1].id), "{back}");
    // Hand-back and eta promotion too.
    let again = held(broker.claim_many(10).await.unwrap());
    assert!(broker.requeue(&again[2]).await.unwrap());
    assert_eq!(len(&mut conn, "celery:5").await, 1);
    assert!(broker.schedule(&again[3], 1.0).await.unwrap());
    broker.promote_due().await.unwrap();
    assert_eq!(len(&mut conn, "celery:9").await, 1);
}

/// `worker stats` and the metrics count a queue over every step of the layout.
#[tokio::test]
async fn stats_and_metrics_count_every_step_of_the_layout() {
    let redis = TestRedis::start();
    let conn = redis.manager().await;
    let broker = Broker::new(conn.clone(), "celery", "test@host").with_layout(ten_steps());
    let msgs: Vec<TaskMessage> = [1, 5, 5, 9].iter().map(|&p| task("celery", p)).collect();
    broker.publish_many(&msgs).await.unwrap();
    let stats = broker.stats().await.unwrap();
    assert_eq!(stats.steps, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert_eq!(stats.waiting, [0, 1, 0, 0, 0, 2, 0, 0, 0, 1]);
    assert!(stats.foreign.is_empty(), "{:?}", stats.foreign);
    assert_eq!(broker.depth().await.unwrap(), 4);
    let metrics = observe::metrics::Metrics::new();
    celery_redis::broker::export(&metrics.fleet, Some(vec![stats]));
    let text = metrics.encode();
    assert!(
        text.contains("celery_queue_length{queue_name=\"celery\"} 4"),
        "{text}"
    );
    assert!(
        text.contains("fleet_queue_foreign_keys{queue_name=\"celery\"} 0"),
        "{text}"
    );
}

/// Lists of a consumed queue in another layout (here: a Python producer with Celery's priority
/// setup, and one with the default steps but other priorities) are counted, named and warned
/// of, not ignored; a key of another type under such a name is not a queue and is not reported.
#[tokio::test]
async fn lists_in_another_layout_are_reported() {
    let redis = TestRedis::start();
    let mut conn = redis.manager().await;
    let default = Broker::new(conn.clone(), "celery", "test@host");
    let python = Broker::new(conn.clone(), "celery", "py@host").with_layout(ten_steps());
    python
        .publish_many(&[task("celery", 5), task("celery", 5), task("celery", 1)])
        .await
        .unwrap();
    conn.set::<_, _, ()>("celery\x06\x167", "not a queue")
        .await
        .unwrap();
    conn.lpush::<_, _, ()>("celery\x06\x161", "x")
        .await
        .unwrap();
    let stats = default.stats().await.unwrap();
    let foreign = |key: &str, waiting| Foreign {
        key: key.into(),
        waiting,
    };
    assert_eq!(
        stats.foreign,
        [
            foreign("celery\\x06\\x161", 1),
            foreign("celery:1", 1),
            foreign("celery:5", 2)
        ]
    );
    assert_eq!(
        stats.waiting,
        [0, 0, 0, 0],
        "nothing in kombu's default lists"
    );
    assert_eq!(default.warn_foreign(&["celery"]).await, 3);
    let metrics = observe::metrics::Metrics::new();
    celery_redis::broker::export(&metrics.fleet, Some(vec![stats.clone()]));
    assert!(metrics
        .encode()
        .contains("fleet_queue_foreign_keys{queue_name=\"celery\"} 3"));
    // `worker stats` prints it as JSON, keys readable.
    let json = serde_json::to_value(&stats).unwrap();
    assert_eq!(json["foreign"][2]["key"], "celery:5");
    // From the ten-step layout, the default one's lists are the foreign ones.
    let from_ten = python.stats().await.unwrap();
    assert_eq!(from_ten.foreign, [foreign("celery\\x06\\x161", 1)]);
    // With a prefix, the same queue without it is another fleet's (or a producer without it).
    let prefixed = Layout::new(&[0, 3, 6, 9], keys::SEP, "app:").unwrap();
    conn.lpush::<_, _, ()>("celery", "x").await.unwrap();
    let with_prefix = default.clone().with_layout(prefixed).stats().await.unwrap();
    let keys: Vec<&str> = with_prefix.foreign.iter().map(|f| f.key.as_str()).collect();
    assert_eq!(
        keys,
        ["celery", "celery\\x06\\x161", "celery:1", "celery:5"]
    );
}

/// kombu's `global_keyprefix` (its `PrefixedStrictRedis`): every kombu key and every broker key
/// of this project carries the prefix, while the values (`unacked` entries, binding members)
/// name queues bare. After publishing, claiming, scheduling, restoring and dead-lettering, no
/// key without the prefix exists.
#[tokio::test]
async fn the_global_prefix_goes_in_front_of_every_broker_key() {
    let redis = TestRedis::start();
    let mut conn = redis.manager().await;
    let layout = Layout::new(&[0, 3, 6, 9], keys::SEP, "app:").unwrap();
    let broker = Broker::new(conn.clone(), "celery", "test@host").with_layout(layout);
    let msgs: Vec<TaskMessage> = [0, 5, 9].iter().map(|&p| task("celery", p)).collect();
    broker.publish_many(&msgs).await.unwrap();
    assert_eq!(len(&mut conn, "app:celery").await, 1);
    assert_eq!(len(&mut conn, "app:celery\x06\x163").await, 1);

    let got = held(broker.claim_many(10).await.unwrap());
    assert_eq!(got.len(), 3);
    let entry: String = conn.hget("app:unacked", &got[1].tag).await.unwrap();
    assert!(entry.ends_with(r#", "", "celery"]"#), "{entry}");
    assert!(broker.schedule(&got[0], 1.0e12).await.unwrap());
    assert_eq!(
        conn.zcard::<_, i64>("app:fleet:scheduled:celery")
            .await
            .unwrap(),
        1
    );
    let dead = DeadLetter::about("test", &got[1].raw).in_queue("celery");
    assert!(broker.dead_letter(&got[1], &dead).await.unwrap());
    expire_leases(&mut conn, "app:unacked_index").await;
    assert_eq!(
        broker
            .restore_expired(Visibility::both(Duration::from_secs(5)))
            .await
            .unwrap(),
        1
    );
    assert_eq!(len(&mut conn, "app:celery\x06\x169").await, 1);
    assert_eq!(broker.requeue_dead(0).await.unwrap(), 1);
    assert_eq!(len(&mut conn, "app:celery").await, 1);
    let stats = broker.stats().await.unwrap();
    assert_eq!((stats.waiting, stats.scheduled), (vec![1, 0, 0, 1], 1));
    // A rollback's return-scheduled puts the parked one back on its prefixed list too.
    assert_eq!(broker.return_scheduled().await.unwrap(), 1);
    assert_eq!(len(&mut conn, "app:celery").await, 2);

    let all: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!all.is_empty());
    for key in &all {
        assert!(
            key.starts_with("app:"),
            "{key:?} has no prefix (all: {all:?})"
        );
    }
}

/// kombu's `queue_order_strategy`: `round_robin` moves a queue that delivered to the back;
/// `priority` keeps the configured order and `sorted` the alphabetical one, whatever delivered.
/// Within each priority step every queue still comes before the next step of any.
#[tokio::test]
async fn queue_order_strategies_are_kombus() {
    let names = |v: &[&str]| v.iter().map(|q| q.to_string()).collect::<Vec<_>>();
    let mut rr = Rotation::ordered(names(&["b", "a", "c"]), QueueOrder::RoundRobin);
    rr.delivered(["b"]);
    assert_eq!(rr.order(), ["a", "c", "b"]);
    let mut fixed = Rotation::ordered(names(&["b", "a", "c"]), QueueOrder::Priority);
    fixed.delivered(["b"]);
    assert_eq!(fixed.order(), ["b", "a", "c"]);
    let mut sorted = Rotation::ordered(names(&["b", "a", "c"]), QueueOrder::Sorted);
    sorted.delivered(["a"]);
    assert_eq!(sorted.order(), ["a", "b", "c"]);

    let redis = TestRedis::start();
    let conn = redis.manager().await;
    let broker = Broker::new(conn.clone(), "celery", "test@host").with_layout(ten_steps());
    let (a1, b0, b1) = (task("a", 1), task("b", 0), task("b", 1));
    broker
        .publish_many(&[a1.clone(), b0.clone(), b1.clone()])
        .await
        .unwrap();
    let got = held(broker.claim_from(sorted.order(), 10).await.unwrap());
    let ids: Vec<String> = got.iter().map(id_of).collect();
    assert_eq!(ids, [b0.id, a1.id, b1.id]);
}
