//! Every route of the order service, composed from small filters (warp's todos layout).

use std::convert::Infallible;

use http_kit::body::{json_object, with_state};
use http_kit::{auth, health, rejection};
use warp::{Filter, Reply};

use crate::{handlers, State};

/// All routes: health open, the API behind the bearer tokens (when configured), errors in the
/// JSON error shape.
pub fn routes(state: State) -> impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone {
    let health = health::routes(state.redis.clone(), state.timeout);
    let auth = auth::required(state.auth.clone());
    let api = create_order(state.clone())
        .or(get_order(state.clone()))
        .or(put_stock(state.clone()))
        .or(get_stock(state));
    health.or(auth.and(api)).recover(rejection::recover)
}

/// `POST /orders` `{order_id?, customer: {id, email}, items: [{sku, quantity, unit_price_cents}]}`
pub fn create_order(
    state: State,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    warp::path!("orders")
        .and(warp::post())
        .and(json_object(state.body_timeout))
        .and(with_state(state))
        .and_then(handlers::create_order)
}

/// `GET /orders/{order_id}`
pub fn get_order(
    state: State,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    warp::path!("orders" / String)
        .and(warp::get())
        .and(with_state(state))
        .and_then(handlers::get_order)
}

/// `PUT /inventory/{sku}` `{available}`
pub fn put_stock(
    state: State,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    warp::path!("inventory" / String)
        .and(warp::put())
        .and(json_object(state.body_timeout))
        .and(with_state(state))
        .and_then(handlers::put_stock)
}

/// `GET /inventory/{sku}`
pub fn get_stock(
    state: State,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    warp::path!("inventory" / String)
        .and(warp::get())
        .and(with_state(state))
        .and_then(handlers::get_stock)
}
