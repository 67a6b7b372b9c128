//! Trace context and JSON logs end to end: the three real binaries with `LOG_FORMAT=json`
//! against a private redis-server. A `POST /orders` with a W3C `traceparent` is continued by the
//! order task and by the `send_notification` it chains (their JSON log lines carry the caller's
//! trace id); an invalid `traceparent` starts a new trace; and with a password in `REDIS_URL`
//! and `RUST_LOG=debug`, no line of any binary shows it and every line is a JSON object.

#[path = "../../interop/otel_logs.rs"]
mod otel_logs;

use std::collections::HashSet;

use serde_json::{json, Value};
use testkit::{Binary, Stack, TestRedis};

use otel_logs::{field, service_url, Logged};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// `binary` of `s` with JSON logs and `extra`, every log line kept; ready on `ready`.
fn logged(s: &Stack, binary: Binary, extra: &[(&'static str, &str)], ready: &str) -> Logged {
    let mut env = vec![("LOG_FORMAT", "json".to_owned())];
    env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    otel_logs::command(s.command(binary, &env), ready)
}

fn worker(s: &Stack, extra: &[(&'static str, &str)]) -> Logged {
    logged(s, Binary::Worker, extra, "consuming queue")
}

fn order_service(s: &Stack, extra: &[(&'static str, &str)]) -> (Logged, String) {
    let mut svc = logged(s, Binary::Order, extra, "listening on");
    let line = svc.wait_raw("listening on", |l| l.contains("listening on"));
    let base = service_url(&line);
    (svc, base)
}

/// Stocks SKU `A` and posts an order with `traceparent` (when given); returns its order id and
/// task id.
async fn post_order(base: &str, order_id: &str, traceparent: Option<&str>) -> String {
    let http = reqwest::Client::new();
    let stocked = http
        .put(format!("{base}/inventory/A"))
        .json(&json!({"available": 100}))
        .send()
        .await
        .unwrap();
    assert_eq!(stocked.status(), 200);
    let mut req = http.post(format!("{base}/orders")).json(&json!({
        "order_id": order_id,
        "customer": {"id": "c-1", "email": "ada@example.com"},
        "items": [{"sku": "A", "quantity": 1, "unit_price_cents": 250}],
    }));
    if let Some(tp) = traceparent {
        req = req
            .header("traceparent", tp)
            .header("tracestate", "rojo=00f067aa0ba902b7");
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 202);
    let body: Value = resp.json().await.unwrap();
    body["task_id"].as_str().unwrap().to_owned()
}

/// Waits for the order task's notification to succeed on `worker`; returns the trace id of
/// every worker line about the order task and about its notification (one each when right).
fn trace_ids_of_order(worker: &mut Logged, order_task: &str) -> (HashSet<String>, HashSet<String>) {
    let done = worker.wait_json("for the order's notification succeeding", |v| {
        field(v, "root_id") == Some(order_task)
            && field(v, "task_id") != Some(order_task)
            && field(v, "message")
                .is_some_and(|m| m.contains("send_notification") && m.contains("succeeded"))
    });
    let note_task = field(&done, "task_id").unwrap().to_owned();
    let ids = |task: &str| -> HashSet<String> {
        worker
            .json_lines()
            .iter()
            .filter(|v| field(v, "task_id") == Some(task))
            .map(|v| field(v, "trace_id").unwrap_or("(none)").to_owned())
            .collect()
    };
    (ids(order_task), ids(&note_task))
}

#[tokio::test]
async fn an_orders_trace_id_is_in_the_worker_lines_of_the_order_and_its_notification() {
    let s = Stack::new(env!("CARGO_BIN_EXE_worker"));
    let mut w = worker(&s, &[]);
    let (mut svc, base) = order_service(&s, &[]);

    let task = post_order(&base, "o-traced", Some(TRACEPARENT)).await;
    let (order, note) = trace_ids_of_order(&mut w, &task);
    assert_eq!(order, HashSet::from([TRACE_ID.to_owned()]));
    assert_eq!(note, HashSet::from([TRACE_ID.to_owned()]));
    // The order task's lines name the order; the service's acceptance line has the trace id.
    let lines = w.json_lines();
    let order_line = lines
        .iter()
        .find(|v| field(v, "task_id") == Some(task.as_str()))
        .unwrap();
    assert_eq!(field(order_line, "order_id"), Some("o-traced"));
    assert_eq!(field(order_line, "root_id"), Some(task.as_str()));
    let accepted = svc.wait_json("accepting the order", |v| {
        field(v, "message").is_some_and(|m| m.contains("o-traced accepted"))
    });
    assert_eq!(field(&accepted, "trace_id"), Some(TRACE_ID));

    // Invalid parents (and none) each start a new trace, shared by the order and its notification.
    let mut seen = HashSet::from([TRACE_ID.to_owned()]);
    let invalid = [
        Some("00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01"),
        Some("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"),
        Some("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"),
        Some("garbage"),
        None,
    ];
    for (i, tp) in invalid.into_iter().enumerate() {
        let task = post_order(&base, &format!("o-new-{i}"), tp).await;
        let (order, note) = trace_ids_of_order(&mut w, &task);
        assert_eq!(order.len(), 1, "{tp:?}: {order:?}");
        assert_eq!(order, note, "{tp:?}");
        let id = order.into_iter().next().unwrap();
        assert!(
            id.len() == 32
                && id
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
            "{tp:?}: {id}"
        );
        assert!(
            seen.insert(id.clone()),
            "{tp:?} did not start a new trace: {id}"
        );
    }
    assert!(svc.stop().0.success());
    assert!(w.stop().0.success());
}

#[tokio::test]
async fn no_line_of_any_binary_shows_the_redis_password_and_every_line_is_json() {
    const PASSWORD: &str = "pw-Zq8s3cr3t-never-logged";
    let redis = TestRedis::start_with(&["--requirepass", PASSWORD]);
    let url = format!("redis://default:{PASSWORD}@127.0.0.1:{}/0", redis.port());
    let s = Stack::on(redis, env!("CARGO_BIN_EXE_worker"));
    let debug = [("REDIS_URL", url.as_str()), ("RUST_LOG", "debug")];
    let mut w = worker(&s, &debug);
    let (svc, base) = order_service(&s, &debug);
    let mut notes = logged(&s, Binary::Notification, &debug, "listening on");
    notes.wait_raw("listening on", |l| l.contains("listening on"));

    let task = post_order(&base, "o-secret", Some(TRACEPARENT)).await;
    let (order, _) = trace_ids_of_order(&mut w, &task);
    assert_eq!(order, HashSet::from([TRACE_ID.to_owned()]));

    let mut all = Vec::new();
    for p in [w, svc, notes] {
        let (status, lines) = p.stop();
        assert!(status.success());
        all.extend(lines);
    }
    assert!(
        all.iter().any(|l| l.contains("\"DEBUG\"")),
        "RUST_LOG=debug took effect"
    );
    for line in &all {
        assert!(!line.contains(PASSWORD), "the password is in {line}");
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let time = field(&v, "time").unwrap_or_else(|| panic!("no time: {line}"));
        time::OffsetDateTime::parse(time, &time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(time.ends_with('Z'), "{line}");
        for f in ["level", "target", "message"] {
            assert!(field(&v, f).is_some(), "no {f}: {line}");
        }
    }
}

#[test]
fn a_log_format_that_is_not_text_or_json_stops_each_binary_naming_it() {
    let s = Stack::new(env!("CARGO_BIN_EXE_worker"));
    for bin in [Binary::Worker, Binary::Order, Binary::Notification] {
        let out = s
            .command(bin, &[("LOG_FORMAT", "yaml".to_owned())])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bin:?}: {stderr}");
        assert!(stderr.contains("LOG_FORMAT"), "{bin:?}: {stderr}");
    }
}
