//! Remote control and events of a worker in-process against a private redis-server, driven
//! by this crate's own pidbox client (`celery_redis::control::client`, what `celery inspect`
//! does) and a pub/sub listener. The same commands from the real Celery CLI and Flower are in
//! `celery_tools.rs`.

use std::time::Duration;

use super::{as_map, ask, ask_node, bare, named, order, NODE, SHORT};
use crate::support::shop::{fixtures, webhook_note};
use crate::support::{Handle, Running, WAIT};
use celery_redis::broker::Broker;
use celery_redis::conn::Conn;
use celery_redis::control::client::{call, Target};
use celery_redis::control::Lamport;
use celery_redis::keys;
use celery_redis::protocol::{Fanout, TaskMessage};
use celery_redis::result::TaskState;
use celery_redis::shutdown::Trigger;
use futures_util::StreamExt;
use redis::AsyncCommands;
use serde_json::{json, Map};
use testkit::TestRedis;

/// A worker named [`NODE`] on `url`, plus `extra` variables.
fn spawn_worker(url: &str, extra: &[(&str, &str)]) -> (Trigger, Handle) {
    let mut env = vec![
        ("WORKER_NAME", NODE),
        ("WORKER_CONCURRENCY", "4"),
        ("WEBHOOK_ALLOW", "127.0.0.1"),
    ];
    env.extend_from_slice(extra);
    crate::support::spawn(url, &env)
}

/// A loopback webhook that accepts requests and never answers: a task posting to it runs
/// until stopped. The receiver says when the first request arrived.
async fn hanging_webhook() -> (String, tokio::sync::oneshot::Receiver<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, arrived) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut tx = Some(tx);
        let mut held = Vec::new();
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            held.push(socket);
            if let Some(tx) = tx.take() {
                let _ = tx.send(());
            }
        }
    });
    (url, arrived)
}

#[tokio::test]
async fn answers_ping_to_everyone_by_name_and_by_pattern_but_not_for_others() {
    let w = named(&[]).await;
    let all = ask(&w.conn, "ping", json!({}), &Target::All).await;
    assert_eq!(all, vec![(NODE.to_owned(), json!({"ok": "pong"}))]);
    assert_eq!(
        ask_node(&w.conn, "ping", json!({})).await,
        json!({"ok": "pong"})
    );
    let glob = ask(
        &w.conn,
        "ping",
        json!({}),
        &Target::Glob("rust-*@b?x".into()),
    )
    .await;
    assert_eq!(glob.len(), 1);
    let clock = Lamport::default();
    for target in [
        Target::Nodes(vec!["other@box".into()]),
        Target::Glob("py*@*".into()),
    ] {
        let none = call(&w.conn, bare(), &clock, "ping", json!({}), &target, SHORT)
            .await
            .unwrap();
        assert!(none.is_empty(), "{target:?}: {none:?}");
    }
    w.stop().await.all_acknowledged();
}

#[tokio::test]
async fn stats_conf_queues_registered_and_clock_are_shaped_as_flower_reads_them() {
    let w = named(&[]).await;
    let sent = w.send("process_order", order("o-stats")).await;
    shop::inventory::set_stock(&w.conn, "A", 10).await.unwrap();
    assert_eq!(w.result(&sent.id).await.status, TaskState::Success);
    let stats = ask_node(&w.conn, "stats", json!({})).await;
    assert_eq!(stats["total"], json!({"process_order": 1}), "{stats}");
    assert!(stats["broker"].is_object());
    assert_eq!(stats["broker"]["transport"], "redis");
    assert!(stats["clock"].as_str().unwrap().parse::<u64>().unwrap() > 0);
    assert_eq!(stats["pid"], std::process::id());
    assert_eq!(stats["pool"]["max-concurrency"], 4);
    assert!(stats["rusage"]["utime"].as_f64().is_some(), "{stats}");
    let conf = ask_node(&w.conn, "conf", json!({"with_defaults": false})).await;
    assert_eq!(conf["task_default_queue"], "celery");
    let queues = ask_node(&w.conn, "active_queues", json!({})).await;
    assert_eq!(queues[0]["name"], "celery");
    assert_eq!(queues[0]["exchange"]["type"], "direct");
    let registered = ask_node(&w.conn, "registered", json!({"taskinfoitems": []})).await;
    assert_eq!(registered, json!(["process_order", "send_notification"]));
    let clock = ask_node(&w.conn, "clock", json!({})).await;
    assert!(clock["clock"].as_u64().unwrap() > 0);
    assert_eq!(ask_node(&w.conn, "reserved", json!({})).await, json!([]));
    let unknown = ask_node(&w.conn, "no_such_thing", json!({})).await;
    assert!(unknown["error"].as_str().unwrap().contains("no_such_thing"));
    w.stop().await.all_acknowledged();
}

