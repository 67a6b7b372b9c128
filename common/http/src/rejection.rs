//! Every rejection mapped to the JSON error shape, once: the last filter of each service's
//! routes; and the 405 with `Allow` for a method a path does not serve.

use std::convert::Infallible;

use warp::http::header::{HeaderValue, ALLOW};
use warp::http::{Method, StatusCode};
use warp::{Filter, Rejection, Reply};

use crate::body::MAX_BODY_BYTES;
use crate::error::ApiError;

/// Answers 405 with `Allow: <methods>` (RFC 9110) to a method not in `methods`; rejects a method
/// in it as not found (the lowest rank), so the route's own answer or error wins. Put after
/// (`.or`) the routes of the same path.
pub fn allow(
    methods: &'static [Method],
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    warp::method().and_then(move |method: Method| async move {
        if methods.contains(&method) {
            return Err(warp::reject::not_found());
        }
        let mut resp = method_not_allowed().into_response();
        let allowed: Vec<&str> = methods.iter().map(Method::as_str).collect();
        if let Ok(value) = HeaderValue::from_str(&allowed.join(", ")) {
            resp.headers_mut().insert(ALLOW, value);
        }
        Ok(resp)
    })
}

fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this route",
    )
}

/// Turns every rejection into the JSON error shape.
pub async fn recover(err: Rejection) -> Result<warp::reply::Response, Infallible> {
    let reply = if let Some(e) = err.find::<ApiError>() {
        e.clone()
    } else if err.is_not_found() {
        ApiError::not_found("no such route")
    } else if let Some(h) = err.find::<warp::reject::InvalidHeader>() {
        // Before 405: another route's method must not hide the request's own fault.
        ApiError::invalid_header(h.name())
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
        method_not_allowed()
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
