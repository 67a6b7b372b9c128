//! The OpenAPI document served at `GET /openapi.json`: it parses, is OpenAPI 3.1, is open while
//! the API needs a token, lists every route of the route table (`/metrics` too) with every
//! status it can answer, and `/metrics` answers in the content type it documents (the live check against the document is `.ci/openapi`, with Schemathesis; a real
//! delivery record against its schema: `worker/tests/behaviour/end_to_end.rs`).

use http_kit::AppState;
use service_notification::api;
use testkit::{openapi, service_config, TestRedis};

const TOKEN: &str = "a-token-0123456789";

/// Every route and the statuses it can answer (docs/http-api.md).
const ROUTES: &[openapi::Route] = &[
    (
        "post",
        "/notifications",
        &[200, 202, 400, 401, 408, 411, 413, 415, 422, 429, 503],
    ),
    (
        "get",
        "/notifications/{notification_id}",
        &[200, 400, 401, 404, 500, 503],
    ),
    ("get", "/notifications", &[200, 400, 401, 422, 503]),
    ("get", "/healthz", &[200]),
    ("get", "/readyz", &[200, 503]),
    ("get", "/metrics", &[200, 400, 401]),
    ("get", "/openapi.json", &[200]),
];

#[tokio::test]
async fn the_served_document_is_openapi_3_1_and_lists_every_route_and_status() {
    let redis = TestRedis::start();
    let mut cfg = service_config(&redis.url());
    cfg.auth = http_kit::auth::Auth::with_tokens(vec![TOKEN.into()]);
    let routes = api::routes(AppState::connect(&cfg, "test@host").unwrap());
    let doc = openapi::served(&routes).await;
    openapi::check(&doc, ROUTES);
    // Every operation the document says needs the token still does, a body or not.
    openapi::protected_need_a_token(&doc, ROUTES, &routes, &[("{notification_id}", "n-1")]).await;
    openapi::metrics_as_documented(&doc, &routes, TOKEN).await;
}
