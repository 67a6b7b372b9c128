//! What each notification-service route does, and its OpenAPI description (utoipa): the
//! request and reply types and every status a route can answer. Every Redis call is bounded by
//! `State::timeout`. Submitting and reading a notification is the generic path of
//! `http_kit::submit`; the delivery record and the per-recipient listing are this service's own.

use std::collections::HashMap;

use http_kit::body::json_reply;
use http_kit::openapi::{
    BadHeader, BodyErrors, Invalid, NotFound, QueueFull, TaskError, Unauthorized, Unavailable,
    Unreadable,
};
use http_kit::submit;
use http_kit::ApiError;
use serde::Serialize;
use serde_json::{Map, Value};
use shop::contracts::{NewNotification, SendNotification};
use shop::notifications::{self, Delivery};
use shop::schema::{Email, Id};
use shop::validation::{is_email, Fields, ValidationErrors, EMAIL_RULE};
use utoipa::ToSchema;
use warp::http::StatusCode;
use warp::Rejection;

use crate::State;

type Reply = Result<warp::reply::Response, Rejection>;

/// An accepted notification: where to read its state.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NotificationAccepted {
    pub notification_id: String,
    pub task_id: String,
    /// `/notifications/{notification_id}`
    pub status_url: String,
}

impl From<submit::Accepted> for NotificationAccepted {
    fn from(a: submit::Accepted) -> Self {
        NotificationAccepted {
            notification_id: a.id,
            task_id: a.task_id,
            status_url: a.status_url,
        }
    }
}

/// A notification's task state (Celery's result backend) and its delivery record.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NotificationView {
    pub notification_id: String,
    pub task_id: String,
    /// Celery's state: PENDING, STARTED, RETRY, SUCCESS, FAILURE, REVOKED, ...
    pub state: String,
    /// What `send_notification` returned (SUCCESS only).
    #[schema(required = true)]
    pub result: Option<Value>,
    /// Why it failed (FAILURE, REVOKED).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<TaskError>,
    /// When the task ended.
    #[schema(required = true)]
    pub date_done: Option<String>,
    pub delivered: bool,
    /// The delivery record, once delivered.
    #[schema(required = true)]
    pub delivery: Option<Delivery>,
}

impl NotificationView {
    /// The view of `notification_id`: its task's state and its delivery record, if any.
    fn new(notification_id: String, task: submit::TaskView, delivery: Option<Delivery>) -> Self {
        NotificationView {
            notification_id,
            task_id: task.task_id,
            state: task.state,
            result: task.result,
            error: task.error,
            date_done: task.date_done,
            delivered: delivery.is_some(),
            delivery,
        }
    }
}

/// One page of what a recipient was sent, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Deliveries {
    pub recipient: String,
    /// At most `limit`, and about 256 KiB of records (at least one).
    pub notifications: Vec<Delivery>,
    /// Pass as `cursor` for the next (older) page; `null` after the oldest kept. It stays
    /// right while new deliveries arrive.
    #[schema(required = true, pattern = "^[0-9]{1,16}$")]
    pub next_cursor: Option<String>,
}

/// Validates and enqueues `send_notification` once per notification id.
#[utoipa::path(post, path = "/notifications", tag = "notifications",
    request_body = NewNotification,
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Accepted: `send_notification` enqueued", body = NotificationAccepted),
        (status = 200, description = "This `notification_id` was accepted before: its task, nothing new enqueued", body = NotificationAccepted),
        BodyErrors, Unauthorized, Invalid, QueueFull, Unavailable))]
pub async fn create(body: Map<String, Value>, state: State) -> Reply {
    // Boxed: the submission future is large, and warp nests every route's future in one.
    let (status, accepted) = Box::pin(submit::create::<SendNotification>(body, state)).await?;
    Ok(json_reply(status, &NotificationAccepted::from(accepted)))
}

/// A notification's task state (when it came through this service, or was sent by another
/// task, such as an order's confirmation) and its delivery record.
#[utoipa::path(get, path = "/notifications/{notification_id}", tag = "notifications",
    params(("notification_id" = Id, Path, description = "The notification's id")),
    security(("bearer" = [])),
    responses((status = 200, description = "The notification's state", body = NotificationView),
        BadHeader, Unauthorized, NotFound, Unreadable, Unavailable))]
pub async fn get_one(id: String, state: State) -> Reply {
    let task_id = submit::accepted_task::<SendNotification>(&id, &state).await?;
    let delivery = state
        .call(|| notifications::delivery(&state.redis, &id))
        .await
        .map_err(ApiError::reject)?;
    let task_id = task_id.or_else(|| delivery.as_ref().map(|d| d.task_id.clone()));
    let task = submit::task_state::<SendNotification>(&id, task_id, &state).await?;
    let view = NotificationView::new(id, task, delivery);
    Ok(json_reply(StatusCode::OK, &view))
}

/// What was delivered to `?recipient=`, newest first, a page at a time.
#[utoipa::path(get, path = "/notifications", tag = "notifications",
    params(
        ("recipient" = Email, Query, description = "An e-mail address"),
        ("limit" = Option<u32>, Query, description = "Most notifications on the page (default 20)", minimum = 1, maximum = 100, example = 20),
        ("cursor" = Option<String>, Query, description = "The `next_cursor` of the page before; absent for the newest", pattern = "^[0-9]{1,16}$")),
    security(("bearer" = [])),
    responses((status = 200, description = "A page of the recipient's notifications", body = Deliveries),
        (status = 400, description = "`invalid_query`: the query string cannot be read; `invalid_header`: an `Authorization` value that is not visible ASCII text", body = http_kit::error::ErrorBody),
        Unauthorized, Invalid, Unavailable))]
pub async fn list(query: HashMap<String, String>, state: State) -> Reply {
    let (recipient, limit, cursor) =
        list_query(&query).map_err(|e| ApiError::validation(e).reject())?;
    let page = state
        .call(|| notifications::page(&state.redis, &recipient, cursor, limit))
        .await
        .map_err(ApiError::reject)?;
    Ok(json_reply(
        StatusCode::OK,
        &Deliveries {
            recipient,
            notifications: page.deliveries,
            next_cursor: page.next.map(|n| n.to_string()),
        },
    ))
}

/// `recipient`, `limit` (default [`notifications::PAGE_DEFAULT`]) and `cursor`, each checked.
fn list_query(
    query: &HashMap<String, String>,
) -> Result<(String, usize, Option<u64>), ValidationErrors> {
    let mut f = Fields::new();
    let recipient = match query.get("recipient") {
        None => Err("is required as a query parameter"),
        Some(r) if !is_email(r) => Err(EMAIL_RULE),
        Some(r) => Ok(r.clone()),
    }
    .unwrap_or_else(|why| {
        f.error("recipient", why);
        String::new()
    });
    let limit = match query.get("limit").map(|l| l.parse::<usize>()) {
        None => notifications::PAGE_DEFAULT,
        Some(Ok(n)) if (1..=notifications::PAGE_MAX).contains(&n) => n,
        Some(_) => {
            let max = notifications::PAGE_MAX;
            f.error("limit", format!("must be a whole number from 1 to {max}"));
            notifications::PAGE_DEFAULT
        }
    };
    let cursor = match query.get("cursor") {
        None => None,
        Some(c) if (1..=16).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_digit()) => {
            c.parse().ok()
        }
        Some(_) => {
            f.error("cursor", "must be the next_cursor of an earlier page");
            None
        }
    };
    f.finish((recipient, limit, cursor))
}
