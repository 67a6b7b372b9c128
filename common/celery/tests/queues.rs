//! Several queues against a real redis-server: routing by task name, claims across queues in
//! kombu's order with no queue starved, and each delivery's retries, eta and hand-back kept in
//! its own queue.

use celery_redis::broker::Visibility;
use std::time::Duration;

use celery_redis::broker::{Broker, Rotation, Submitted};
use celery_redis::keys;
use celery_redis::protocol::TaskMessage;
use celery_redis::routes::Routes;
use redis::AsyncCommands;
use serde_json::Map;
use testkit::TestRedis;

mod common;
use common::{held, id_of};

fn task(name: &str, queue: &str, priority: i64) -> TaskMessage {
    let mut m = TaskMessage::new(name, queue, Map::new());
    m.priority = priority;
    m
}

fn queues(names: &[&str]) -> Vec<String> {
    names.iter().map(|q| q.to_string()).collect()
}

#[tokio::test]
async fn producers_route_by_task_name_and_the_rest_goes_to_the_default_queue() {
    let redis = TestRedis::start();
    let mut conn = redis.manager().await;
    let routes = Routes::parse("process_order=orders,send_*=notifications", "celery").unwrap();
    let broker = Broker::new(conn.clone(), "celery", "test@host").with_routes(routes);
    for name in ["process_order", "send_notification", "other"] {
        let msg = task(name, broker.route(name), 0);
        broker
            .publish_once(&format!("key:{name}"), &msg)
            .await
            .unwrap();
    }
    for q in ["orders", "notifications", "celery"] {
        assert_eq!(conn.llen::<_, i64>(q).await.unwrap(), 1, "{q}");
    }
}

#[tokio::test]
async fn one_claim_serves_priorities_across_queues_then_rotates_the_queue_that_delivered() {
    let redis = TestRedis::start();
    let conn = redis.manager().await;
    let broker = Broker::new(conn.clone(), "celery", "test@host");
    let a9 = task("t", "a", 9);
    let a0 = task("t", "a", 0);
    let b0 = task("t", "b", 0);
    let b3 = task("t", "b", 3);
    broker
        .publish_many(&[a9.clone(), a0.clone(), b3.clone(), b0.clone()])
        .await
        .unwrap();

    // kombu's BRPOP key order: priority 0 of every queue, then 3 of every queue, and so on.
    let got = held(broker.claim_from(&queues(&["a", "b"]), 10).await.unwrap());
    let ids: Vec<String> = got.iter().map(id_of).collect();
    assert_eq!(ids, [a0.id, b0.id, b3.id, a9.id]);
    let from: Vec<&str> = got.iter().map(|d| d.queue.as_str()).collect();
    assert_eq!(from, ["a", "b", "b", "a"]);

    let mut rotation = Rotation::new(queues(&["a", "b", "c"]));
    rotation.delivered(["a"]);
    assert_eq!(rotation.order(), ["b", "c", "a"]);
    rotation.delivered(["c", "b"]);
    assert_eq!(rotation.order(), ["a", "b", "c"]);
}

#[tokio::test]
async fn a_busy_queue_does_not_starve_another() {
    let redis = TestRedis::start();
    let conn = redis.manager().await;
    let broker = Broker::new(conn.clone(), "celery", "test@host");
    let bulk: Vec<TaskMessage> = (0..50).map(|_| task("t", "bulk", 0)).collect();
    broker.publish_many(&bulk).await.unwrap();
    let urgent = task("t", "urgent", 0);
    broker.publish(&urgent).await.unwrap();

    // One slot at a time, as a worker with concurrency 1 claims.
    let mut rotation = Rotation::new(queues(&["bulk", "urgent"]));
    let mut served = Vec::new();
    for _ in 0..3 {
        let got = held(broker.claim_from(rotation.order(), 1).await.unwrap());
        rotation.delivered(got.iter().map(|d| d.queue.as_str()));
        served.extend(got);
    }
    let order: Vec<&str> = served.iter().map(|d| d.queue.as_str()).collect();
    assert_eq!(order, ["bulk", "urgent", "bulk"]);
    assert_eq!(id_of(&served[1]), urgent.id);
}

