//! Every route of the order service and every bad-input case, through `warp::test` (no socket),
//! against a real redis-server. Bad input must enqueue nothing.

use std::time::Duration;

use celery_redis::protocol::Message;
use celery_redis::result::{ExceptionInfo, ResultMeta};
use http_kit::AppState;
use redis::AsyncCommands;
use serde_json::{json, Value};
use service_order::api;
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

fn order(order_id: Option<&str>) -> Value {
    let mut o = json!({
        "customer": {"id": "c-1", "email": "ada@example.com"},
        "items": [{"sku": "A", "quantity": 2, "unit_price_cents": 250},
                  {"sku": "B", "quantity": 1, "unit_price_cents": 1000}]
    });
    if let Some(id) = order_id {
        o["order_id"] = json!(id);
    }
    o
}

#[tokio::test]
async fn post_orders_enqueues_process_order_as_celery_kwargs() {
    let f = Fixture::new();
    let (status, body) = f
        .call("POST", "/orders", Some(&order(Some("o-1")).to_string()))
        .await;
    assert_eq!(status, 202);
    assert_eq!(body["order_id"], "o-1");
    assert_eq!(body["status_url"], "/orders/o-1");
    let queued = f.queued().await;
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].task(), "process_order");
    assert_eq!(queued[0].id(), body["task_id"].as_str().unwrap());
    assert_eq!(queued[0].body.kwargs["customer"], order(None)["customer"]);
    assert_eq!(queued[0].body.kwargs["items"], order(None)["items"]);
}

#[tokio::test]
async fn the_same_order_id_twice_enqueues_once_and_returns_the_same_task() {
    let f = Fixture::new();
    let (s1, b1) = f
        .call("POST", "/orders", Some(&order(Some("o-2")).to_string()))
        .await;
    let (s2, b2) = f
        .call("POST", "/orders", Some(&order(Some("o-2")).to_string()))
        .await;
    assert_eq!((s1, s2), (202, 200));
    assert_eq!(b1["task_id"], b2["task_id"]);
    assert_eq!(f.queued().await.len(), 1);
}

#[tokio::test]
async fn a_task_is_counted_as_sent_where_it_is_published_once_per_order() {
    let f = Fixture::new();
    let sent = || {
        let text = f.state.metrics.encode();
        text.lines()
            .find(|l| l.starts_with("celery_task_sent_total{name=\"process_order\""))
            .map(str::to_owned)
    };
    assert_eq!(sent(), None);
    for (body, status) in [
        (order(Some("o-sent")), 202),
        (order(Some("o-sent")), 200),
        (json!({"customer": "ada"}), 422),
    ] {
        let (got, reply) = f.call("POST", "/orders", Some(&body.to_string())).await;
        assert_eq!(got, status, "{reply}");
    }
    let line = sent().expect("counted");
    assert!(line.contains("queue_name=\"celery\""), "{line}");
    assert!(line.ends_with(" 1"), "{line}");
}

#[tokio::test]
async fn an_order_without_id_gets_one() {
    let f = Fixture::new();
    let (status, body) = f
        .call("POST", "/orders", Some(&order(None).to_string()))
        .await;
    assert_eq!(status, 202);
    let id = body["order_id"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok());
    assert_eq!(f.queued().await[0].body.kwargs["order_id"], id);
}

