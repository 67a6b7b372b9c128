//! Every route of the notification service and every bad-input case, through `warp::test`,
//! against a real redis-server. Bad input must enqueue nothing.

use std::time::Duration;

/// How long test deliveries are retained.
const RETAIN: Duration = Duration::from_secs(3600);

use celery_redis::protocol::Message;
use celery_redis::result::ResultMeta;
use http_kit::AppState;
use serde_json::{json, Value};
use service_notification::api;
use shop::contracts::Channel;
use shop::notifications::{self, Delivery};
use testkit::{self, service_config, unreachable_redis_url, TestRedis};

struct Fixture {
    redis: TestRedis,
    state: AppState,
}

impl Fixture {
    fn new() -> Self {
        let redis = TestRedis::start();
        let state = AppState::connect(&service_config(&redis.url()), "test@host").unwrap();
        Fixture { redis, state }
    }

    async fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        call(&self.state, method, path, body).await
    }

    async fn queued(&self) -> Vec<Message> {
        testkit::queued(&self.redis).await
    }
}

async fn call(state: &AppState, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    testkit::call(&api::routes(state.clone()), method, path, body).await
}

fn note() -> Value {
    json!({"recipient": "ada@example.com", "channel": "log", "subject": "Hi", "body": "Hello"})
}

#[tokio::test]
async fn post_enqueues_send_notification_once_per_id() {
    let f = Fixture::new();
    let mut n = note();
    n["notification_id"] = json!("n-1");
    let (s1, b1) = f.call("POST", "/notifications", Some(&n.to_string())).await;
    let (s2, b2) = f.call("POST", "/notifications", Some(&n.to_string())).await;
    assert_eq!((s1, s2), (202, 200));
    assert_eq!(b1["task_id"], b2["task_id"]);
    assert_eq!(b1["status_url"], "/notifications/n-1");
    let queued = f.queued().await;
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].task(), "send_notification");
    assert_eq!(queued[0].body.kwargs["recipient"], "ada@example.com");
    assert_eq!(queued[0].body.kwargs["url"], Value::Null);

    let (status, b3) = f
        .call("POST", "/notifications", Some(&note().to_string()))
        .await;
    assert_eq!(status, 202);
    assert!(uuid::Uuid::parse_str(b3["notification_id"].as_str().unwrap()).is_ok());
}

#[tokio::test]
async fn bad_notifications_get_4xx_naming_the_field_and_enqueue_nothing() {
    let f = Fixture::new();
    let patched = |patch: Value| {
        let mut n = note();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                n.as_object_mut().unwrap().remove(k);
            } else {
                n[k] = v.clone();
            }
        }
        n.to_string()
    };
    let cases: Vec<(String, u16, Vec<&str>)> = vec![
        ("{oops".into(), 400, vec![]),
        ("\"text\"".into(), 400, vec![]),
        (patched(json!({"channel": "sms"})), 422, vec!["channel"]),
        (patched(json!({"channel": "webhook"})), 422, vec!["url"]),
        (
            patched(json!({"channel": "webhook", "url": "ftp://x"})),
            422,
            vec!["url"],
        ),
        (
            patched(json!({"recipient": null, "subject": 5})),
            422,
            vec!["recipient", "subject"],
        ),
        (patched(json!({"body": ""})), 422, vec!["body"]),
        (
            patched(json!({"notification_id": "a/b"})),
            422,
            vec!["notification_id"],
        ),
    ];
    for (body, status, fields) in cases {
        let (got, reply) = f.call("POST", "/notifications", Some(&body)).await;
        assert_eq!(got, status, "{body} -> {reply}");
        let named: Vec<&str> = reply["error"]["fields"]
            .as_array()
            .map(|a| a.iter().map(|f| f["field"].as_str().unwrap()).collect())
            .unwrap_or_default();
        assert_eq!(named, fields, "{body}");
    }
    let mut big = note();
    big["body"] = json!("x".repeat(65 * 1024));
    assert_eq!(
        f.call("POST", "/notifications", Some(&big.to_string()))
            .await
            .0,
        413
    );
    assert_eq!(f.call("PUT", "/notifications", Some("{}")).await.0, 405);
    assert_eq!(f.call("GET", "/elsewhere", None).await.0, 404);
    assert!(f.queued().await.is_empty());
}

