//! The JSON error shape `{"error": {"code", "message", "fields"?}}` every failing route answers
//! with (`rejection::recover` maps warp's own rejections to it).

use std::collections::BTreeMap;

use serde::Serialize;
use shop::validation::{FieldError, ValidationErrors};
use utoipa::ToSchema;
use warp::http::StatusCode;
use warp::{Rejection, Reply};

/// The body of every error reply.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The one member of the reply's JSON object: `{"error": {...}}`.
    pub error: ErrorDetail,
}

/// What went wrong. A submission's 503 also names the id to retry with, under its id field
/// (`order_id`, `notification_id`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable: `validation_failed`, `not_found`, `unauthorized`, `queue_full`,
    /// `redis_unavailable`, `outcome_unknown`, ...
    pub code: String,
    /// For people.
    pub message: String,
    /// Each invalid field (`validation_failed` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<FieldError>>,
    /// The id field, when there is one (see above).
    #[serde(flatten)]
    #[schema(ignore)]
    pub context: BTreeMap<&'static str, String>,
}

/// An error reply: `{"error": {"code", "message", "fields"?}}` with an HTTP status.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status answered.
    pub status: StatusCode,
    /// The machine-readable code, [`ErrorDetail::code`].
    pub code: &'static str,
    /// The message for people, [`ErrorDetail::message`].
    pub(crate) message: String,
    /// Each invalid field, [`ErrorDetail::fields`].
    pub(crate) fields: Option<Vec<FieldError>>,
    /// Seconds for a `Retry-After` header (backpressure).
    pub retry_after: Option<u32>,
    /// One more field of the error object, e.g. the `order_id` to retry a submission with.
    pub context: Option<(&'static str, String)>,
}

impl warp::reject::Reject for ApiError {}

impl ApiError {
    /// An error with no field list, `Retry-After` nor id.
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            fields: None,
            retry_after: None,
            context: None,
        }
    }

    /// 422 `validation_failed`, naming each invalid field of `errors`.
    pub fn validation(errors: ValidationErrors) -> Self {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "validation_failed",
            message: errors.to_string(),
            fields: Some(errors.0),
            retry_after: None,
            context: None,
        }
    }

    /// 404 `not_found`.
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// A request header whose value is not visible ASCII text (`crate::header`). The value is
    /// not echoed: it may be a credential.
    pub fn invalid_header(name: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_header",
            format!("the {name} header must be visible ASCII text"),
        )
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

    /// A submission whose write may or may not have happened (Redis stalled or the connection
    /// broke after the request was sent): retrying with the same id is safe and tells.
    pub fn outcome_unknown(
        cause: &dyn std::fmt::Display,
        id_field: &'static str,
        id: &str,
    ) -> Self {
        log::warn!("submission {id} outcome unknown: {cause}");
        ApiError {
            context: Some((id_field, id.to_owned())),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "outcome_unknown",
                format!("the task store did not confirm the write; it may or may not be accepted: retry with the same {id_field}"),
            )
        }
    }

    /// As a warp rejection, for `?` in handlers.
    pub fn reject(self) -> Rejection {
        warp::reject::custom(self)
    }
}

impl From<redis::RedisError> for ApiError {
    fn from(e: redis::RedisError) -> Self {
        ApiError::unavailable(&e)
    }
}

impl ApiError {
    /// The body this error answers with.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message.clone(),
                fields: self.fields.clone(),
                context: self.context.iter().cloned().collect(),
            },
        }
    }
}

impl Reply for ApiError {
    fn into_response(self) -> warp::reply::Response {
        let mut resp =
            warp::reply::with_status(warp::reply::json(&self.body()), self.status).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut().insert(
                warp::http::header::RETRY_AFTER,
                warp::http::HeaderValue::from(secs),
            );
        }
        resp
    }
}
