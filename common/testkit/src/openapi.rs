//! Checks of a service's OpenAPI document shared by both services' tests: the document is
//! served open, is OpenAPI 3.1, lists exactly the route table with each route's statuses,
//! every operation it marks as protected still answers 401 without a token, and `/metrics`
//! answers with the content type the document gives it.

use serde_json::Value;
use warp::{Filter, Reply};

/// One route of a table: method (lower case), path template, every status it can answer.
pub type Route = (&'static str, &'static str, &'static [u16]);

/// `GET /openapi.json` through `routes`, without a token: its JSON.
pub async fn served<F>(routes: &F) -> Value
where
    F: Filter + 'static,
    F::Extract: Reply + Send,
{
    let resp = warp::test::request()
        .path("/openapi.json")
        .reply(routes)
        .await;
    assert_eq!(resp.status(), 200, "served without a token");
    assert_eq!(resp.headers()["content-type"], "application/json");
    if let Ok(path) = std::env::var("OPENAPI_DUMP") {
        std::fs::write(path, resp.body()).unwrap();
    }
    serde_json::from_slice(resp.body()).expect("JSON")
}

/// Every operation `doc` marks as protected answers 401 without a token (a body or not);
/// `ids` fills the path templates (`("{sku}", "A")`).
pub async fn protected_need_a_token<F>(
    doc: &Value,
    table: &[Route],
    routes: &F,
    ids: &[(&str, &str)],
) where
    F: Filter + 'static,
    F::Extract: Reply + Send,
{
    for (method, path, _) in table {
        if doc["paths"][path][method]["security"].is_null() {
            continue;
        }
        let concrete = ids
            .iter()
            .fold(path.to_string(), |p, (name, value)| p.replace(name, value));
        let resp = warp::test::request()
            .method(&method.to_uppercase())
            .path(&concrete)
            .header("content-type", "application/json")
            .body("{}")
            .reply(routes)
            .await;
        assert_eq!(resp.status(), 401, "{method} {path} needs its token");
    }
}

/// `GET /metrics` with `token` answers 200 in the one content type the document gives its 200
/// (the Prometheus text exposition), and its body is that text.
pub async fn metrics_as_documented<F>(doc: &Value, routes: &F, token: &str)
where
    F: Filter + 'static,
    F::Extract: Reply + Send,
{
    let content = doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
        .as_object()
        .expect("GET /metrics has a documented 200");
    let documented: Vec<&String> = content.keys().collect();
    assert_eq!(documented.len(), 1, "one content type: {documented:?}");
    let resp = warp::test::request()
        .path("/metrics")
        .header("authorization", format!("Bearer {token}"))
        .reply(routes)
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], documented[0].as_str());
    let body = std::str::from_utf8(resp.body()).expect("text");
    assert!(body.contains("# TYPE "), "{body}");
}

/// The document is OpenAPI 3.1, has exactly `routes` (each with exactly its statuses), every
/// error status refers to the error body, the protected routes name the bearer scheme, and
/// every `$ref` resolves.
pub fn check(doc: &Value, routes: &[Route]) {
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

/// The schema `doc` gives the `status` JSON reply of `method path` (`$ref`s resolved).
pub fn reply_schema<'a>(doc: &'a Value, method: &str, path: &str, status: u16) -> &'a Value {
    let op = &doc["paths"][path][method];
    let schema = &op["responses"][status.to_string()]["content"]["application/json"]["schema"];
    assert!(
        schema.is_object(),
        "{method} {path} {status}: no JSON schema"
    );
    resolve(doc, schema)
}

/// `schema` itself, or what its `$ref` names in `doc` (one level: the documents refer to named
/// schemas only).
pub fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let name = r
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("{r}: not a component schema"));
            let named = &doc["components"]["schemas"][name];
            assert!(named.is_object(), "{r} resolves");
            named
        }
        None => schema,
    }
}

/// Where `value` departs from `schema` (in `doc`), under `at`: a type or enum value not
/// documented, a required property missing, or a property the schema does not list (the
/// documents list every field: an undocumented one is drift). `None` when it fits. Knows what
/// the services' documents use: `$ref`, `oneOf`, `type` (one or a list), `enum`, `properties`,
/// `required`, `items`.
pub fn mismatch(doc: &Value, schema: &Value, value: &Value, at: &str) -> Option<String> {
    let schema = resolve(doc, schema);
    if let Some(options) = schema["oneOf"].as_array() {
        let fits_one = options
            .iter()
            .any(|s| mismatch(doc, s, value, at).is_none());
        return (!fits_one).then(|| format!("{at}: {value} fits none of {options:?}"));
    }
    let type_of = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let fits = |t: &&str| *t == type_of || (*t == "number" && type_of == "integer");
    if !types.is_empty() && !types.iter().any(fits) {
        return Some(format!("{at}: a {type_of}, documented as {types:?}"));
    }
    if let Some(allowed) = schema["enum"].as_array() {
        if !allowed.contains(value) {
            return Some(format!("{at}: {value} is not one of {allowed:?}"));
        }
    }
    match value {
        Value::Object(fields) => {
            let props = schema["properties"].as_object();
            let required = schema["required"].as_array().into_iter().flatten();
            if let Some(name) = required
                .filter_map(Value::as_str)
                .find(|n| !fields.contains_key(*n))
            {
                return Some(format!("{at}: required {name} missing"));
            }
            fields.iter().find_map(|(name, v)| {
                let at = format!("{at}.{name}");
                match props.and_then(|p| p.get(name)) {
                    Some(s) => mismatch(doc, s, v, &at),
                    None if props.is_some() => Some(format!("{at}: not documented")),
                    None => None,
                }
            })
        }
        Value::Array(items) if schema["items"].is_object() => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| mismatch(doc, &schema["items"], v, &format!("{at}[{i}]"))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_value_departing_from_its_schema_is_named() {
        let doc = json!({"components": {"schemas": {
            "Kind": {"type": "string", "enum": ["log", "webhook"]},
            "Record": {"type": "object", "required": ["id", "kind"], "properties": {
                "id": {"type": "string"}, "kind": {"$ref": "#/components/schemas/Kind"},
                "url": {"type": ["string", "null"]}, "n": {"type": "number"}}},
        }}});
        let schema = json!({"type": "array", "items": {"oneOf": [
            {"$ref": "#/components/schemas/Record"}, {"type": "null"}]}});
        let check = |v: Value| mismatch(&doc, &schema, &v, "v");
        assert_eq!(
            check(json!([{"id": "a", "kind": "log", "n": 1}, null])),
            None
        );
        assert_eq!(
            check(json!([{"id": "a", "kind": "log", "url": null, "n": 1.5}])),
            None
        );
        for bad in [
            json!([{"id": "a", "kind": "log", "extra": 1}]),
            json!([{"id": "a"}]),
            json!([{"id": 1, "kind": "log"}]),
            json!([{"id": "a", "kind": "mail"}]),
            json!([{"id": "a", "kind": "log", "n": "1"}]),
            json!({"id": "a", "kind": "log"}),
        ] {
            assert!(check(bad.clone()).is_some(), "{bad} passed");
        }
    }
}