#[tokio::test]
async fn get_one_shows_state_and_delivery() {
    let f = Fixture::new();
    assert_eq!(f.call("GET", "/notifications/unknown", None).await.0, 404);
    let mut n = note();
    n["notification_id"] = json!("n-2");
    let (_, created) = f.call("POST", "/notifications", Some(&n.to_string())).await;
    let task_id = created["task_id"].as_str().unwrap().to_owned();
    let (status, view) = f.call("GET", "/notifications/n-2", None).await;
    assert_eq!(
        (status, view["state"].as_str(), view["delivered"].as_bool()),
        (200, Some("PENDING"), Some(false))
    );

    // What the worker does on delivery.
    let d = delivery("n-2", &task_id, "2026-01-01T00:00:00.000000+00:00");
    notifications::record(&f.state.redis, &d, RETAIN)
        .await
        .unwrap();
    f.state
        .results
        .store(&ResultMeta::success(
            &task_id,
            json!({"status": "delivered"}),
        ))
        .await
        .unwrap();
    let (_, view) = f.call("GET", "/notifications/n-2", None).await;
    assert_eq!(view["state"], "SUCCESS");
    assert_eq!(view["delivered"], true);
    assert_eq!(view["delivery"]["subject"], "Hi");
}

fn delivery(id: &str, task_id: &str, at: &str) -> Delivery {
    Delivery {
        notification_id: id.into(),
        recipient: "ada@example.com".into(),
        channel: Channel::Log,
        subject: "Hi".into(),
        body: format!("body of {id}"),
        url: None,
        task_id: task_id.into(),
        delivered_at: at.into(),
    }
}

#[tokio::test]
async fn list_by_recipient_is_newest_first() {
    let f = Fixture::new();
    for (i, id) in ["n-a", "n-b", "n-c"].iter().enumerate() {
        let d = delivery(
            id,
            &format!("t-{i}"),
            &format!("2026-01-01T00:00:0{i}.000000+00:00"),
        );
        assert!(notifications::record(&f.state.redis, &d, RETAIN)
            .await
            .unwrap());
    }
    // Recording the same notification again changes nothing.
    assert!(
        !notifications::record(&f.state.redis, &delivery("n-a", "t-9", "x"), RETAIN)
            .await
            .unwrap()
    );
    let (status, body) = f
        .call("GET", "/notifications?recipient=ada@example.com", None)
        .await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = body["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["notification_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["n-c", "n-b", "n-a"]);
    let (_, empty) = f
        .call("GET", "/notifications?recipient=nobody@example.com", None)
        .await;
    assert_eq!(empty["notifications"], json!([]));
    let (status, reply) = f.call("GET", "/notifications", None).await;
    assert_eq!(
        (status, reply["error"]["fields"][0]["field"].as_str()),
        (422, Some("recipient"))
    );
    // A notification sent by another task (an order's confirmation) is found by its delivery.
    f.state
        .results
        .store(&ResultMeta::success("t-0", json!({})))
        .await
        .unwrap();
    let (status, view) = f.call("GET", "/notifications/n-a", None).await;
    assert_eq!((status, view["task_id"].as_str()), (200, Some("t-0")));
}

