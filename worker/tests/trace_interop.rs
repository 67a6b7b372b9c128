//! W3C trace context across the Rust/Python boundary, with OpenTelemetry's own Celery
//! instrumentation on the Python side (`otel_fleet.py`, printing each span's ids): a traced
//! Python client's task runs on the Rust worker in the client's trace (the worker's JSON log
//! says so, for the task and the notification it chains), and an order posted to the Rust
//! service with a `traceparent` runs on a traced Python worker in that trace.
//! Ignored by the plain test command (it needs Python): `.ci/trace` makes the venv and runs
//! `OTEL_PYTHON=<venv>/bin/python cargo test -p worker --test trace_interop -- --ignored`.

#[path = "interop/otel_logs.rs"]
mod otel_logs;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use testkit::{Binary, Stack, TestRedis};

use otel_logs::{field, Logged};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// The python of a venv made from `requirements-otel.txt`, from `OTEL_PYTHON`.
fn python() -> PathBuf {
    std::env::var_os("OTEL_PYTHON")
        .map(PathBuf::from)
        .expect("set OTEL_PYTHON to a python with worker/tests/interop/requirements-otel.txt (.ci/trace makes one)")
}

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

fn python_command(redis: &TestRedis) -> Command {
    let mut cmd = Command::new(python());
    cmd.current_dir(interop_dir())
        .env("REDIS_URL", redis.url())
        .env("PYTHONDONTWRITEBYTECODE", "1");
    cmd
}

/// `binary` of `s` with JSON logs, every log line kept; ready on `ready`.
fn logged(s: &Stack, binary: Binary, ready: &str) -> Logged {
    otel_logs::command(
        s.command(binary, &[("LOG_FORMAT", "json".to_owned())]),
        ready,
    )
}

async fn stock(redis: &TestRedis) {
    shop::inventory::set_stock(&redis.manager().await, "A", 1000)
        .await
        .unwrap();
}

#[tokio::test]
#[ignore = "needs OTEL_PYTHON, a python with requirements-otel.txt; CI runs it through .ci/trace"]
async fn a_traced_python_clients_task_runs_on_the_rust_worker_in_its_trace() {
    let s = Stack::new(env!("CARGO_BIN_EXE_worker"));
    let redis = &s.redis;
    stock(redis).await;
    let mut worker = logged(&s, Binary::Worker, "consuming queue");
    let mut client = python_command(redis);
    client.args(["otel_fleet.py", "send", "o-py-traced"]);
    let out = tokio::task::spawn_blocking(move || client.output())
        .await
        .unwrap()
        .expect("run the traced Python client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
    assert_eq!(report["result"]["status"], "confirmed", "{report}");
    let (trace_id, task_id) = (
        report["trace_id"].as_str().unwrap().to_owned(),
        report["task_id"].as_str().unwrap().to_owned(),
    );
    // The client's instrumentation sent it in that trace (its producer span says so).
    let spans = String::from_utf8_lossy(&out.stderr);
    assert!(
        spans
            .lines()
            .any(|l| l.contains("OTEL_SPAN ") && l.contains("PRODUCER") && l.contains(&trace_id)),
        "{spans}"
    );

    let ran = worker.wait_json("for the Python client's task", |v| {
        field(v, "task_id") == Some(task_id.as_str())
            && field(v, "message").is_some_and(|m| m.contains("succeeded"))
    });
    assert_eq!(field(&ran, "trace_id"), Some(trace_id.as_str()), "{ran}");
    assert_eq!(field(&ran, "order_id"), Some("o-py-traced"));
    let chained = worker.wait_json("for its notification", |v| {
        field(v, "root_id") == Some(task_id.as_str())
            && field(v, "message")
                .is_some_and(|m| m.contains("send_notification") && m.contains("succeeded"))
    });
    assert_eq!(field(&chained, "trace_id"), Some(trace_id.as_str()));
    assert!(worker.stop().0.success());
}

#[tokio::test]
#[ignore = "needs OTEL_PYTHON, a python with requirements-otel.txt; CI runs it through .ci/trace"]
async fn an_order_posted_with_a_traceparent_runs_on_a_traced_python_worker_in_that_trace() {
    let s = Stack::new(env!("CARGO_BIN_EXE_worker"));
    let mut py = python_command(&s.redis);
    py.args([
        "-m",
        "celery",
        "-A",
        "otel_fleet",
        "worker",
        "-P",
        "solo",
        "-l",
        "info",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "-n",
    ])
    .arg(format!("py-otel-{}@localhost", uuid::Uuid::new_v4()));
    let mut py_worker = otel_logs::command(py, "fleet worker ready");

    let service = logged(&s, Binary::Order, "listening on");
    let base = match testkit::listening_addrs(service.pid())[..] {
        [addr] => format!("http://{addr}"),
        ref addrs => panic!("service-order listens on {addrs:?}"),
    };
    let resp = reqwest::Client::new()
        .post(format!("{base}/orders"))
        .header("traceparent", TRACEPARENT)
        .json(&json!({
            "order_id": "o-to-python",
            "customer": {"id": "c-1", "email": "ada@example.com"},
            "items": [{"sku": "A", "quantity": 1, "unit_price_cents": 250}],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);

    // Celery's worker logs what a task prints: the span line follows a log prefix.
    let span_of = |l: &str| {
        l.split_once("OTEL_SPAN ")
            .and_then(|(_, s)| serde_json::from_str::<Value>(s).ok())
    };
    let line = py_worker.wait_raw("for the task's span", |l| {
        span_of(l).is_some_and(|v| field(&v, "name") == Some("run/process_order"))
    });
    let span = span_of(&line).unwrap();
    assert_eq!(field(&span, "trace_id"), Some(TRACE_ID), "{span}");
    assert_eq!(field(&span, "kind"), Some("CONSUMER"), "{span}");
    // Its parent is the span the service published in, not the caller's own span.
    let parent = field(&span, "parent_id").expect("a remote parent");
    assert_ne!(parent, "00f067aa0ba902b7");
    assert!(service.stop().0.success());
}
