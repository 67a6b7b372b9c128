//! HTTP plumbing both services share: JSON error replies, the JSON body filter, health routes,
//! state injection and serving with graceful shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use redis::aio::ConnectionManager;
use serde::Serialize;
use serde_json::{json, Map, Value};
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use crate::shutdown::Shutdown;
use crate::validation::{FieldError, ValidationErrors};

/// Largest request body accepted.
pub const MAX_BODY_BYTES: u64 = 64 * 1024;

/// An error reply: `{"error": {"code", "message", "fields"?}}` with an HTTP status.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub fields: Option<Vec<FieldError>>,
    /// Seconds for a `Retry-After` header (backpressure).
    pub retry_after: Option<u32>,
}

impl warp::reject::Reject for ApiError {}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            fields: None,
            retry_after: None,
        }
    }

    pub fn validation(errors: ValidationErrors) -> Self {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "validation_failed",
            message: errors.to_string(),
            fields: Some(errors.0),
            retry_after: None,
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// Redis is down or slow: the caller may retry. The cause goes to the log, not the client.
    pub fn unavailable(cause: &dyn std::fmt::Display) -> Self {
        log::warn!("redis unavailable: {cause}");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "redis_unavailable",
            "the task store is unavailable, try again",
        )
    }
}

impl Reply for ApiError {
    fn into_response(self) -> warp::reply::Response {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(fields) = self.fields {
            error["fields"] = serde_json::to_value(fields).unwrap_or(Value::Null);
        }
        let mut resp =
            warp::reply::with_status(warp::reply::json(&json!({ "error": error })), self.status)
                .into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut().insert(
                warp::http::header::RETRY_AFTER,
                warp::http::HeaderValue::from(secs),
            );
        }
        resp
    }
}

/// The answer to a submission (`POST /orders`, `POST /notifications`): 202 when enqueued now,
/// 200 with the same task for an id seen before, 429 with `Retry-After` when the queue is full.
pub fn submission_reply(
    outcome: crate::queue::Submitted,
    id_field: &str,
    id: &str,
    status_url: String,
) -> Result<warp::reply::Response, ApiError> {
    use crate::queue::Submitted;
    let (status, task_id) = match outcome {
        Submitted::Created(task) => (StatusCode::ACCEPTED, task),
        Submitted::Existing(task) => (StatusCode::OK, task),
        Submitted::QueueFull(depth) => {
            return Err(ApiError {
                retry_after: Some(1),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "queue_full",
                    format!("{depth} tasks are waiting; try again later"),
                )
            })
        }
    };
    let mut body = json!({"task_id": task_id, "status_url": status_url});
    body[id_field] = Value::String(id.to_owned());
    Ok(json_reply(status, &body))
}

impl From<redis::RedisError> for ApiError {
    fn from(e: redis::RedisError) -> Self {
        ApiError::unavailable(&e)
    }
}

/// A JSON reply with a status.
pub fn json_reply<T: Serialize>(status: StatusCode, body: &T) -> warp::reply::Response {
    warp::reply::with_status(warp::reply::json(body), status).into_response()
}

/// Injects shared state into a handler (warp's `with_db` idiom).
pub fn with_state<S: Clone + Send>(
    state: S,
) -> impl Filter<Extract = (S,), Error = Infallible> + Clone {
    warp::any().map(move || state.clone())
}

/// A JSON object body of at most [`MAX_BODY_BYTES`]; anything else is a 4xx naming the problem.
pub fn json_object() -> impl Filter<Extract = (Map<String, Value>,), Error = Rejection> + Clone {
    warp::body::content_length_limit(MAX_BODY_BYTES)
        .and(warp::body::bytes())
        .and_then(|bytes: bytes::Bytes| async move {
            match serde_json::from_slice::<Value>(&bytes) {
                Ok(Value::Object(map)) => Ok(map),
                Ok(_) => Err(warp::reject::custom(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_body",
                    "the body must be a JSON object",
                ))),
                Err(e) => Err(warp::reject::custom(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "malformed_json",
                    format!("the body is not valid JSON: {e}"),
                ))),
            }
        })
}

/// `GET /healthz` (the process answers) and `GET /readyz` (Redis answers within `limit`).
pub fn health_routes(
    redis: ConnectionManager,
    limit: Duration,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let healthz = warp::path!("healthz")
        .and(warp::get())
        .map(|| json_reply(StatusCode::OK, &json!({"status": "ok"})));
    let readyz = warp::path!("readyz")
        .and(warp::get())
        .and(with_state(redis))
        .then(move |redis: ConnectionManager| async move {
            match crate::connection::ping(&redis, limit).await {
                Ok(()) => json_reply(StatusCode::OK, &json!({"status": "ready"})),
                Err(e) => ApiError::unavailable(&e).into_response(),
            }
        });
    healthz.or(readyz).unify()
}