#[tokio::test]
async fn health_readiness_and_an_unreachable_redis() {
    let f = Fixture::new();
    assert_eq!(f.call("GET", "/healthz", None).await.0, 200);
    assert_eq!(f.call("GET", "/readyz", None).await.0, 200);
    let down = AppState::connect(&service_config(&unreachable_redis_url()), "test@host").unwrap();
    for (method, path, body) in [
        ("GET", "/readyz", None),
        ("POST", "/notifications", Some(note().to_string())),
        ("GET", "/notifications/n-1", None),
        ("GET", "/notifications?recipient=a@example.com", None),
    ] {
        let (status, reply) = tokio::time::timeout(
            Duration::from_secs(10),
            call(&down, method, path, body.as_deref()),
        )
        .await
        .expect("answered, not hung");
        assert_eq!(
            (status, reply["error"]["code"].as_str()),
            (503, Some("redis_unavailable")),
            "{method} {path}"
        );
    }
}

#[tokio::test]
async fn the_shops_own_notification_ids_cannot_be_submitted() {
    let f = Fixture::new();
    let mut n = note();
    n["notification_id"] = json!("order-o-1-confirmed");
    let (status, reply) = f.call("POST", "/notifications", Some(&n.to_string())).await;
    assert_eq!(
        (status, reply["error"]["fields"][0]["field"].as_str()),
        (422, Some("notification_id"))
    );
    assert!(
        f.queued().await.is_empty(),
        "nothing enqueued, nothing claimed"
    );
    let (status, _) = f
        .call("GET", "/notifications/order-o-1-confirmed", None)
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn recipients_and_ids_that_would_corrupt_keys_are_refused() {
    let f = Fixture::new();
    for recipient in [
        "a@@b.example",
        "ada@example.com\r\nX",
        "ada\u{0}@example.com",
        " ada@example.com",
        "*@example.com",
        "ada@example",
        "ada@-example.com",
        ".ada@example.com",
    ] {
        let mut n = note();
        n["recipient"] = json!(recipient);
        let (status, reply) = f.call("POST", "/notifications", Some(&n.to_string())).await;
        assert_eq!(
            (status, reply["error"]["fields"][0]["field"].as_str()),
            (422, Some("recipient")),
            "{recipient:?}"
        );
    }
    for query in [
        "recipient=%20ada@example.com",
        "recipient=*",
        "recipient=a%0D%0Ab@c.d",
    ] {
        let (status, _) = f
            .call("GET", &format!("/notifications?{query}"), None)
            .await;
        assert_eq!(status, 422, "{query}");
    }
    for id in [".", "..", "-"] {
        let mut n = note();
        n["notification_id"] = json!(id);
        let (status, reply) = f.call("POST", "/notifications", Some(&n.to_string())).await;
        assert_eq!(
            (status, reply["error"]["fields"][0]["field"].as_str()),
            (422, Some("notification_id")),
            "{id:?}"
        );
    }
    assert!(f.queued().await.is_empty());
}

#[tokio::test]
async fn percent_encoded_ids_and_405_with_allow() {
    // Both found by Schemathesis: `GET /notifications/n%3A1` did not find `n:1`, and a 405 had
    // no `Allow` header.
    let f = Fixture::new();
    let mut n = note();
    n["notification_id"] = json!("n:1");
    let (status, body) = f.call("POST", "/notifications", Some(&n.to_string())).await;
    assert_eq!(status, 202);
    let (status, view) = f.call("GET", "/notifications/n%3A1", None).await;
    assert_eq!((status, &view["task_id"]), (200, &body["task_id"]));
    let routes = api::routes(f.state.clone());
    for (method, path, allow) in [
        ("PUT", "/notifications", "GET, POST"),
        ("DELETE", "/notifications/n-1", "GET"),
        ("TRACE", "/healthz", "GET"),
        ("PUT", "/openapi.json", "GET"),
        ("POST", "/metrics", "GET"),
    ] {
        let resp = warp::test::request()
            .method(method)
            .path(path)
            .reply(&routes)
            .await;
        assert_eq!(resp.status(), 405, "{method} {path}");
        assert_eq!(resp.headers()["allow"], allow, "{method} {path}");
    }
}