#[tokio::test]
async fn retries_and_eta_wait_in_the_schedule_of_their_own_queue() {
    let redis = TestRedis::start();
    let mut conn = redis.manager().await;
    let broker = Broker::new(conn.clone(), "celery", "test@host");
    broker
        .publish(&task("t", "notifications", 0))
        .await
        .unwrap();
    broker
        .publish(&task("t", "notifications", 0))
        .await
        .unwrap();
    let got = held(
        broker
            .claim_from(&queues(&["orders", "notifications"]), 2)
            .await
            .unwrap(),
    );
    assert!(got.iter().all(|d| d.queue == "notifications"));

    // One parked for later, one retried: both in the notifications schedule only.
    assert!(broker.schedule(&got[0], 1.0).await.unwrap());
    assert!(broker
        .retry(&got[1], &got[1].raw, Duration::ZERO)
        .await
        .unwrap());
    assert_eq!(
        conn.zcard::<_, i64>(keys::scheduled("notifications"))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        conn.zcard::<_, i64>(keys::scheduled("celery"))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        conn.zcard::<_, i64>(keys::scheduled("orders"))
            .await
            .unwrap(),
        0
    );

    // That queue's scheduler promotes them back to it (due by the server's clock).
    let (moved, _) = broker
        .for_queue("notifications")
        .promote_due()
        .await
        .unwrap();
    assert_eq!(moved, 2);
    assert_eq!(conn.llen::<_, i64>("notifications").await.unwrap(), 2);
}

#[tokio::test]
async fn a_handed_back_delivery_returns_to_its_own_queue() {
    let redis = TestRedis::start();
    let mut conn = redis.manager().await;
    let broker = Broker::new(conn.clone(), "celery", "test@host");
    broker.publish(&task("t", "orders", 0)).await.unwrap();
    let got = held(broker.claim_from(&queues(&["orders"]), 1).await.unwrap());
    assert!(broker.requeue(&got[0]).await.unwrap());
    assert_eq!(conn.llen::<_, i64>("orders").await.unwrap(), 1);
    assert_eq!(conn.llen::<_, i64>("celery").await.unwrap(), 0);

    // Stats per queue: each counts its own lists.
    let stats = broker.stats_of(&["orders", "celery"]).await.unwrap();
    assert_eq!(
        (stats[0].queue.as_str(), stats[0].waiting[0]),
        ("orders", 1)
    );
    assert_eq!(
        (stats[1].queue.as_str(), stats[1].waiting[0]),
        ("celery", 0)
    );
}

#[tokio::test]
async fn an_entry_without_a_routing_key_is_recorded_under_the_queue_it_came_from() {
    let redis = TestRedis::start();
    let mut conn = redis.manager().await;
    let broker = Broker::new(conn.clone(), "celery", "test@host");
    let msg = task("t", "orders", 0);
    let mut env: serde_json::Value = serde_json::from_str(&msg.to_json("test@host")).unwrap();
    env["properties"]["delivery_info"]
        .as_object_mut()
        .unwrap()
        .remove("routing_key");
    conn.lpush::<_, _, ()>("orders", env.to_string())
        .await
        .unwrap();
    let got = held(
        broker
            .claim_from(&queues(&["celery", "orders"]), 1)
            .await
            .unwrap(),
    );
    assert_eq!(got[0].queue, "orders");
    let stored: String = conn.hget(keys::UNACKED, &got[0].tag).await.unwrap();
    let triple: (serde_json::Value, String, String) = serde_json::from_str(&stored).unwrap();
    assert_eq!(triple.2, "orders", "kombu restores it to that queue");
}

#[tokio::test]
async fn backpressure_counts_the_queue_a_task_is_routed_to() {
    let redis = TestRedis::start();
    let conn = redis.manager().await;
    let routes = Routes::parse("process_order=orders", "celery").unwrap();
    let broker = Broker::new(conn.clone(), "celery", "test@host")
        .with_routes(routes)
        .with_max_depth(1);
    let send = |key: &'static str, name: &'static str| {
        let broker = broker.clone();
        async move {
            let msg = task(name, broker.route(name), 0);
            broker.publish_once(key, &msg).await.unwrap()
        }
    };
    assert!(matches!(
        send("k1", "process_order").await,
        Submitted::Created(_)
    ));
    assert_eq!(send("k2", "process_order").await, Submitted::QueueFull(1));
    // A full `orders` queue does not hold back what goes elsewhere.
    assert!(matches!(send("k3", "other").await, Submitted::Created(_)));
}

/// A message as a Python producer publishes it to a named exchange: kombu delivered it into
/// `orders` through the binding `shop.orders -> orders`, and its routing key is the exchange's.
fn published_to_exchange() -> (TaskMessage, String) {
    let msg = task("t", "orders", 0);
    let mut env: serde_json::Value = serde_json::from_str(&msg.to_json("py@host")).unwrap();
    env["properties"]["delivery_info"] =
        serde_json::json!({"exchange": "shop", "routing_key": "shop.orders"});
    (msg, env.to_string())
}

