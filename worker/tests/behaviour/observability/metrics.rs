//! Metrics of the real binaries: the worker's `/metrics` and `/healthz` on
//! `WORKER_METRICS_BIND`, the order service's `/metrics`, after real traffic. Counters must
//! match what happened; names and labels are celery-exporter's, a task counted in the queue it
//! was taken from. (CI also lints the output with `promtool` and scrapes it with a real
//! Prometheus: `worker/tests/prometheus.rs`.)

use crate::support::raw::crafted;
use celery_redis::protocol::TaskMessage;
use redis::AsyncCommands;
use serde_json::Map;
use testkit::TestRedis;

use celery_redis::result::TaskState;
use reqwest::Method;
use serde_json::json;
use testkit::stack::run_worker;
use testkit::Stack;

use crate::support::WAIT;

/// The value of the sample whose line starts with `series` (name and labels, exactly).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn worker_and_service_count_what_happened_with_celery_exporter_names() {
    let s = Stack::new(env!("CARGO_BIN_EXE_worker"));
    let worker = s.worker(&[("WORKER_NAME", "metrics@test".to_owned())]);
    let order = s.order(&[]);
    let http = &s.http;
    let (put, _) = s
        .call(
            &order,
            Method::PUT,
            "/inventory/A",
            Some(json!({"available": 100})),
        )
        .await;
    assert!((200..300).contains(&put), "{put}");
    let mut ids = Vec::new();
    for i in 0..3 {
        let body = json!({"order_id": format!("m-{i}"), "customer": {"id": "c", "email": "c@example.com"},
                          "items": [{"sku": "A", "quantity": 1, "unit_price_cents": 100}]});
        ids.push(s.post_order(&order, body).await.unwrap().task_id);
    }
    // An invalid order is refused at the door (and timed, but not sent).
    let (bad, _) = s
        .post_order(&order, json!({"order_id": "x"}))
        .await
        .unwrap_err();
    assert!((400..500).contains(&bad), "{bad}");
    for id in &ids {
        assert_eq!(s.finished(id).await.status, TaskState::Success);
    }
    let labels = "{name=\"process_order\",hostname=\"test\",queue_name=\"celery\"}";
    let text = s.metrics(&worker).await;
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
        .get(format!("{}/healthz", worker.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let missing = http
        .get(format!("{}/nope", worker.url))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    let text = s.metrics(&order).await;
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
    let s = Stack::new(env!("CARGO_BIN_EXE_worker"));
    let env = [
        ("REDIS_URL", s.redis.url()),
        (
            "WORKER_METRICS_BIND",
            taken.local_addr().unwrap().to_string(),
        ),
    ];
    let (code, _, err) = run_worker(env!("CARGO_BIN_EXE_worker"), &[], &env);
    assert_eq!(code, Some(2));
    assert!(err.contains("WORKER_METRICS_BIND"));
}

#[tokio::test]
async fn a_services_metrics_are_behind_its_tokens_when_it_has_them() {
    let s = Stack::new(env!("CARGO_BIN_EXE_worker"));
    let token = "metrics-token-0123456789";
    let order = s.order(&[("API_TOKENS", token.to_owned())]);
    let url = format!("{}/metrics", order.url);
    let http = &s.http;
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
    let s = Stack::new(env!("CARGO_BIN_EXE_worker"));
    let worker = s.worker(&[]);
    let addr = worker.addr;
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

/// Found by the review (fixed): a task's metric labels name the queue its *routing key* names
/// (worker/src/report.rs `labels`: `ctx.labels.of(msg.task(), msg.envelope.routing_key())`),
/// not the queue it was taken from (`Delivery::queue`). Any producer (and every message kombu
/// published to a named exchange, whose routing key is the exchange's) is counted in another
/// queue of the worker, or its first. The label set stays bounded (labels.rs only hands out
/// labels made from `WORKER_QUEUES`), but per-queue dashboards and alerts are wrong.
#[tokio::test]
async fn a_task_is_counted_in_the_queue_it_was_taken_from_not_the_one_its_routing_key_names() {
    let redis = TestRedis::start();
    let (_worker, line) = testkit::Proc::spawn(
        env!("CARGO_BIN_EXE_worker").as_ref(),
        &[],
        &[
            ("REDIS_URL", redis.url()),
            ("WORKER_NAME", "labels@test".to_owned()),
            ("WORKER_QUEUES", "a,b".to_owned()),
            ("WORKER_METRICS_BIND", "127.0.0.1:0".to_owned()),
        ],
        "metrics and health listening on",
    );
    let url = format!("http://{}/metrics", testkit::listening_addr(&line));
    let mut conn = redis.manager().await;
    let results = celery_redis::result::ResultBackend::new(
        conn.clone(),
        redis.client(),
        crate::support::WAIT,
        true,
    );
    // A registered task in queue `a`, its routing key naming queue `b` (kwargs invalid: it
    // fails, but is received first).
    let msg = TaskMessage::new("send_notification", "a", Map::new());
    let raw = crafted(&msg, |e| {
        e["properties"]["delivery_info"] = json!({"exchange": "", "routing_key": "b"})
    });
    conn.lpush::<_, _, ()>("a", raw).await.unwrap();
    let meta = results.wait(&msg.id, crate::support::WAIT).await.unwrap();
    assert!(meta.status.is_ready());
    let text = reqwest::get(&url).await.unwrap().text().await.unwrap();
    let series = |q: &str| {
        format!("celery_task_received_total{{name=\"send_notification\",hostname=\"test\",queue_name=\"{q}\"}}")
    };
    assert_eq!(
        (sample(&text, &series("a")), sample(&text, &series("b"))),
        (Some(1.0), None),
        "{text}"
    );
}
