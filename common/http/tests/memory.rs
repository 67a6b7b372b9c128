//! The services and Redis's memory: a submission Redis refused for lack of memory wrote nothing
//! and says so (503 `redis_unavailable`, not `outcome_unknown`), and a Redis that may evict keys
//! (here: restarted with an evicting policy) is refused submissions and readiness until it keeps
//! every key again.

use http_kit::error::ApiError;
use http_kit::AppState;
use redis::AsyncCommands;
use serde_json::{json, Map, Value};
use shop::contracts::order::ProcessOrder;
use testkit::{service_config, TestRedis};
use warp::Filter;

fn order(id: &str) -> Map<String, Value> {
    json!({
        "order_id": id,
        "customer": {"id": "c-1", "email": "ada@example.com"},
        "items": [{"sku": "A", "quantity": 1, "unit_price_cents": 250}]
    })
    .as_object()
    .cloned()
    .unwrap()
}

/// `POST /orders` with `body`: the status and the error code (none for a success).
async fn submit(state: &AppState, id: &str) -> (u16, Option<&'static str>, Option<String>) {
    match http_kit::submit::create::<ProcessOrder>(order(id), state.clone()).await {
        Ok((status, _accepted)) => (status.as_u16(), None, None),
        Err(rejection) => {
            let e = rejection.find::<ApiError>().expect("an API error");
            let id = e.context.as_ref().map(|(_, v)| v.clone());
            (e.status.as_u16(), Some(e.code), id)
        }
    }
}

async fn readyz(state: &AppState) -> u16 {
    let routes = http_kit::health::readyz(state.redis.clone(), state.timeout)
        .recover(http_kit::rejection::recover);
    let resp = warp::test::request().path("/readyz").reply(&routes).await;
    resp.status().as_u16()
}

#[tokio::test]
async fn a_submission_refused_for_lack_of_memory_is_redis_unavailable_and_writes_nothing() {
    let redis = TestRedis::start();
    let state = AppState::connect(&service_config(&redis.url()), "test@host").unwrap();
    assert_eq!(submit(&state, "o-before").await.0, 202);
    redis.config_set("maxmemory", "1").await;

    let (status, code, id) = submit(&state, "o-oom").await;
    assert_eq!(
        (status, code, id.as_deref()),
        (503, Some("redis_unavailable"), Some("o-oom"))
    );
    let mut conn = redis.manager().await;
    assert_eq!(
        conn.llen::<_, i64>("celery").await.unwrap(),
        1,
        "nothing enqueued"
    );
    assert!(!conn
        .exists::<_, bool>(shop::keys::submitted_task("order", "o-oom"))
        .await
        .unwrap());

    redis.config_set("maxmemory", "0").await;
    assert_eq!(submit(&state, "o-oom").await.0, 202);
}

#[tokio::test]
async fn after_a_restart_with_an_evicting_policy_nothing_is_accepted_until_it_keeps_every_key() {
    let mut redis = TestRedis::start();
    let state = AppState::connect(&service_config(&redis.url()), "test@host").unwrap();
    assert_eq!(submit(&state, "o-1").await.0, 202);
    assert_eq!(readyz(&state).await, 200);

    redis.restart_with(&["--maxmemory-policy", "allkeys-lru"]);
    // The first call meets the dead connection (a 503 that wrote nothing).
    assert_eq!(readyz(&state).await, 503);
    assert_eq!(readyz(&state).await, 503, "not ready on an evicting Redis");
    let why = state.stores.confirm().await.unwrap_err().to_string();
    assert!(why.contains("allkeys-lru"), "{why}");
    let (status, code, _) = submit(&state, "o-2").await;
    assert_eq!((status, code), (503, Some("redis_unavailable")));
    let mut conn = redis.manager().await;
    assert_eq!(
        conn.llen::<_, i64>("celery").await.unwrap(),
        0,
        "nothing enqueued"
    );

    redis.config_set("maxmemory-policy", "noeviction").await;
    assert_eq!(readyz(&state).await, 200);
    assert_eq!(submit(&state, "o-2").await.0, 202);
}