#[tokio::test]
async fn a_password_in_the_redis_url_never_reaches_stats_or_conf() {
    let redis = TestRedis::start_with(&["--requirepass", "s3cret-pw"]);
    let url = redis.url().replace("redis://", "redis://:s3cret-pw@");
    let (trigger, handle) = spawn_worker(&url, &[]);
    let conn = Conn::new(
        &celery_redis::conn::RedisUrl::parse(&url).unwrap(),
        celery_redis::conn::Waits {
            response: Some(Duration::from_secs(5)),
            connect_retries: 1,
        },
    )
    .unwrap();
    for method in ["stats", "conf"] {
        let reply = ask_node(&conn, method, json!({})).await;
        assert!(
            !reply.to_string().contains("s3cret-pw"),
            "{method}: {reply}"
        );
    }
    trigger.fire();
    handle.await.unwrap().unwrap();
}

#[tokio::test]
async fn active_and_query_task_show_a_running_task_and_terminate_stops_it_as_revoked() {
    let w = named(&[("WEBHOOK_TIMEOUT_MS", "600000")]).await;
    let (url, arrived) = hanging_webhook().await;
    let msg = w
        .send("send_notification", webhook_note("n-term", &url))
        .await;
    tokio::time::timeout(WAIT, arrived).await.unwrap().unwrap();
    let active = ask_node(&w.conn, "active", json!({"safe": true})).await;
    assert_eq!(active[0]["id"], msg.id.as_str(), "{active}");
    assert_eq!(active[0]["name"], "send_notification");
    assert_eq!(active[0]["hostname"], NODE);
    assert_eq!(active[0]["kwargs"]["notification_id"], "n-term");
    // A webhook URL's path may be a secret (Slack's, Teams'): shown as scheme://host only.
    let shown = url.trim_end_matches("/hook").to_owned() + "/...";
    assert_eq!(active[0]["kwargs"]["url"], shown.as_str(), "{active}");
    assert_eq!(active[0]["delivery_info"]["routing_key"], "celery");
    let queried = ask_node(&w.conn, "query_task", json!({"ids": [msg.id, "unknown"]})).await;
    assert_eq!(queried[&msg.id][0], "active", "{queried}");
    assert!(queried.get("unknown").is_none());
    // What `celery control terminate SIGTERM <id>` sends (revoke with terminate=True is the
    // same command; celery_tools.rs runs that one from Python).
    let reply = ask_node(
        &w.conn,
        "terminate",
        json!({"task_id": [msg.id], "signal": "SIGTERM"}),
    )
    .await;
    assert!(reply["ok"].as_str().unwrap().contains(&msg.id), "{reply}");
    let meta = w.result(&msg.id).await;
    assert_eq!(meta.status, TaskState::Revoked);
    assert_eq!(ask_node(&w.conn, "active", json!({})).await, json!([]));
    let revoked = ask_node(&w.conn, "revoked", json!({})).await;
    assert_eq!(revoked, json!([msg.id]));
    w.stop().await.all_acknowledged();
}

#[tokio::test]
async fn a_revoked_task_never_runs_and_the_revoke_survives_a_restart() {
    let redis = TestRedis::start();
    let conn = redis.manager().await;
    shop::inventory::set_stock(&conn, "A", 5).await.unwrap();
    let (trigger, handle) = spawn_worker(&redis.url(), &[]);
    let first = TaskMessage::new("process_order", "celery", as_map(order("o-rev-1")));
    let later = TaskMessage::new("process_order", "celery", as_map(order("o-rev-2")));
    // A cast, as AsyncResult.revoke() sends it, once the worker listens; then a call, to
    // know the casts were handled (one node handles requests in order).
    ask(&conn, "ping", json!({}), &Target::All).await;
    let clock = Lamport::default();
    for id in [&first.id, &later.id] {
        call(
            &conn,
            bare(),
            &clock,
            "revoke",
            json!({"task_id": id, "terminate": false, "signal": null}),
            &Target::All,
            Duration::ZERO,
        )
        .await
        .unwrap();
    }
    ask(&conn, "ping", json!({}), &Target::All).await;
    let results = backend(&redis).await;
    // Not started anywhere: stored REVOKED at once.
    assert_eq!(
        results.get(&first.id).await.unwrap().status,
        TaskState::Revoked
    );
    let broker = Broker::new(conn.clone(), "celery", "test@host");
    publish_and_await_result(&redis, &broker, &first).await;
    assert_eq!(
        results.get(&first.id).await.unwrap().status,
        TaskState::Revoked
    );
    trigger.fire();
    handle.await.unwrap().unwrap();
    // A new worker (nothing in memory) still refuses the other revoked id.
    let (trigger, handle) = spawn_worker(&redis.url(), &[]);
    ask(&conn, "ping", json!({}), &Target::All).await;
    publish_and_await_result(&redis, &broker, &later).await;
    assert_eq!(
        results.get(&later.id).await.unwrap().status,
        TaskState::Revoked
    );
    let mut c = conn.clone();
    let stock: Option<i64> = c.get(shop::keys::stock("A")).await.unwrap();
    assert_eq!(stock, Some(5), "neither order ran");
    let held: i64 = c.hlen(keys::UNACKED).await.unwrap();
    let queued: i64 = c.llen("celery").await.unwrap();
    assert_eq!((held, queued), (0, 0), "both acknowledged");
    trigger.fire();
    handle.await.unwrap().unwrap();
}

