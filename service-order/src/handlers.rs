//! What each order-service route does. Every Redis call is bounded by `State::timeout`, so a
//! slow or absent Redis gives a 503 quickly, never a hang. Submitting and reading an order is
//! the generic path of `http_kit::submit`; stock is this service's own.

use http_kit::body::json_reply;
use http_kit::submit;
use http_kit::ApiError;
use serde_json::{json, Map, Value};
use shop::contracts::ProcessOrder;
use shop::inventory::{self, MAX_STOCK};
use shop::validation::{is_id, Fields, ValidationErrors};
use warp::http::StatusCode;
use warp::Rejection;

use crate::State;

type Reply = Result<warp::reply::Response, Rejection>;

/// Validates the order and enqueues `process_order` once per order id.
pub async fn create_order(body: Map<String, Value>, state: State) -> Reply {
    submit::create::<ProcessOrder>(body, state).await
}

/// The order's task state and, once processed, its outcome and stock reservation. When the
/// result has expired (`RESULT_EXPIRES_SECS`) but the reservation is still retained, the state
/// is `EXPIRED` and the reservation says how the order ended.
pub async fn get_order(order_id: String, state: State) -> Reply {
    let task_id = submit::accepted_task::<ProcessOrder>(&order_id, &state).await?;
    let mut view = submit::task_state::<ProcessOrder>(&order_id, task_id, &state).await?;
    let reservation = state
        .call(|| inventory::reservation(&state.redis, &order_id))
        .await
        .map_err(ApiError::reject)?;
    if let Some(r) = reservation {
        if view["state"] == "PENDING" {
            view["state"] = json!("EXPIRED");
        }
        view["reservation"] = json!(r);
    }
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
        .map_err(|e| ApiError::validation(e).reject())?;
    state
        .call(|| inventory::set_stock(&state.redis, &sku, available))
        .await
        .map_err(ApiError::reject)?;
    Ok(json_reply(
        StatusCode::OK,
        &json!({"sku": sku, "available": available}),
    ))
}

/// The available stock of a SKU (0 when never set).
pub async fn get_stock(sku: String, state: State) -> Reply {
    let sku = valid_sku(sku)?;
    let available = state
        .call(|| inventory::get_stock(&state.redis, &sku))
        .await
        .map_err(ApiError::reject)?;
    Ok(json_reply(
        StatusCode::OK,
        &json!({"sku": sku, "available": available}),
    ))
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
