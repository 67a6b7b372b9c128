//! The OpenAPI 3.1 document's shared parts (utoipa): the error replies each route may give, the
//! bearer-token scheme, the operations of the health routes and `/metrics`, and the `GET /openapi.json` filter, which
//! serves a service's document (each service's route table leaves it open, like the health
//! routes).

use std::sync::Arc;

use serde::Serialize;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{IntoResponses, Modify, ToSchema};
use warp::http::StatusCode;
use warp::{Filter, Rejection};

use crate::body::json_reply;
use crate::error::ErrorBody;

/// The security scheme protected operations name (`security(("bearer" = []))`).
pub const BEARER: &str = "bearer";

/// Adds the bearer-token scheme of `API_TOKENS` to a document.
pub struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.description = Some(
            "One of the service's `API_TOKENS`. Without tokens configured the API is open (on a \
             loopback address, or with `API_PUBLIC=true`)."
                .into(),
        );
        components.add_security_scheme(BEARER, SecurityScheme::Http(scheme));
    }
}

// Built by `crate::health`: the document and the wire share this type.
/// What the health routes answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct HealthStatus {
    /// `ok` (`/healthz`) or `ready` (`/readyz`).
    pub status: &'static str,
}

impl HealthStatus {
    /// `/healthz`: the process answers.
    pub const OK: HealthStatus = HealthStatus { status: "ok" };
    /// `/readyz`: Redis answers and keeps every key.
    pub const READY: HealthStatus = HealthStatus { status: "ready" };
}

/// 401: every route behind the bearer tokens (when `API_TOKENS` is set).
#[derive(IntoResponses)]
#[response(
    status = 401,
    description = "`unauthorized`: no or a wrong bearer token"
)]
pub struct Unauthorized(#[allow(dead_code)] ErrorBody);

/// 400 for a route without a body: an `Authorization` value that is not text.
#[derive(IntoResponses)]
#[response(
    status = 400,
    description = "`invalid_header`: an `Authorization` value that is not visible ASCII text"
)]
pub struct BadHeader(#[allow(dead_code)] ErrorBody);

/// What reading a JSON body may answer, before any field is looked at.
#[derive(IntoResponses)]
pub enum BodyErrors {
    /// 400: the body or a header cannot be read.
    #[response(
        status = 400,
        description = "`malformed_json`, `invalid_body`: not JSON, not an object, or unreadable; \
                       `invalid_header`: an `Authorization` or `Content-Type` value that is not \
                       visible ASCII text"
    )]
    BadRequest(#[allow(dead_code)] ErrorBody),
    /// 408: the body came too slowly.
    #[response(
        status = 408,
        description = "`request_timeout`: the body did not arrive within `HTTP_REQUEST_TIMEOUT_MS`"
    )]
    Timeout(#[allow(dead_code)] ErrorBody),
    /// 411: the body's length is not given.
    #[response(
        status = 411,
        description = "`length_required`: no Content-Length (nor a chunked body)"
    )]
    LengthRequired(#[allow(dead_code)] ErrorBody),
    /// 413: the body is too long.
    #[response(
        status = 413,
        description = "`payload_too_large`: the body is over 64 KiB"
    )]
    TooLarge(#[allow(dead_code)] ErrorBody),
    /// 415: the body is not declared as JSON.
    #[response(
        status = 415,
        description = "`unsupported_media_type`: not sent as `Content-Type: application/json`"
    )]
    MediaType(#[allow(dead_code)] ErrorBody),
}

/// 422: a field (of the body, the path or the query) is invalid; `fields` names each.
#[derive(IntoResponses)]
#[response(
    status = 422,
    description = "`validation_failed`: `fields` names each invalid field"
)]
pub struct Invalid(#[allow(dead_code)] ErrorBody);

/// 404: no such id (or one that cannot exist).
#[derive(IntoResponses)]
#[response(status = 404, description = "`not_found`: no such id")]
pub struct NotFound(#[allow(dead_code)] ErrorBody);

/// 429: backpressure (`MAX_QUEUE_DEPTH`); nothing was enqueued.
#[derive(IntoResponses)]
#[response(
    status = 429,
    description = "`queue_full`: too many tasks wait (`MAX_QUEUE_DEPTH`); nothing was enqueued",
    headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))
)]
pub struct QueueFull(#[allow(dead_code)] ErrorBody);

/// 500: a stored result that is not Celery JSON (retrying will not help).
#[derive(IntoResponses)]
#[response(
    status = 500,
    description = "`result_unreadable`: the stored result is not Celery JSON"
)]
pub struct Unreadable(#[allow(dead_code)] ErrorBody);

/// 503: Redis refused or did not answer within `REDIS_TIMEOUT_MS`.
#[derive(IntoResponses)]
#[response(
    status = 503,
    description = "`redis_unavailable` (nothing written; retry) or, for a submission, \
                   `outcome_unknown` (retry with the id the error names)"
)]
pub struct Unavailable(#[allow(dead_code)] ErrorBody);

/// `GET /healthz`, served by [`crate::health::healthz`] (this function only documents it).
#[utoipa::path(get, path = "/healthz", tag = "health", summary = "The process answers",
    responses((status = 200, description = "The process answers", body = HealthStatus)))]
pub fn healthz() {}

/// `GET /readyz`, served by [`crate::health::readyz`] (this function only documents it).
#[utoipa::path(get, path = "/readyz", tag = "health", summary = "Redis answers",
    responses((status = 200, description = "Redis answers", body = HealthStatus), Unavailable))]
pub fn readyz() {}

/// `GET /metrics`, served by [`crate::metrics::route`] (this function only documents it):
/// behind the bearer tokens like the API, as each service's route table puts it.
#[utoipa::path(get, path = "/metrics", tag = "health", summary = "Prometheus metrics",
    security(("bearer" = [])),
    responses((status = 200, description = "The Prometheus text exposition (docs/observability.md); \
        the queue gauges are read from Redis at scrape time and left out when Redis does not answer",
        content_type = "text/plain; version=0.0.4; charset=utf-8", body = String),
        BadHeader, Unauthorized))]
pub fn metrics() {}

/// `GET /openapi.json`, served by [`document`] (this function only documents it).
#[utoipa::path(get, path = "/openapi.json", tag = "health", summary = "This document",
    responses((status = 200, description = "This document (OpenAPI 3.1)", content_type = "application/json")))]
pub fn openapi_json() {}

/// `GET /openapi.json`: `doc`, serialized once.
pub fn document(
    doc: utoipa::openapi::OpenApi,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let doc = Arc::new(serde_json::to_value(doc).unwrap_or_else(|e| {
        log::error!("the OpenAPI document does not serialize: {e}");
        serde_json::Value::Null
    }));
    warp::path!("openapi.json")
        .and(warp::get())
        .map(move || json_reply(StatusCode::OK, &*doc))
}

/// Why a task failed (`error` of a task's state).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct TaskError {
    /// The exception's type, e.g. `ValueError`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The exception's message (Celery's `exc_message`, its parts joined by `, `).
    pub message: String,
}