#[tokio::test]
async fn the_shutdown_command_stops_the_worker_gracefully_without_a_reply() {
    let w = named(&[]).await;
    ask_node(&w.conn, "ping", json!({})).await;
    let clock = Lamport::default();
    let target = Target::Nodes(vec![NODE.into()]);
    let replies = call(
        &w.conn,
        bare(),
        &clock,
        "shutdown",
        json!({}),
        &target,
        SHORT,
    )
    .await
    .unwrap();
    assert!(replies.is_empty(), "{replies:?}");
    let Running { handle, .. } = w;
    tokio::time::timeout(WAIT, handle)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// The field names of an event.
fn keys_of(event: &serde_json::Value) -> std::collections::BTreeSet<String> {
    event.as_object().unwrap().keys().cloned().collect()
}

/// The field names of the `kind` event Celery 5.7's worker sent (the captures).
fn captured_keys(kind: &str) -> std::collections::BTreeSet<String> {
    let path = fixtures().join(format!("events-control/event_{kind}.json"));
    let capture: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let index = capture["index_in_batch"].as_u64().unwrap_or(0) as usize;
    let body = &capture["decoded"]["body"];
    keys_of(body.get(index).unwrap_or(body))
}

#[tokio::test]
async fn events_online_task_batch_and_offline_parse_and_switch_on_by_command() {
    let redis = TestRedis::start();
    let conn = redis.manager().await;
    shop::inventory::set_stock(&conn, "A", 5).await.unwrap();
    let mut pubsub = redis.client().get_async_pubsub().await.unwrap();
    pubsub.psubscribe("/0.celeryev/*").await.unwrap();
    let mut events = pubsub.into_on_message();
    let (trigger, handle) = spawn_worker(&redis.url(), &[]);
    let mut next = async || {
        let msg = tokio::time::timeout(WAIT, events.next())
            .await
            .unwrap()
            .unwrap();
        let channel = msg.get_channel_name().to_owned();
        let f = Fanout::decode(msg.get_payload_bytes()).unwrap();
        assert_eq!(f.headers["hostname"], NODE);
        (channel, f.body)
    };
    let (channel, online) = next().await;
    assert_eq!(channel, "/0.celeryev/worker.online");
    assert_eq!(online["type"], "worker-online");
    assert_eq!(online["hostname"], NODE);
    assert_eq!(online["freq"], 2.0);
    for field in [
        "active",
        "processed",
        "loadavg",
        "sw_ident",
        "sw_ver",
        "sw_sys",
        "clock",
        "pid",
        "timestamp",
        "utcoffset",
    ] {
        assert!(online.get(field).is_some(), "{field} missing: {online}");
    }
    // Task events are off by default; enable_events switches them on.
    assert_eq!(
        ask_node(&conn, "enable_events", json!({})).await,
        json!({"ok": "task events enabled"})
    );
    let broker = Broker::new(conn.clone(), "celery", "test@host");
    let msg = TaskMessage::new("process_order", "celery", as_map(order("o-ev")));
    broker.publish(&msg).await.unwrap();
    let mut kinds = Vec::new();
    while !kinds.contains(&"task-succeeded".to_owned()) {
        let (channel, body) = next().await;
        if channel == "/0.celeryev/worker.heartbeat" {
            continue;
        }
        assert_eq!(channel, "/0.celeryev/task.multi");
        for e in body.as_array().unwrap() {
            // The order chains its confirmation, whose events may share a batch with the order's.
            if e["uuid"] != msg.id.as_str() {
                continue;
            }
            let kind = e["type"].as_str().unwrap();
            assert_eq!(
                keys_of(e),
                captured_keys(kind),
                "{kind} has other fields than Celery 5.7's: {e}"
            );
            kinds.push(kind.to_owned());
            if e["type"] == "task-received" {
                assert_eq!(e["name"], "process_order");
                assert!(
                    e["kwargs"].as_str().unwrap().starts_with("{'customer'"),
                    "{e}"
                );
            }
            if e["type"] == "task-succeeded" {
                assert!(
                    e["result"]
                        .as_str()
                        .unwrap()
                        .contains("'status': 'confirmed'"),
                    "{e}"
                );
                assert!(e["runtime"].as_f64().unwrap() >= 0.0);
            }
        }
    }
    assert_eq!(kinds, ["task-received", "task-started", "task-succeeded"]);
    trigger.fire();
    handle.await.unwrap().unwrap();
    loop {
        let (channel, body) = next().await;
        if channel == "/0.celeryev/worker.offline" {
            // The order, and perhaps the confirmation it chained (if it started before the stop).
            assert!(body["processed"].as_u64().unwrap() >= 1, "{body}");
            break;
        }
    }
}

#[tokio::test]
async fn hostile_control_traffic_is_refused_and_the_node_keeps_answering() {
    let w = named(&[]).await;
    ask_node(&w.conn, "ping", json!({})).await;
    let mut conn = w.conn.clone();
    let channel = "/0.celery.pidbox";
    // A forged binding pointing the reply at the task queue, and a reply_to naming it.
    let _: () = conn
        .sadd(keys::REPLY_BINDINGS, "evil\x06\x16\x06\x16celery")
        .await
        .unwrap();
    let forged = json!({"method": "ping", "arguments": {}, "destination": null, "ticket": "t",
                        "reply_to": {"exchange": "reply.celery.pidbox", "routing_key": "evil"}});
    let pickled = Fanout::encode(
        &json!({"method": "shutdown"}),
        Map::new(),
        2,
        "celery.pidbox",
        "",
    )
    .replace("application/json", "application/x-python-serialize");
    let revoke_nothing = json!({"method": "revoke", "arguments": {"task_id": [1, 2]}, "ticket": "t",
                                "reply_to": {"exchange": "reply.celery.pidbox", "routing_key": "x"}});
    let huge = json!({"method": "ping", "destination": vec!["x"; 100_000]});
    for payload in [
        Fanout::encode(&forged, Map::new(), 2, "celery.pidbox", ""),
        pickled,
        "not json".to_owned(),
        Fanout::encode(&json!(["a", "list"]), Map::new(), 2, "celery.pidbox", ""),
        Fanout::encode(&revoke_nothing, Map::new(), 2, "celery.pidbox", ""),
        Fanout::encode(&huge, Map::new(), 2, "celery.pidbox", ""),
    ] {
        let _: i64 = conn.publish(channel, payload).await.unwrap();
    }
    // A shutdown on a prefixed channel (kombu's global_keyprefix) is refused, not obeyed.
    let prefixed = Fanout::encode(
        &json!({"method": "shutdown"}),
        Map::new(),
        2,
        "celery.pidbox",
        "",
    );
    let _: i64 = conn
        .publish("pfx_/0.celery.pidbox", prefixed)
        .await
        .unwrap();
    assert_eq!(
        ask_node(&w.conn, "ping", json!({})).await,
        json!({"ok": "pong"})
    );
    let queued: i64 = conn.llen("celery").await.unwrap();
    assert_eq!(queued, 0, "no reply pushed onto the task queue");
    w.stop().await.all_acknowledged();
}

async fn backend(redis: &TestRedis) -> celery_redis::result::ResultBackend {
    celery_redis::result::ResultBackend::new(
        redis.manager().await,
        redis.client(),
        Duration::from_secs(3600),
        true,
    )
}

/// Publishes `msg` and waits for the worker to store its result (the result channel's message).
async fn publish_and_await_result(redis: &TestRedis, broker: &Broker, msg: &TaskMessage) {
    let mut pubsub = redis.client().get_async_pubsub().await.unwrap();
    pubsub.subscribe(keys::task_meta(&msg.id)).await.unwrap();
    broker.publish(msg).await.unwrap();
    let mut stream = pubsub.on_message();
    tokio::time::timeout(WAIT, stream.next())
        .await
        .unwrap()
        .unwrap();
}
