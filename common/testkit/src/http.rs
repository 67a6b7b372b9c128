//! Helpers for route tests: a service configuration, one request through `warp::test`, and the
//! messages a route enqueued.

use crate::redis::TestRedis;

/// A service configuration pointing at `redis_url`, with a short Redis timeout so tests of an
/// unreachable Redis finish quickly.
pub fn service_config(redis_url: &str) -> http_kit::config::ServiceConfig {
    let url = redis_url.to_owned();
    let src = move |var: &str| match var {
        "REDIS_URL" => Some(url.clone()),
        "REDIS_TIMEOUT_MS" => Some("500".to_owned()),
        _ => None,
    };
    http_kit::config::ServiceConfig::from_source(&src, "UNUSED_BIND", ([127, 0, 0, 1], 0).into())
        .expect("valid test configuration")
}

/// Sends one request through `routes` with `warp::test` (no socket); returns the status and the
/// JSON body (`Null` when the body is not JSON).
pub async fn call<F>(
    routes: &F,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, serde_json::Value)
where
    F: warp::Filter + 'static,
    F::Extract: warp::Reply + Send,
{
    let mut req = warp::test::request().method(method).path(path);
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b);
    }
    let resp = req.reply(routes).await;
    let json = serde_json::from_slice(resp.body()).unwrap_or(serde_json::Value::Null);
    (resp.status().as_u16(), json)
}

/// The messages waiting in the `celery` list, decoded (oldest last).
pub async fn queued(redis: &TestRedis) -> Vec<celery_redis::protocol::Message> {
    use redis::AsyncCommands;
    let raw: Vec<String> = redis
        .manager()
        .await
        .lrange("celery", 0, -1)
        .await
        .expect("read the queue");
    raw.iter()
        .map(|r| {
            celery_redis::protocol::Message::decode(r.as_bytes()).expect("a decodable message")
        })
        .collect()
}