#[tokio::test]
async fn bad_orders_get_4xx_naming_the_field_and_enqueue_nothing() {
    let f = Fixture::new();
    let mut cases: Vec<(String, u16, &str, Vec<&str>)> = vec![
        ("{not json".into(), 400, "malformed_json", vec![]),
        ("[1, 2]".into(), 400, "invalid_body", vec![]),
        (
            "{}".into(),
            422,
            "validation_failed",
            vec!["customer", "items"],
        ),
    ];
    let mut with = |patch: Value, fields: Vec<&'static str>| {
        let mut o = order(Some("o-bad"));
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                o.as_object_mut().unwrap().remove(k);
            } else {
                o[k] = v.clone();
            }
        }
        cases.push((o.to_string(), 422, "validation_failed", fields));
    };
    with(json!({"customer": "ada"}), vec!["customer"]);
    with(
        json!({"customer": {"id": 7, "email": "nope"}}),
        vec!["customer.id", "customer.email"],
    );
    with(json!({"customer": null}), vec!["customer"]);
    with(json!({"items": []}), vec!["items"]);
    with(json!({"items": "A"}), vec!["items"]);
    with(
        json!({"items": [{"sku": "A", "quantity": 0, "unit_price_cents": 1}]}),
        vec!["items[0].quantity"],
    );
    with(
        json!({"items": [{"sku": "A", "quantity": -3, "unit_price_cents": 1}]}),
        vec!["items[0].quantity"],
    );
    with(
        json!({"items": [{"sku": "A", "quantity": 1, "unit_price_cents": -1}]}),
        vec!["items[0].unit_price_cents"],
    );
    with(
        json!({"items": [{"sku": "A", "quantity": "2", "unit_price_cents": 1}]}),
        vec!["items[0].quantity"],
    );
    with(
        json!({"items": [{"quantity": 1, "unit_price_cents": 1}]}),
        vec!["items[0].sku"],
    );
    with(
        json!({"items": [{"sku": "A", "quantity": 1000000, "unit_price_cents": 9223372036854775807i64}]}),
        vec!["items"],
    );
    with(json!({"order_id": "has space"}), vec!["order_id"]);
    with(json!({"order_id": 12}), vec!["order_id"]);
    // Ids that are only dots would make `/orders/..` status URLs; an id of 113+ characters
    // would give its confirmation an id over 128 (it never got one).
    with(json!({"order_id": "."}), vec!["order_id"]);
    with(json!({"order_id": ".."}), vec!["order_id"]);
    with(json!({"order_id": "x".repeat(113)}), vec!["order_id"]);
    with(
        json!({"customer": {"id": "c-1", "email": "a@@b.example"}}),
        vec!["customer.email"],
    );
    with(
        json!({"customer": {"id": "c-1", "email": "a@b.example\r\nBcc: x@y.z"}}),
        vec!["customer.email"],
    );
    for (body, status, code, fields) in cases {
        let (got, reply) = f.call("POST", "/orders", Some(&body)).await;
        assert_eq!(got, status, "{body} -> {reply}");
        assert_eq!(reply["error"]["code"], code, "{body}");
        assert!(reply["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
        let named: Vec<&str> = reply["error"]["fields"]
            .as_array()
            .map(|a| a.iter().map(|f| f["field"].as_str().unwrap()).collect())
            .unwrap_or_default();
        assert_eq!(named, fields, "{body}");
    }
    assert!(f.queued().await.is_empty(), "nothing enqueued by bad input");
}

#[tokio::test]
async fn oversized_bodies_wrong_methods_and_unknown_paths() {
    let f = Fixture::new();
    let mut big = order(Some("o-big"));
    big["padding"] = json!("x".repeat(70 * 1024));
    let (status, reply) = f.call("POST", "/orders", Some(&big.to_string())).await;
    assert_eq!(
        (status, reply["error"]["code"].as_str()),
        (413, Some("payload_too_large"))
    );
    let (status, reply) = f.call("DELETE", "/orders", None).await;
    assert_eq!(
        (status, reply["error"]["code"].as_str()),
        (405, Some("method_not_allowed"))
    );
    let (status, reply) = f.call("PATCH", "/inventory/A", Some("{}")).await;
    assert_eq!(status, 405, "{reply}");
    let (status, reply) = f.call("GET", "/nowhere", None).await;
    assert_eq!(
        (status, reply["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    assert!(f.queued().await.is_empty());
}

#[tokio::test]
async fn get_order_reports_pending_then_the_stored_outcome() {
    let f = Fixture::new();
    let (status, reply) = f.call("GET", "/orders/nope", None).await;
    assert_eq!(
        (status, reply["error"]["code"].as_str()),
        (404, Some("not_found"))
    );

    let (_, created) = f
        .call("POST", "/orders", Some(&order(Some("o-3")).to_string()))
        .await;
    let task_id = created["task_id"].as_str().unwrap();
    let (status, view) = f.call("GET", "/orders/o-3", None).await;
    assert_eq!((status, view["state"].as_str()), (200, Some("PENDING")));

    let outcome = json!({"order_id": "o-3", "status": "confirmed", "total_cents": 1500});
    f.state
        .results
        .store(&ResultMeta::success(task_id, outcome.clone()))
        .await
        .unwrap();
    let (_, view) = f.call("GET", "/orders/o-3", None).await;
    assert_eq!(view["state"], "SUCCESS");
    assert_eq!(view["result"], outcome);
    assert_eq!(view["task_id"], task_id);

    let (_, other) = f
        .call("POST", "/orders", Some(&order(Some("o-4")).to_string()))
        .await;
    let exc = ExceptionInfo::new("builtins", "ValueError", "items: bad");
    let other_id = other["task_id"].as_str().unwrap();
    f.state
        .results
        .store(&ResultMeta::failure(other_id, &exc, None))
        .await
        .unwrap();
    let (_, view) = f.call("GET", "/orders/o-4", None).await;
    assert_eq!(view["state"], "FAILURE");
    assert_eq!(
        view["error"],
        json!({"type": "ValueError", "message": "items: bad"})
    );
}

/// The keys of a JSON object, sorted.
fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort_unstable();
    k
}

/// The replies' shapes on the wire: `result` and `date_done` are always there (`null` until
/// known), `error` only for a failure, `reservation` only once the stock was reserved.
#[tokio::test]
async fn replies_keep_their_fields_null_or_absent_as_documented() {
    let f = Fixture::new();
    let (status, created) = f
        .call("POST", "/orders", Some(&order(Some("o-9")).to_string()))
        .await;
    assert_eq!(status, 202);
    assert_eq!(keys(&created), ["order_id", "status_url", "task_id"]);
    assert_eq!(created["status_url"], "/orders/o-9");
    let (_, pending) = f.call("GET", "/orders/o-9", None).await;
    let task_fields = ["date_done", "order_id", "result", "state", "task_id"];
    assert_eq!(keys(&pending), task_fields, "{pending}");
    assert_eq!(
        (&pending["result"], &pending["date_done"]),
        (&Value::Null, &Value::Null)
    );

    let exc = ExceptionInfo::new("builtins", "ValueError", "items: bad");
    let task_id = created["task_id"].as_str().unwrap();
    f.state
        .results
        .store(&ResultMeta::failure(task_id, &exc, None))
        .await
        .unwrap();
    let (_, failed) = f.call("GET", "/orders/o-9", None).await;
    let mut with_error = task_fields.to_vec();
    with_error.insert(1, "error");
    assert_eq!(keys(&failed), with_error, "{failed}");
    assert_eq!(failed["result"], Value::Null);
    assert!(failed["date_done"].is_string(), "{failed}");
}

#[tokio::test]
async fn inventory_is_set_and_read_and_bad_values_are_refused() {
    let f = Fixture::new();
    let (status, body) = f.call("GET", "/inventory/A", None).await;
    assert_eq!((status, body["available"].as_i64()), (200, Some(0)));
    let (status, body) = f
        .call("PUT", "/inventory/A", Some(r#"{"available": 12}"#))
        .await;
    assert_eq!((status, body), (200, json!({"sku": "A", "available": 12})));
    let (_, body) = f.call("GET", "/inventory/A", None).await;
    assert_eq!(body["available"], 12);
    for bad in [
        r#"{"available": -1}"#,
        r#"{"available": "5"}"#,
        r#"{}"#,
        r#"{"available": 1.5}"#,
    ] {
        let (status, reply) = f.call("PUT", "/inventory/A", Some(bad)).await;
        assert_eq!(status, 422, "{bad}");
        assert_eq!(reply["error"]["fields"][0]["field"], "available", "{bad}");
    }
    let (status, reply) = f
        .call("PUT", "/inventory/bad%20sku", Some(r#"{"available": 1}"#))
        .await;
    assert_eq!(
        (status, reply["error"]["fields"][0]["field"].as_str()),
        (422, Some("sku"))
    );
    let (_, body) = f.call("GET", "/inventory/A", None).await;
    assert_eq!(body["available"], 12, "refused writes changed nothing");
}

#[tokio::test]
async fn health_and_readiness() {
    let f = Fixture::new();
    assert_eq!(
        f.call("GET", "/healthz", None).await,
        (200, json!({"status": "ok"}))
    );
    assert_eq!(
        f.call("GET", "/readyz", None).await,
        (200, json!({"status": "ready"}))
    );
}

#[tokio::test]
async fn the_route_table_serves_metrics_behind_the_token_and_405_with_allow() {
    let redis = TestRedis::start();
    let mut cfg = service_config(&redis.url());
    cfg.auth = http_kit::auth::Auth::with_tokens(vec!["a-token-0123456789".into()]);
    let routes = api::routes(AppState::connect(&cfg, "test@host").unwrap());
    let get = |token: Option<&str>| {
        let req = warp::test::request().path("/metrics");
        match token {
            Some(t) => req.header("authorization", format!("Bearer {t}")),
            None => req,
        }
    };
    assert_eq!(get(None).reply(&routes).await.status(), 401);
    let resp = get(Some("a-token-0123456789")).reply(&routes).await;
    assert_eq!(resp.status(), 200);
    let text = String::from_utf8_lossy(resp.body()).into_owned();
    assert!(text.contains("celery_queue_length{"), "{text}");
    let resp = get(Some("a-token-0123456789"))
        .method("POST")
        .reply(&routes)
        .await;
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "GET");
}

#[tokio::test]
async fn an_unreachable_redis_gives_503_in_bounded_time_not_a_hang() {
    let state = AppState::connect(&service_config(&unreachable_redis_url()), "test@host").unwrap();
    let limit = Duration::from_secs(10);
    for (method, path, body) in [
        ("GET", "/readyz", None),
        ("POST", "/orders", Some(order(Some("o-5")).to_string())),
        ("GET", "/orders/o-5", None),
        ("GET", "/inventory/A", None),
    ] {
        let (status, reply) =
            tokio::time::timeout(limit, call(&state, method, path, body.as_deref()))
                .await
                .expect("answered, not hung");
        assert_eq!(status, 503, "{method} {path}: {reply}");
        assert_eq!(reply["error"]["code"], "redis_unavailable");
    }
    assert_eq!(
        call(&state, "GET", "/healthz", None).await.0,
        200,
        "alive without Redis"
    );
}

#[tokio::test]
async fn a_full_queue_answers_429_with_retry_after_and_enqueues_nothing() {
    let redis = TestRedis::start();
    let mut cfg = service_config(&redis.url());
    cfg.max_queue_depth = 2;
    let state = AppState::connect(&cfg, "test@host").unwrap();
    for id in ["q-1", "q-2"] {
        assert_eq!(
            call(
                &state,
                "POST",
                "/orders",
                Some(&order(Some(id)).to_string())
            )
            .await
            .0,
            202
        );
    }
    let resp = warp::test::request()
        .method("POST")
        .path("/orders")
        .header("content-type", "application/json")
        .body(order(Some("q-3")).to_string())
        .reply(&api::routes(state.clone()))
        .await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "1");
    let body: Value = serde_json::from_slice(resp.body()).unwrap();
    assert_eq!(body["error"]["code"], "queue_full");
    let queued: i64 = redis.manager().await.llen("celery").await.unwrap();
    assert_eq!(queued, 2);
    assert_eq!(
        call(&state, "GET", "/orders/q-3", None).await.0,
        404,
        "not accepted"
    );
}

#[tokio::test]
async fn a_killed_connection_is_retried_once_not_answered_503() {
    let f = Fixture::new();
    assert_eq!(f.call("GET", "/inventory/A", None).await.0, 200);
    // Kill every normal client connection but the killer's own: the service's included.
    let mut admin = f.redis.manager().await;
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes")
        .query_async(&mut admin)
        .await
        .unwrap();
    assert!(killed >= 1);
    let (status, reply) = f
        .call("POST", "/orders", Some(&order(Some("o-kill")).to_string()))
        .await;
    assert_eq!(status, 202, "{reply}");
    assert_eq!(f.queued().await.len(), 1);
}

#[tokio::test]
async fn a_stalled_redis_answers_outcome_unknown_with_the_id_to_retry_with() {
    let f = Fixture::new();
    assert_eq!(f.call("GET", "/inventory/A", None).await.0, 200);
    // As the service's start-up check does: the Redis is confirmed to keep every key.
    f.state.stores.confirm().await.unwrap();
    // Redis stalls for longer than REDIS_TIMEOUT_MS (500 ms in the test configuration): every
    // client is paused for 1.5 s. The submission is sent meanwhile and runs when Redis resumes.
    let mut admin = f.redis.manager().await;
    redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(1500)
        .arg("ALL")
        .query_async::<()>(&mut admin)
        .await
        .unwrap();
    let (status, reply) = f
        .call("POST", "/orders", Some(&order(None).to_string()))
        .await;
    assert_eq!(status, 503, "{reply}");
    assert_eq!(reply["error"]["code"], "outcome_unknown");
    let id = reply["error"]["order_id"].as_str().unwrap().to_owned();
    // A PING on a connection of its own is answered once Redis resumes.
    let no_timeout = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    let mut waiter = f
        .redis
        .client()
        .get_multiplexed_async_connection_with_config(&no_timeout)
        .await
        .unwrap();
    redis::cmd("PING")
        .query_async::<String>(&mut waiter)
        .await
        .unwrap();
    // The client retries with the id it was given: one order, whatever happened the first time.
    let (status, reply) = f
        .call("POST", "/orders", Some(&order(Some(&id)).to_string()))
        .await;
    assert!(status == 200 || status == 202, "{status} {reply}");
    let queued = f.queued().await;
    assert_eq!(queued.len(), 1, "one order, not two");
    assert_eq!(queued[0].body.kwargs["order_id"], id.as_str());
}

#[tokio::test]
async fn with_tokens_the_api_needs_one_and_health_stays_open() {
    let redis = TestRedis::start();
    let mut cfg = service_config(&redis.url());
    cfg.auth = http_kit::auth::Auth::with_tokens(vec![
        "old-token-0123456789".into(),
        "new-token-0123456789".into(),
    ]);
    let state = AppState::connect(&cfg, "test@host").unwrap();
    let routes = api::routes(state);
    let request = |token: Option<&str>| {
        let mut req = warp::test::request()
            .method("POST")
            .path("/orders")
            .header("content-type", "application/json")
            .body(order(Some("o-auth")).to_string());
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        req
    };
    for token in [
        None,
        Some("wrong-token-0123456789"),
        Some("old-token-012345678"),
    ] {
        let resp = request(token).reply(&routes).await;
        assert_eq!(resp.status(), 401, "{token:?}");
    }
    let resp = warp::test::request().path("/nowhere").reply(&routes).await;
    assert_eq!(resp.status(), 401, "no route map for strangers");
    assert!(testkit::queued(&redis).await.is_empty());
    let resp = request(Some("new-token-0123456789")).reply(&routes).await;
    assert_eq!(resp.status(), 202);
    let resp = request(Some("old-token-0123456789")).reply(&routes).await;
    assert_eq!(resp.status(), 200, "either token, during a rotation");
    for path in ["/healthz", "/readyz"] {
        let resp = warp::test::request().path(path).reply(&routes).await;
        assert_eq!(resp.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn a_body_that_is_not_declared_json_is_refused() {
    let f = Fixture::new();
    let routes = api::routes(f.state.clone());
    for ct in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let mut req = warp::test::request()
            .method("POST")
            .path("/orders")
            .body(order(Some("o-ct")).to_string());
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        let resp = req.reply(&routes).await;
        assert_eq!(resp.status(), 415, "{ct:?}");
    }
    let resp = warp::test::request()
        .method("POST")
        .path("/orders")
        .header("content-type", "application/json; charset=utf-8")
        .body(order(Some("o-ct")).to_string())
        .reply(&routes)
        .await;
    assert_eq!(resp.status(), 202);
    assert_eq!(f.queued().await.len(), 1);
}

#[tokio::test]
async fn idempotency_keys_expire_and_an_expired_result_reads_expired_with_its_reservation() {
    let f = Fixture::new();
    let (status, body) = f
        .call("POST", "/orders", Some(&order(Some("o-old")).to_string()))
        .await;
    assert_eq!(status, 202);
    let ttl: i64 = f
        .redis
        .manager()
        .await
        .ttl(shop::keys::submitted_task("order", "o-old"))
        .await
        .unwrap();
    assert!(
        (1..=7 * 86_400).contains(&ttl),
        "idempotency key lives {ttl}"
    );
    // Processed long ago: the reservation is retained, the result has expired (never stored here).
    let item = shop::contracts::OrderItem {
        sku: "A".into(),
        quantity: 1,
        unit_price_cents: 1,
    };
    shop::inventory::set_stock(&f.state.redis, "A", 1)
        .await
        .unwrap();
    shop::inventory::Inventory::default()
        .reserve(&f.state.redis, "o-old", &[item], Duration::from_secs(60))
        .await
        .unwrap();
    let (status, view) = f.call("GET", "/orders/o-old", None).await;
    assert_eq!(status, 200);
    assert_eq!(view["state"], "EXPIRED", "{view}");
    assert_eq!(view["reservation"]["status"], "confirmed");
    assert_eq!(view["task_id"], body["task_id"]);
}

#[tokio::test]
async fn an_unreadable_stored_result_is_a_500_not_try_again() {
    let f = Fixture::new();
    let (_, body) = f
        .call(
            "POST",
            "/orders",
            Some(&order(Some("o-garbled")).to_string()),
        )
        .await;
    let task = body["task_id"].as_str().unwrap().to_owned();
    f.redis
        .manager()
        .await
        .set::<_, _, ()>(celery_redis::keys::task_meta(&task), "\u{1}not json")
        .await
        .unwrap();
    let (status, reply) = f.call("GET", "/orders/o-garbled", None).await;
    assert_eq!(
        (status, reply["error"]["code"].as_str()),
        (500, Some("result_unreadable"))
    );
}

#[tokio::test]
async fn a_percent_encoded_id_is_the_same_id() {
    // Found by Schemathesis: `GET /orders/o%3A1` answered 404 for the order `o:1` it had just
    // accepted, since warp hands path parameters over as sent.
    let f = Fixture::new();
    let (status, body) = f
        .call("POST", "/orders", Some(&order(Some("o:1")).to_string()))
        .await;
    assert_eq!(status, 202);
    for path in ["/orders/o:1", "/orders/o%3A1", "/orders/o%3a1"] {
        let (status, view) = f.call("GET", path, None).await;
        assert_eq!(
            (status, &view["task_id"]),
            (200, &body["task_id"]),
            "{path}"
        );
    }
    let (status, _) = f
        .call("PUT", "/inventory/s%3A1", Some(r#"{"available": 3}"#))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        f.call("GET", "/inventory/s:1", None).await,
        (200, json!({"sku": "s:1", "available": 3}))
    );
    for path in ["/orders/o%2F1", "/orders/%FF", "/orders/%2e%2e"] {
        assert_eq!(f.call("GET", path, None).await.0, 404, "{path}");
    }
    assert_eq!(f.call("GET", "/inventory/a%20b", None).await.0, 422);
}

#[tokio::test]
async fn a_method_a_path_does_not_serve_gets_405_naming_the_allowed_ones() {
    // Found by Schemathesis: a 405 without `Allow` (RFC 9110 requires it).
    let f = Fixture::new();
    let routes = api::routes(f.state.clone());
    for (method, path, allow) in [
        ("DELETE", "/orders", "POST"),
        ("GET", "/orders", "POST"),
        ("POST", "/orders/o-1", "GET"),
        ("PATCH", "/inventory/A", "GET, PUT"),
        ("TRACE", "/healthz", "GET"),
        ("POST", "/readyz", "GET"),
        ("DELETE", "/openapi.json", "GET"),
    ] {
        let resp = warp::test::request()
            .method(method)
            .path(path)
            .reply(&routes)
            .await;
        assert_eq!(resp.status(), 405, "{method} {path}");
        assert_eq!(resp.headers()["allow"], allow, "{method} {path}");
        let body: Value = serde_json::from_slice(resp.body()).unwrap();
        assert_eq!(body["error"]["code"], "method_not_allowed");
    }
    assert!(f.queued().await.is_empty());
}
