//! Every rejection mapped to the JSON error shape, once: the last filter of each service's routes.

use std::convert::Infallible;

use warp::http::StatusCode;
use warp::{Rejection, Reply};

use crate::body::MAX_BODY_BYTES;
use crate::error::ApiError;

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
