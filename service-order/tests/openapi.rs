//! The OpenAPI document served at `GET /openapi.json`: it parses, is OpenAPI 3.1, is open while
//! the API needs a token, and lists every route of the route table with every status it can
//! answer (the live check against the document is `.ci/openapi`, with Schemathesis).

use http_kit::AppState;
use serde_json::Value;
use service_order::api;
use testkit::{service_config, TestRedis};

/// Every route and the statuses it can answer (README "HTTP API").
const ROUTES: &[(&str, &str, &[u16])] = &[
    (
        "post",
        "/orders",
        &[200, 202, 400, 401, 408, 411, 413, 415, 422, 429, 503],
    ),
    ("get", "/orders/{order_id}", &[200, 401, 404, 500, 503]),
    (
        "put",
        "/inventory/{sku}",
        &[200, 400, 401, 408, 411, 413, 415, 422, 503],
    ),
    ("get", "/inventory/{sku}", &[200, 401, 422, 503]),
    ("get", "/healthz", &[200]),
    ("get", "/readyz", &[200, 503]),
    ("get", "/openapi.json", &[200]),
];

#[tokio::test]
async fn the_served_document_is_openapi_3_1_and_lists_every_route_and_status() {
    let redis = TestRedis::start();
    let mut cfg = service_config(&redis.url());
    cfg.auth = http_kit::auth::Auth::with_tokens(vec!["a-token-0123456789".into()]);
    let routes = api::routes(AppState::connect(&cfg, "test@host").unwrap());
    let resp = warp::test::request()
        .path("/openapi.json")
        .reply(&routes)
        .await;
    assert_eq!(resp.status(), 200, "served without a token");
    assert_eq!(resp.headers()["content-type"], "application/json");
    let doc: Value = serde_json::from_slice(resp.body()).expect("JSON");
    if let Ok(path) = std::env::var("OPENAPI_DUMP") {
        std::fs::write(path, resp.body()).unwrap();
    }
    check(&doc, ROUTES);
    // Every operation the document says needs the token still does, a body or not.
    for (method, path, _) in ROUTES {
        if doc["paths"][path][method]["security"].is_null() {
            continue;
        }
        let concrete = path
            .replace("{order_id}", "o-1")
            .replace("{sku}", "A")
            .replace("{notification_id}", "n-1");
        let resp = warp::test::request()
            .method(&method.to_uppercase())
            .path(&concrete)
            .header("content-type", "application/json")
            .body("{}")
            .reply(&routes)
            .await;
        assert_eq!(resp.status(), 401, "{method} {path} needs its token");
    }
}

/// The document is OpenAPI 3.1, has exactly `routes` (each with exactly its statuses), every
/// error status refers to the error body, the protected routes name the bearer scheme, and
/// every `$ref` resolves.
fn check(doc: &Value, routes: &[(&str, &str, &[u16])]) {
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1.")),
        "{}",
        doc["openapi"]
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let mut listed = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().unwrap().keys() {
            listed.push(format!("{method} {path}"));
        }
    }
    let mut expected: Vec<String> = routes.iter().map(|(m, p, _)| format!("{m} {p}")).collect();
    listed.sort();
    expected.sort();
    assert_eq!(listed, expected, "every route, and no other");
    for (method, path, statuses) in routes {
        let op = &doc["paths"][path][method];
        let mut got: Vec<u16> = op["responses"]
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.parse().unwrap())
            .collect();
        got.sort();
        assert_eq!(&got, statuses, "{method} {path}");
        for status in got.iter().filter(|s| **s >= 400) {
            let schema =
                &op["responses"][status.to_string()]["content"]["application/json"]["schema"];
            assert_eq!(
                schema["$ref"], "#/components/schemas/ErrorBody",
                "{method} {path} {status}"
            );
        }
        let open = ["/healthz", "/readyz", "/openapi.json"].contains(path);
        assert_eq!(op["security"].is_null(), open, "{method} {path}: security");
    }
    let text = doc.to_string();
    for part in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = &part[..part.find('"').unwrap()];
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "{name} resolves"
        );
    }
}
