//! Request and reply bodies: JSON replies, the JSON object body filter with its size limit,
//! typed bodies validated field by field, path segments percent-decoded, and state injection
//! (warp's `with_db` idiom).

use std::convert::Infallible;

use std::time::Duration;

use futures_util::{Stream, StreamExt};
use serde::Serialize;
use serde_json::{Map, Value};
use shop::validation::FromJson;
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use crate::error::ApiError;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: u64 = 64 * 1024;

/// A JSON reply with a status.
pub fn json_reply<T: Serialize>(status: StatusCode, body: &T) -> warp::reply::Response {
    warp::reply::with_status(warp::reply::json(body), status).into_response()
}

/// A typed request body, read out of the JSON object field by field: 422 naming every invalid
/// field otherwise.
pub fn validated<T: FromJson>(body: &Map<String, Value>) -> Result<T, Rejection> {
    T::from_json(body).map_err(|e| ApiError::validation(e).reject())
}

/// One path segment, percent-decoded: `o%3A1` is `o:1`, as a client that encodes every reserved
/// character sends it. A segment that does not decode to UTF-8 stays as sent (no valid id has a
/// `%`), so the route answers it as any other invalid id.
pub fn segment() -> impl Filter<Extract = (String,), Error = Rejection> + Clone {
    warp::path::param::<String>().map(|raw: String| {
        let decoded = percent_encoding::percent_decode_str(&raw)
            .decode_utf8()
            .ok()
            .map(|s| s.into_owned());
        decoded.unwrap_or(raw)
    })
}

/// Injects shared state into a handler.
pub fn with_state<S: Clone + Send>(
    state: S,
) -> impl Filter<Extract = (S,), Error = Infallible> + Clone {
    warp::any().map(move || state.clone())
}

/// A JSON object body of at most [`MAX_BODY_BYTES`], sent as `application/json` (a browser
/// cannot send that cross-site without a preflight) within `timeout`; anything else is a 4xx
/// naming the problem.
pub fn json_object(
    timeout: Duration,
) -> impl Filter<Extract = (Map<String, Value>,), Error = Rejection> + Clone {
    crate::header::optional_text("Content-Type")
        .and_then(|ct: Option<String>| async move {
            let essence = ct
                .as_deref()
                .and_then(|c| c.split(';').next())
                .map(|c| c.trim().to_ascii_lowercase());
            if essence.as_deref() == Some("application/json") {
                Ok(())
            } else {
                Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "send the body as Content-Type: application/json",
                )
                .reject())
            }
        })
        .untuple_one()
        .and(warp::body::content_length_limit(MAX_BODY_BYTES))
        .and(warp::body::stream())
        .and_then(move |body| read_body(body, timeout))
        .and_then(|bytes: Vec<u8>| async move {
            match serde_json::from_slice::<Value>(&bytes) {
                Ok(Value::Object(map)) => Ok(map),
                Ok(_) => Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_body",
                    "the body must be a JSON object",
                )
                .reject()),
                Err(e) => Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "malformed_json",
                    format!("the body is not valid JSON: {e}"),
                )
                .reject()),
            }
        })
}

/// The whole body, within `timeout` (a client that sends it slowly, or stops, gets 408) and
/// within [`MAX_BODY_BYTES`] whatever its Content-Length said.
async fn read_body<S, B>(body: S, timeout: Duration) -> Result<Vec<u8>, Rejection>
where
    S: Stream<Item = Result<B, warp::Error>> + Send,
    B: warp::Buf,
{
    let read = async {
        let mut body = std::pin::pin!(body);
        let mut out = Vec::new();
        while let Some(chunk) = body.next().await {
            let mut chunk = chunk.map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_body",
                    "the body could not be read",
                )
            })?;
            while chunk.has_remaining() {
                let part = chunk.chunk();
                if out.len().saturating_add(part.len()) > MAX_BODY_BYTES as usize {
                    return Err(ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "payload_too_large",
                        format!("the body must be at most {MAX_BODY_BYTES} bytes"),
                    ));
                }
                out.extend_from_slice(part);
                let n = part.len();
                chunk.advance(n);
            }
        }
        Ok(out)
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => Err(e.reject()),
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!("the body did not arrive within {timeout:?}"),
        )
        .reject()),
    }
}
