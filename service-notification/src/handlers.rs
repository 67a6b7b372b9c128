//! What each notification-service route does. Every Redis call is bounded by `State::timeout`.

use std::collections::HashMap;

use common::connection::bounded;
use common::notifications;
use common::tasks::{Contract, SendNotification};
use common::validation::{is_id, ValidationErrors};
use common::web::{json_reply, submission_reply, task_view, ApiError};
use serde_json::{json, Map, Value};
use warp::http::StatusCode;
use warp::Rejection;

use crate::State;

type Reply = Result<warp::reply::Response, Rejection>;

fn reject(e: impl Into<ApiError>) -> Rejection {
    warp::reject::custom(e.into())
}

/// Validates and enqueues a notification once per id: 202 when new, 200 for an id seen before,
/// 429 when the queue is full.
pub async fn create(mut body: Map<String, Value>, state: State) -> Reply {
    if body.get("notification_id").is_none_or(Value::is_null) {
        body.insert(
            "notification_id".into(),
            Value::String(uuid::Uuid::new_v4().to_string()),
        );
    }
    let n = SendNotification::from_kwargs(&body).map_err(|e| reject(ApiError::validation(e)))?;
    let outcome = bounded(state.timeout, notifications::submit(&state.broker, &n))
        .await
        .map_err(reject)?;
    let status_url = format!("/notifications/{}", n.notification_id);
    submission_reply(outcome, "notification_id", &n.notification_id, status_url).map_err(reject)
}

/// A notification's task state (when it came through this service) and its delivery record.
pub async fn get_one(id: String, state: State) -> Reply {
    let not_found = || reject(ApiError::not_found(format!("no notification {id:?}")));
    if !is_id(&id) {
        return Err(not_found());
    }
    let (task_id, delivery) = bounded(state.timeout, async {
        let task = notifications::task_of(&state.redis, &id).await?;
        let delivery = notifications::delivery(&state.redis, &id).await?;
        Ok((task, delivery))
    })
    .await
    .map_err(reject)?;
    // Notifications sent by other tasks (an order's confirmation) have a delivery but no task here.
    let task_id = task_id.or_else(|| delivery.as_ref().map(|d| d.task_id.clone()));
    let Some(task_id) = task_id else {
        return Err(not_found());
    };
    let meta = tokio::time::timeout(state.timeout, state.results.get(&task_id))
        .await
        .map_err(|_| reject(ApiError::unavailable(&"result backend timed out")))?
        .map_err(|e| reject(ApiError::unavailable(&e)))?;
    let mut view = task_view(&meta);
    view["notification_id"] = Value::String(id.clone());
    view["delivered"] = Value::Bool(delivery.is_some());
    view["delivery"] = serde_json::to_value(&delivery).unwrap_or(Value::Null);
    Ok(json_reply(StatusCode::OK, &view))
}

/// What was delivered to `?recipient=`, newest first (at most 100).
pub async fn list(query: HashMap<String, String>, state: State) -> Reply {
    let recipient = query
        .get("recipient")
        .map(|r| r.trim())
        .filter(|r| !r.is_empty())
        .ok_or_else(|| {
            reject(ApiError::validation(ValidationErrors::single(
                "recipient",
                "is required as a query parameter",
            )))
        })?
        .to_owned();
    let deliveries = bounded(
        state.timeout,
        notifications::delivered_to(&state.redis, &recipient),
    )
    .await
    .map_err(reject)?;
    Ok(json_reply(
        StatusCode::OK,
        &json!({"recipient": recipient, "notifications": deliveries}),
    ))
}
