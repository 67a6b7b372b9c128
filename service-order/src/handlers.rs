//! What each order-service route does, and its OpenAPI description (utoipa): the request and
//! reply types and every status a route can answer. Every Redis call is bounded by
//! `State::timeout`, so a slow or absent Redis gives a 503 quickly, never a hang. Submitting
//! and reading an order is the generic path of `http_kit::submit`; stock is this service's own.

use http_kit::body::{json_reply, validated};
use http_kit::openapi::{
    BadHeader, BodyErrors, Invalid, NotFound, QueueFull, TaskError, Unauthorized, Unavailable,
    Unreadable,
};
use http_kit::submit;
use http_kit::ApiError;
use serde::Serialize;
use serde_json::{Map, Value};
use shop::contracts::{NewOrder, OrderOutcome, ProcessOrder};
use shop::inventory::{self, Reservation, MAX_STOCK};
use shop::schema::Id;
use shop::validation::{is_id, Fields, FromJson, ValidationErrors};
use utoipa::ToSchema;
use warp::http::StatusCode;
use warp::Rejection;

use crate::State;

type Reply = Result<warp::reply::Response, Rejection>;

/// An accepted order: where to read its state.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrderAccepted {
    pub order_id: String,
    pub task_id: String,
    /// `/orders/{order_id}`
    pub status_url: String,
}

impl From<submit::Accepted> for OrderAccepted {
    fn from(a: submit::Accepted) -> Self {
        OrderAccepted {
            order_id: a.id,
            task_id: a.task_id,
            status_url: a.status_url,
        }
    }
}

/// An order's task state (Celery's result backend) and, once processed, its stock reservation.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrderView {
    pub order_id: String,
    pub task_id: String,
    /// Celery's state (PENDING, STARTED, RETRY, SUCCESS, FAILURE, REVOKED, ...), or EXPIRED when
    /// the result is gone but the reservation is still retained.
    pub state: String,
    // As the result backend holds it (passed on unchanged, whichever worker wrote it).
    /// What `process_order` returned (SUCCESS only).
    #[schema(required = true, value_type = Option<OrderOutcome>)]
    pub result: Option<Value>,
    /// Why it failed (FAILURE, REVOKED).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<TaskError>,
    /// When the task ended.
    #[schema(required = true)]
    pub date_done: Option<String>,
    /// How the order ended, once stock was reserved or refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reservation: Option<Reservation>,
}

impl OrderView {
    /// The view of `order_id`: its task's state and its reservation, if still retained (a task
    /// state PENDING with a reservation means the result has expired: EXPIRED).
    fn new(order_id: String, task: submit::TaskView, reservation: Option<Reservation>) -> Self {
        let state = if reservation.is_some() && task.state == "PENDING" {
            "EXPIRED".to_owned()
        } else {
            task.state
        };
        OrderView {
            order_id,
            task_id: task.task_id,
            state,
            result: task.result,
            error: task.error,
            date_done: task.date_done,
            reservation,
        }
    }
}

/// The body of `PUT /inventory/{sku}`.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct StockUpdate {
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64)]
    pub available: i64,
}

impl FromJson for StockUpdate {
    fn from_json(body: &Map<String, Value>) -> Result<Self, ValidationErrors> {
        let mut f = Fields::new();
        let available = f.integer(body, "", "available");
        if let Some(a) = available {
            if !(0..=MAX_STOCK).contains(&a) {
                f.error("available", format!("must be between 0 and {MAX_STOCK}"));
            }
        }
        f.finish(StockUpdate {
            available: available.unwrap_or(0),
        })
    }
}

/// A SKU's available stock.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StockLevel {
    pub sku: String,
    pub available: i64,
}

/// Validates the order and enqueues `process_order` once per order id.
#[utoipa::path(post, path = "/orders", tag = "orders", request_body = NewOrder,
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Accepted: `process_order` enqueued", body = OrderAccepted),
        (status = 200, description = "This `order_id` was accepted before: its task, nothing new enqueued", body = OrderAccepted),
        BodyErrors, Unauthorized, Invalid, QueueFull, Unavailable))]
pub async fn create_order(body: Map<String, Value>, state: State) -> Reply {
    // Boxed: the submission future is large, and warp nests every route's future in one.
    let (status, accepted) = Box::pin(submit::create::<ProcessOrder>(body, state)).await?;
    Ok(json_reply(status, &OrderAccepted::from(accepted)))
}

/// The order's task state and, once processed, its outcome and stock reservation. When the
/// result has expired (`RESULT_EXPIRES_SECS`) but the reservation is still retained, the state
/// is `EXPIRED` and the reservation says how the order ended.
#[utoipa::path(get, path = "/orders/{order_id}", tag = "orders",
    params(("order_id" = Id, Path, description = "The order's id")),
    security(("bearer" = [])),
    responses((status = 200, description = "The order's state", body = OrderView),
        BadHeader, Unauthorized, NotFound, Unreadable, Unavailable))]
pub async fn get_order(order_id: String, state: State) -> Reply {
    let task_id = submit::accepted_task::<ProcessOrder>(&order_id, &state).await?;
    let task = submit::task_state::<ProcessOrder>(&order_id, task_id, &state).await?;
    let reservation = state
        .call(|| inventory::reservation(&state.redis, &order_id))
        .await
        .map_err(ApiError::reject)?;
    let view = OrderView::new(order_id, task, reservation);
    Ok(json_reply(StatusCode::OK, &view))
}

/// Sets the available stock of a SKU.
#[utoipa::path(put, path = "/inventory/{sku}", tag = "inventory", request_body = StockUpdate,
    params(("sku" = Id, Path, description = "An id: letters, digits, `. _ : -`")),
    security(("bearer" = [])),
    responses((status = 200, description = "The stock now", body = StockLevel),
        BodyErrors, Unauthorized, Invalid, Unavailable))]
pub async fn put_stock(sku: String, body: Map<String, Value>, state: State) -> Reply {
    let sku = valid_sku(sku)?;
    let StockUpdate { available } = validated(&body)?;
    state
        .call(|| inventory::set_stock(&state.redis, &sku, available))
        .await
        .map_err(ApiError::reject)?;
    Ok(json_reply(StatusCode::OK, &StockLevel { sku, available }))
}

/// The available stock of a SKU (0 when never set).
#[utoipa::path(get, path = "/inventory/{sku}", tag = "inventory",
    params(("sku" = Id, Path, description = "An id: letters, digits, `. _ : -`")),
    security(("bearer" = [])),
    responses((status = 200, description = "The stock (0 when never set)", body = StockLevel),
        BadHeader, Unauthorized, Invalid, Unavailable))]
pub async fn get_stock(sku: String, state: State) -> Reply {
    let sku = valid_sku(sku)?;
    let available = state
        .call(|| inventory::get_stock(&state.redis, &sku))
        .await
        .map_err(ApiError::reject)?;
    Ok(json_reply(StatusCode::OK, &StockLevel { sku, available }))
}

fn valid_sku(sku: String) -> Result<String, Rejection> {
    if is_id(&sku) {
        Ok(sku)
    } else {
        Err(ApiError::validation(ValidationErrors::single(
            "sku",
            "may contain only letters, digits, '.', '_', ':' and '-' (1-128 characters)",
        ))
        .reject())
    }
}