#[tokio::test]
async fn a_message_from_a_named_exchange_goes_back_to_the_queue_it_was_taken_from() {
    let redis = TestRedis::start();
    let mut conn = redis.manager().await;
    let broker = Broker::new(conn.clone(), "celery", "test@host");
    let (_, raw) = published_to_exchange();
    conn.lpush::<_, _, ()>("orders", &raw).await.unwrap();
    let orders = queues(&["orders"]);

    // Recorded under the queue it came from, so any worker's restore (kombu's too) returns it.
    let got = held(broker.claim_from(&orders, 1).await.unwrap());
    let stored: String = conn.hget(keys::UNACKED, &got[0].tag).await.unwrap();
    let triple: (serde_json::Value, String, String) = serde_json::from_str(&stored).unwrap();
    assert_eq!((triple.1.as_str(), triple.2.as_str()), ("", "orders"));

    // Handed back: to `orders`, not to a list named after the routing key.
    assert!(broker.requeue(&got[0]).await.unwrap());
    assert_eq!(conn.llen::<_, i64>("orders").await.unwrap(), 1);

    // Parked for its eta, then due: to `orders` too.
    let got = held(broker.claim_from(&orders, 1).await.unwrap());
    assert!(broker.schedule(&got[0], 1.0).await.unwrap());
    broker.for_queue("orders").promote_due().await.unwrap();
    assert_eq!(conn.llen::<_, i64>("orders").await.unwrap(), 1);
    assert!(!conn.exists::<_, bool>("shop.orders").await.unwrap());
}

#[tokio::test]
async fn a_kombu_entry_for_a_named_exchange_is_restored_through_its_binding_or_dead_lettered() {
    let redis = TestRedis::start();
    let mut conn = redis.manager().await;
    let broker = Broker::new(conn.clone(), "celery", "test@host");
    let (first, raw) = published_to_exchange();
    let (second, raw2) = published_to_exchange();
    // As a Python worker records what it took: the producer's exchange and routing key.
    for (tag, raw) in [("t1", &raw), ("t2", &raw2)] {
        let entry = format!(r#"[{raw}, "shop", "shop.orders"]"#);
        conn.hset::<_, _, _, ()>(keys::UNACKED, tag, entry)
            .await
            .unwrap();
        conn.zadd::<_, _, _, ()>(keys::UNACKED_INDEX, tag, 1_000.0)
            .await
            .unwrap();
    }
    // kombu's binding table of the exchange: `routing_key SEP pattern SEP queue`.
    let binding = format!("shop.orders{0}{0}orders", keys::SEP);
    conn.sadd::<_, _, ()>("_kombu.binding.shop", &binding)
        .await
        .unwrap();
    conn.sadd::<_, _, ()>("_kombu.binding.shop", format!("other{0}{0}x", keys::SEP))
        .await
        .unwrap();

    // The first restore finds the binding; then the binding is gone and the second entry,
    // unroutable, is dead-lettered rather than pushed to a list nobody reads.
    conn.hdel::<_, _, ()>(keys::UNACKED, "t2").await.unwrap();
    conn.zrem::<_, _, ()>(keys::UNACKED_INDEX, "t2")
        .await
        .unwrap();
    assert_eq!(
        broker
            .restore_expired(Visibility::both(Duration::from_secs(5)))
            .await
            .unwrap(),
        1
    );
    let back: String = conn.lindex("orders", 0).await.unwrap();
    assert!(back.contains(&first.id));

    conn.del::<_, ()>("_kombu.binding.shop").await.unwrap();
    let entry = format!(r#"[{raw2}, "shop", "shop.orders"]"#);
    conn.hset::<_, _, _, ()>(keys::UNACKED, "t2", entry)
        .await
        .unwrap();
    conn.zadd::<_, _, _, ()>(keys::UNACKED_INDEX, "t2", 1_000.0)
        .await
        .unwrap();
    assert_eq!(
        broker
            .restore_expired(Visibility::both(Duration::from_secs(5)))
            .await
            .unwrap(),
        1
    );
    let dead = broker.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert!(dead[0].raw.contains(&second.id));
    assert!(dead[0].reason.contains("shop"), "{}", dead[0].reason);
    assert_eq!(conn.llen::<_, i64>("orders").await.unwrap(), 1);
    assert!(!conn.exists::<_, bool>("shop.orders").await.unwrap());
}
