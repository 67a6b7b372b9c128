//! Metrics of the real binaries: the worker's `/metrics` and `/healthz` on
//! `WORKER_METRICS_BIND`, the order service's `/metrics`, after real traffic. Counters must
//! match what happened; names and labels are celery-exporter's. (CI also lints the output with
//! `promtool` and scrapes it with a real Prometheus: `prometheus.rs`.)

use std::time::Duration;

use celery_redis::result::{ResultBackend, TaskState};
use serde_json::json;
use testkit::{listening_addr, sibling_binary, Proc, TestRedis};

const WAIT: Duration = Duration::from_secs(30);

/// The value of the sample whose line starts with `series` (name and labels, exactly).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn worker_and_service_count_what_happened_with_celery_exporter_names() {
    let redis = TestRedis::start();
    let worker_bin = env!("CARGO_BIN_EXE_worker");
    let (_worker, line) = Proc::spawn(
        worker_bin.as_ref(),
        &[],
        &[
            ("REDIS_URL", redis.url()),
            ("WORKER_NAME", "metrics@test".to_owned()),
            ("WORKER_METRICS_BIND", "127.0.0.1:0".to_owned()),
        ],
        "metrics and health listening on",
    );
    let worker_url = format!("http://{}", listening_addr(&line));
    let (_order, line) = Proc::spawn(
        &sibling_binary(worker_bin, "service-order"),
        &[],
        &[
            ("REDIS_URL", redis.url()),
            ("ORDER_BIND", "127.0.0.1:0".to_owned()),
        ],
        "listening on",
    );
    let order_url = format!("http://{}", listening_addr(&line));
    let http = reqwest::Client::new();
    let put = http
        .put(format!("{order_url}/inventory/A"))
        .json(&json!({"available": 100}))
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success());
    let results = ResultBackend::new(redis.manager().await, redis.client(), WAIT, true);
    let mut ids = Vec::new();
    for i in 0..3 {
        let body = json!({"order_id": format!("m-{i}"), "customer": {"id": "c", "email": "c@example.com"},
                          "items": [{"sku": "A", "quantity": 1, "unit_price_cents": 100}]});
        let r = http
            .post(format!("{order_url}/orders"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let v: serde_json::Value = r.json().await.unwrap();
        ids.push(v["task_id"].as_str().unwrap().to_owned());
    }
    // An invalid order is refused at the door (and timed, but not sent).
    let bad = http
        .post(format!("{order_url}/orders"))
        .json(&json!({"order_id": "x"}))
        .send()
        .await
        .unwrap();
    assert!(bad.status().is_client_error());
    for id in &ids {
        assert_eq!(
            results.wait(id, WAIT).await.unwrap().status,
            TaskState::Success
        );
    }
    let labels = "{name=\"process_order\",hostname=\"test\",queue_name=\"celery\"}";
    let text = http
        .get(format!("{worker_url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for counter in ["received", "started", "succeeded"] {
        let series = format!("celery_task_{counter}_total{labels}");
        assert_eq!(sample(&text, &series), Some(3.0), "{series} in\n{text}");
    }
    assert_eq!(
        sample(&text, &format!("celery_task_runtime_count{labels}")),
        Some(3.0)
    );
    assert_eq!(
        sample(&text, "celery_worker_up{hostname=\"test\"}"),
        Some(1.0)
    );
    assert_eq!(sample(&text, "fleet_redis_up"), Some(1.0), "{text}");
    assert!(
        sample(&text, "celery_queue_length{queue_name=\"celery\"}").is_some(),
        "{text}"
    );
    for gauge in [
        "fleet_unacked_messages",
        "fleet_dead_letters",
        "fleet_dead_letters_dropped",
    ] {
        assert!(sample(&text, gauge).is_some(), "{gauge} in\n{text}");
    }
    let health = http
        .get(format!("{worker_url}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let missing = http.get(format!("{worker_url}/nope")).send().await.unwrap();
    assert_eq!(missing.status(), 404);

    let text = http
        .get(format!("{order_url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let sent = text
        .lines()
        .find(|l| l.starts_with("celery_task_sent_total{name=\"process_order\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok());
    assert_eq!(sent, Some(3.0), "{text}");
    let accepted = "fleet_http_requests_total{route=\"/orders\",method=\"POST\",status=\"202\"}";
    assert_eq!(sample(&text, accepted), Some(3.0), "{text}");
    let timed = "fleet_http_request_duration_seconds_count{route=\"/orders\",method=\"POST\"}";
    assert_eq!(sample(&text, timed), Some(4.0), "{text}");
    // Ids never become label values.
    assert!(!text.contains("m-0") && !text.contains(&ids[0]), "{text}");
}

#[tokio::test]
async fn a_metrics_address_in_use_is_a_configuration_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let redis = TestRedis::start();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_worker"))
        .env_clear()
        .env("REDIS_URL", redis.url())
        .env(
            "WORKER_METRICS_BIND",
            taken.local_addr().unwrap().to_string(),
        )
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("WORKER_METRICS_BIND"));
}

#[tokio::test]
async fn a_services_metrics_are_behind_its_tokens_when_it_has_them() {
    let redis = TestRedis::start();
    let token = "metrics-token-0123456789";
    let (_order, line) = Proc::spawn(
        &sibling_binary(env!("CARGO_BIN_EXE_worker"), "service-order"),
        &[],
        &[
            ("REDIS_URL", redis.url()),
            ("ORDER_BIND", "127.0.0.1:0".to_owned()),
            ("API_TOKENS", token.to_owned()),
        ],
        "listening on",
    );
    let url = format!("http://{}/metrics", listening_addr(&line));
    let http = reqwest::Client::new();
    let anonymous = http.get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let scraper = http.get(&url).bearer_auth(token).send().await.unwrap();
    assert_eq!(scraper.status(), 200);
    let text = scraper.text().await.unwrap();
    assert!(
        text.contains("celery_queue_length{queue_name=\"celery\"}"),
        "{text}"
    );
    // The refused scrape was accounted without its path becoming a label of its own.
    assert!(
        text.contains("route=\"/metrics\",method=\"GET\",status=\"401\""),
        "{text}"
    );
}

#[tokio::test]
async fn idle_connections_cannot_keep_the_metrics_listener_from_prometheus() {
    use tokio::io::AsyncReadExt;
    let redis = TestRedis::start();
    let (_worker, line) = Proc::spawn(
        env!("CARGO_BIN_EXE_worker").as_ref(),
        &[],
        &[
            ("REDIS_URL", redis.url()),
            ("WORKER_METRICS_BIND", "127.0.0.1:0".to_owned()),
        ],
        "metrics and health listening on",
    );
    let addr = listening_addr(&line);
    // More silent connections than the listener serves at once: each is closed by the server
    // (header timeout), which is what this waits for, not a clock.
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    for mut conn in idle {
        let mut buf = [0u8; 64];
        let closed = tokio::time::timeout(WAIT, conn.read(&mut buf)).await;
        assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
    }
    let scraped = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap();
    assert_eq!(scraped.status(), 200);
}