/// Turns every rejection into the JSON error shape.
pub async fn recover(err: Rejection) -> Result<warp::reply::Response, Infallible> {
    let reply = if let Some(e) = err.find::<ApiError>() {
        e.clone()
    } else if err.is_not_found() {
        ApiError::not_found("no such route")
    } else if err.find::<warp::reject::PayloadTooLarge>().is_some() {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body must be at most {MAX_BODY_BYTES} bytes"),
        )
    } else if err.find::<warp::reject::LengthRequired>().is_some() {
        ApiError::new(
            StatusCode::LENGTH_REQUIRED,
            "length_required",
            "a Content-Length header is required",
        )
    } else if err.find::<warp::reject::MethodNotAllowed>().is_some() {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed on this route",
        )
    } else if err.find::<warp::reject::InvalidQuery>().is_some() {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "the query string is not valid",
        )
    } else if err.find::<warp::reject::UnsupportedMediaType>().is_some() {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send application/json",
        )
    } else {
        log::error!("unhandled rejection: {err:?}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    };
    Ok(reply.into_response())
}

/// Binds the listening socket (port 0 picks a free port), so bind errors are reported, not panics.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

/// Serves `routes` (already `.recover`ed) until `shutdown` fires, then finishes the requests
/// in flight.
pub async fn serve<F>(listener: tokio::net::TcpListener, routes: F, mut shutdown: Shutdown)
where
    F: Filter<Error = Infallible> + Clone + Send + Sync + 'static,
    F::Extract: Reply,
{
    warp::serve(routes)
        .incoming(listener)
        .graceful(async move { shutdown.wait().await })
        .run()
        .await;
}

/// Binds `addr`, logs `<name> listening on <addr>` (tests wait for that line), and serves.
pub async fn run<F>(
    name: &str,
    addr: SocketAddr,
    routes: F,
    shutdown: Shutdown,
) -> std::io::Result<()>
where
    F: Filter<Error = Infallible> + Clone + Send + Sync + 'static,
    F::Extract: Reply,
{
    let listener = bind(addr).await?;
    log::info!("{name} listening on {}", listener.local_addr()?);
    serve(listener, routes, shutdown).await;
    log::info!("{name} stopped");
    Ok(())
}

/// The public view of a task's state, as both services show it:
/// `{"state", "result", "error": {"type", "message"}?, "date_done"}`.
pub fn task_view(meta: &crate::result::ResultMeta) -> Value {
    let mut view = json!({
        "task_id": meta.task_id,
        "state": meta.status.as_str(),
        "date_done": meta.date_done,
    });
    match meta.status {
        crate::result::TaskState::Failure | crate::result::TaskState::Revoked => {
            if let Some(exc) = meta.exception() {
                view["error"] = json!({"type": exc.exc_type, "message": exc.message()});
            }
            view["result"] = Value::Null;
        }
        crate::result::TaskState::Success => view["result"] = meta.result.clone(),
        _ => view["result"] = Value::Null,
    }
    view
}

/// For container health checks (the images have no shell or curl): GETs `/healthz` of the
/// service configured by `bind_var` on this host; returns the process exit code (0 healthy).
pub async fn healthcheck_cli(
    src: &dyn crate::config::Source,
    bind_var: &'static str,
    default: SocketAddr,
) -> i32 {
    let mut addr = match src.get(bind_var).map(|v| v.parse::<SocketAddr>()) {
        None => default,
        Some(Ok(a)) => a,
        Some(Err(_)) => {
            eprintln!("invalid {bind_var}");
            return 2;
        }
    };
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    match tokio::time::timeout(Duration::from_secs(3), http_status(addr, "/healthz")).await {
        Ok(Ok(200)) => 0,
        Ok(Ok(status)) => {
            eprintln!("unhealthy: /healthz answered {status}");
            1
        }
        Ok(Err(e)) => {
            eprintln!("unhealthy: {e}");
            1
        }
        Err(_) => {
            eprintln!("unhealthy: no answer within 3s");
            1
        }
    }
}

/// The status code of a plain HTTP/1.1 GET (enough for a health check; no client crate needed).
async fn http_status(addr: SocketAddr, path: &str) -> std::io::Result<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut head = [0u8; 32];
    let n = stream.read(&mut head).await?;
    std::str::from_utf8(&head[..n])
        .ok()
        .and_then(|s| s.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP answer"))
}
