//! Every route of the order service, composed from small filters (warp's todos layout).

use std::convert::Infallible;

use http_kit::body::{json_object, segment, with_state};
use http_kit::openapi::{self, BearerAuth};
use http_kit::{auth, health, rejection};
use utoipa::OpenApi;
use warp::http::Method;
use warp::{Filter, Reply};

use crate::{handlers, State};

/// The OpenAPI 3.1 document of every route, served at `GET /openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(title = "service-order", description = "Accepts orders (enqueued as Celery `process_order` tasks), shows their outcome, sets and reads stock."),
    paths(
        handlers::create_order,
        handlers::get_order,
        handlers::put_stock,
        handlers::get_stock,
        openapi::healthz,
        openapi::readyz,
        openapi::metrics,
        openapi::openapi_json
    ),
    components(schemas(http_kit::error::ErrorBody, shop::schema::Id, shop::schema::Email)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// The whole route table, every path this service serves: `/healthz`, `/readyz` and
/// `/openapi.json` open; the API and `/metrics` behind the bearer tokens (when configured); a
/// 405 with `Allow` for any other method on a served path; errors in the JSON error shape.
pub fn routes(state: State) -> impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone {
    let open = health::healthz()
        .or(health::readyz(state.redis.clone(), state.timeout))
        .unify()
        .or(openapi::document(ApiDoc::openapi()))
        .unify()
        .or(open_other_methods());
    let auth = auth::required(state.auth.clone());
    // Each route boxed: its future lives on the heap, so the composed table's future (polled
    // on the caller's stack, deep in a debug build) stays small.
    let api = create_order(state.clone())
        .boxed()
        .or(get_order(state.clone()).boxed())
        .or(put_stock(state.clone()).boxed())
        .or(get_stock(state.clone()).boxed())
        .or(metrics(state).boxed())
        .or(other_methods());
    open.or(auth.and(api)).recover(rejection::recover)
}

/// 405 with `Allow: GET` for any other method on the open paths (before the token check).
pub fn open_other_methods(
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    warp::path!("healthz")
        .or(warp::path!("readyz"))
        .unify()
        .or(warp::path!("openapi.json"))
        .unify()
        .and(rejection::allow(&[Method::GET]))
}

/// `GET /metrics`: the Prometheus text exposition (docs/observability.md; documented by
/// `http_kit::openapi::metrics`).
pub fn metrics(
    state: State,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    http_kit::metrics::route(state.metrics, state.broker, state.timeout)
}

/// 405 with `Allow` for a method a path of the API (or `/metrics`) does not serve.
pub fn other_methods(
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    let metrics = warp::path!("metrics").and(rejection::allow(&[Method::GET]));
    let orders = warp::path!("orders").and(rejection::allow(&[Method::POST]));
    let order = warp::path("orders")
        .and(segment())
        .and(warp::path::end())
        .and(rejection::allow(&[Method::GET]))
        .map(|_: String, reply| reply);
    let inventory = warp::path("inventory")
        .and(segment())
        .and(warp::path::end())
        .and(rejection::allow(&[Method::GET, Method::PUT]))
        .map(|_: String, reply| reply);
    metrics
        .or(orders)
        .unify()
        .or(order)
        .unify()
        .or(inventory)
        .unify()
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
    warp::path("orders")
        .and(segment())
        .and(warp::path::end())
        .and(warp::get())
        .and(with_state(state))
        .and_then(handlers::get_order)
}

/// `PUT /inventory/{sku}` `{available}`
pub fn put_stock(
    state: State,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    warp::path("inventory")
        .and(segment())
        .and(warp::path::end())
        .and(warp::put())
        .and(json_object(state.body_timeout))
        .and(with_state(state))
        .and_then(handlers::put_stock)
}

/// `GET /inventory/{sku}`
pub fn get_stock(
    state: State,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    warp::path("inventory")
        .and(segment())
        .and(warp::path::end())
        .and(warp::get())
        .and(with_state(state))
        .and_then(handlers::get_stock)
}
