//! What each notification-service route does. Every Redis call is bounded by `State::timeout`.
//! Submitting and reading a notification is the generic path of `http_kit::submit`; the
//! delivery record and the per-recipient listing are this service's own.

use std::collections::HashMap;

use http_kit::body::json_reply;
use http_kit::submit;
use http_kit::ApiError;
use serde_json::{json, Map, Value};
use shop::contracts::SendNotification;
use shop::notifications;
use shop::validation::{is_email, ValidationErrors, EMAIL_RULE};
use warp::http::StatusCode;
use warp::Rejection;

use crate::State;

type Reply = Result<warp::reply::Response, Rejection>;

/// Validates and enqueues `send_notification` once per notification id.
pub async fn create(body: Map<String, Value>, state: State) -> Reply {
    submit::create::<SendNotification>(body, state).await
}

/// A notification's task state (when it came through this service, or was sent by another
/// task, such as an order's confirmation) and its delivery record.
pub async fn get_one(id: String, state: State) -> Reply {
    let task_id = submit::accepted_task::<SendNotification>(&id, &state).await?;
    let delivery = state
        .call(|| notifications::delivery(&state.redis, &id))
        .await
        .map_err(ApiError::reject)?;
    let task_id = task_id.or_else(|| delivery.as_ref().map(|d| d.task_id.clone()));
    let mut extra = Map::new();
    extra.insert("delivered".into(), Value::Bool(delivery.is_some()));
    extra.insert(
        "delivery".into(),
        serde_json::to_value(&delivery).unwrap_or(Value::Null),
    );
    submit::task_reply::<SendNotification>(&id, task_id, &state, extra).await
}

/// What was delivered to `?recipient=`, newest first (at most 100).
pub async fn list(query: HashMap<String, String>, state: State) -> Reply {
    let recipient = match query.get("recipient") {
        None => Err("is required as a query parameter"),
        Some(r) if !is_email(r) => Err(EMAIL_RULE),
        Some(r) => Ok(r.clone()),
    }
    .map_err(|why| ApiError::validation(ValidationErrors::single("recipient", why)).reject())?;
    let deliveries = state
        .call(|| notifications::delivered_to(&state.redis, &recipient))
        .await
        .map_err(ApiError::reject)?;
    Ok(json_reply(
        StatusCode::OK,
        &json!({"recipient": recipient, "notifications": deliveries}),
    ))
}
