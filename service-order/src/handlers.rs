//! What each order-service route does. Every Redis call is bounded by `State::timeout`, so a
//! slow or absent Redis gives a 503 quickly, never a hang.

use common::connection::bounded;
use common::inventory::{self, MAX_STOCK};
use common::orders;
use common::queue::Submitted;
use common::tasks::{Contract, ProcessOrder};
use common::validation::{is_id, Fields, ValidationErrors};
use common::web::{json_reply, submission_reply, task_view, ApiError};
use serde_json::{json, Map, Value};
use warp::http::StatusCode;
use warp::Rejection;

use crate::State;

type Reply = Result<warp::reply::Response, Rejection>;

fn reject(e: impl Into<ApiError>) -> Rejection {
    warp::reject::custom(e.into())
}

/// Validates the order (generating an id when none is given) and enqueues it once per id:
/// 202 for a new order, 200 with the same task for an order id seen before, 429 when the
/// queue is full.
pub async fn create_order(mut body: Map<String, Value>, state: State) -> Reply {
    if body.get("order_id").is_none_or(Value::is_null) {
        body.insert(
            "order_id".into(),
            Value::String(uuid::Uuid::new_v4().to_string()),
        );
    }
    let order = ProcessOrder::from_kwargs(&body).map_err(|e| reject(ApiError::validation(e)))?;
    let outcome = bounded(state.timeout, orders::submit(&state.broker, &order))
        .await
        .map_err(reject)?;
    if let Submitted::Created(task_id) = &outcome {
        log::info!("order {} accepted as task {task_id}", order.order_id);
    }
    let status_url = format!("/orders/{}", order.order_id);
    submission_reply(outcome, "order_id", &order.order_id, status_url).map_err(reject)
}

/// The order's task state and, once processed, its outcome.
pub async fn get_order(order_id: String, state: State) -> Reply {
    if !is_id(&order_id) {
        return Err(reject(ApiError::not_found(format!(
            "no order {order_id:?}"
        ))));
    }
    let task_id = bounded(state.timeout, orders::task_of(&state.redis, &order_id))
        .await
        .map_err(reject)?
        .ok_or_else(|| reject(ApiError::not_found(format!("no order {order_id:?}"))))?;
    let meta = tokio::time::timeout(state.timeout, state.results.get(&task_id))
        .await
        .map_err(|_| reject(ApiError::unavailable(&"result backend timed out")))?
        .map_err(|e| reject(ApiError::unavailable(&e)))?;
    let mut view = task_view(&meta);
    view["order_id"] = Value::String(order_id);
    Ok(json_reply(StatusCode::OK, &view))
}

/// Sets the available stock of a SKU.
pub async fn put_stock(sku: String, body: Map<String, Value>, state: State) -> Reply {
    let sku = valid_sku(sku)?;
    let mut f = Fields::new();
    let available = f.integer(&body, "", "available");
    if let Some(a) = available {
        if !(0..=MAX_STOCK).contains(&a) {
            f.error("available", format!("must be between 0 and {MAX_STOCK}"));
        }
    }
    let available = f
        .finish(available.unwrap_or(0))
        .map_err(|e| reject(ApiError::validation(e)))?;
    bounded(
        state.timeout,
        inventory::set_stock(&state.redis, &sku, available),
    )
    .await
    .map_err(reject)?;
    Ok(json_reply(
        StatusCode::OK,
        &json!({"sku": sku, "available": available}),
    ))
}

/// The available stock of a SKU (0 when never set).
pub async fn get_stock(sku: String, state: State) -> Reply {
    let sku = valid_sku(sku)?;
    let available = bounded(state.timeout, inventory::get_stock(&state.redis, &sku))
        .await
        .map_err(reject)?;
    Ok(json_reply(
        StatusCode::OK,
        &json!({"sku": sku, "available": available}),
    ))
}

fn valid_sku(sku: String) -> Result<String, Rejection> {
    if is_id(&sku) {
        Ok(sku)
    } else {
        Err(reject(ApiError::validation(ValidationErrors::single(
            "sku",
            "may contain only letters, digits, '.', '_', ':' and '-' (1-128 characters)",
        ))))
    }
}
