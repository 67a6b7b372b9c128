//! The metrics against Prometheus' own tools (CI runs this with `-- --ignored`; it needs
//! `promtool` and `prometheus` on PATH, Debian's `prometheus` package): after real traffic,
//! `promtool check metrics` passes on the worker's and both services' `/metrics`, and a real
//! Prometheus server (loopback only) scraping the three processes reports a task counter equal
//! to the number of tasks run.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use celery_redis::result::TaskState;
use reqwest::Method;
use serde_json::{json, Value};
use testkit::{free_port, Stack};

const WAIT: Duration = Duration::from_secs(60);

fn promtool_check(text: &str, what: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool on PATH (Debian: apt-get install prometheus)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics on {what}: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
#[ignore = "needs promtool and prometheus on PATH; CI installs Debian's prometheus and runs it"]
async fn promtool_accepts_every_metrics_page_and_prometheus_counts_the_tasks_run() {
    let s = Stack::new(env!("CARGO_BIN_EXE_worker"));
    let (w, o, n) = (s.worker(&[]), s.order(&[]), s.notification(&[]));
    let (worker, order, notification) = (w.addr, o.addr, n.addr);
    let http = &s.http;
    s.call(
        &o,
        Method::PUT,
        "/inventory/A",
        Some(json!({"available": 1000})),
    )
    .await;
    let results = s.results().await;
    let orders = 20;
    let mut ids = Vec::new();
    for i in 0..orders {
        let body = json!({"order_id": format!("p-{i}"), "customer": {"id": "c", "email": "c@example.com"},
                          "items": [{"sku": "A", "quantity": 1, "unit_price_cents": 100}]});
        let (_, r) = s.call(&o, Method::POST, "/orders", Some(body)).await;
        ids.push(r["task_id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        assert_eq!(
            results.wait(id, WAIT).await.unwrap().status,
            TaskState::Success
        );
    }
    // Each order chained one confirmation: wait for those too (the worker's succeeded count).
    let expected = f64::from(orders * 2);
    for (running, what) in [
        (&w, "worker"),
        (&o, "service-order"),
        (&n, "service-notification"),
    ] {
        promtool_check(&s.metrics(running).await, what);
    }

    let dir = testkit::temp_dir("prometheus");
    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: fleet\n    static_configs:\n      - targets: ['{worker}', '{order}', '{notification}']\n"
    );
    std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    let port = free_port();
    let mut prometheus = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.path().join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus on PATH");
    // sum(celery_task_succeeded_total), URL-encoded.
    let query = "sum%28celery_task_succeeded_total%29";
    let deadline = Instant::now() + WAIT;
    let mut last = Value::Null;
    let got = loop {
        assert!(
            Instant::now() < deadline,
            "Prometheus never reported {expected}: {last}"
        );
        let answer = http
            .get(format!(
                "http://127.0.0.1:{port}/api/v1/query?query={query}"
            ))
            .send()
            .await;
        if let Ok(answer) = answer {
            if let Ok(v) = answer.json::<Value>().await {
                let value = v["data"]["result"][0]["value"][1]
                    .as_str()
                    .and_then(|s| s.parse::<f64>().ok());
                last = v;
                if value == Some(expected) {
                    break value;
                }
            }
        }
        // Prometheus scrapes once a second; nothing to await but its next scrape.
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(got, Some(expected));
    // Prometheus scrapes the targets independently: the worker alone holds the count above, so
    // wait (within the same bound) until it has scraped the two services too.
    loop {
        let targets: Value = http
            .get(format!("http://127.0.0.1:{port}/api/v1/targets"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let up = targets["data"]["activeTargets"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["health"] == "up")
            .count();
        if up == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "not every target up: {targets}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let _ = prometheus.kill();
    let _ = prometheus.wait();
}
