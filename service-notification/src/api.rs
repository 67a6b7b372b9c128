//! Every route of the notification service, composed from small filters (warp's todos layout).

use std::collections::HashMap;
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
    info(title = "service-notification", description = "Accepts notifications (enqueued as Celery `send_notification` tasks), shows their state and delivery, lists what a recipient was sent."),
    paths(
        handlers::create,
        handlers::get_one,
        handlers::list,
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
    let api = create(state.clone())
        .boxed()
        .or(get_one(state.clone()).boxed())
        .or(list(state.clone()).boxed())
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
    let notifications =
        warp::path!("notifications").and(rejection::allow(&[Method::GET, Method::POST]));
    let one = warp::path("notifications")
        .and(segment())
        .and(warp::path::end())
        .and(rejection::allow(&[Method::GET]))
        .map(|_: String, reply| reply);
    metrics.or(notifications).unify().or(one).unify()
}

/// `POST /notifications` `{notification_id?, recipient, channel: log|webhook, subject, body, url?}`
pub fn create(
    state: State,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    warp::path!("notifications")
        .and(warp::post())
        .and(json_object(state.body_timeout))
        .and(with_state(state))
        .and_then(handlers::create)
}

/// `GET /notifications/{notification_id}`
pub fn get_one(
    state: State,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    warp::path("notifications")
        .and(segment())
        .and(warp::path::end())
        .and(warp::get())
        .and(with_state(state))
        .and_then(handlers::get_one)
}

/// `GET /notifications?recipient=...`
pub fn list(
    state: State,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    warp::path!("notifications")
        .and(warp::get())
        .and(warp::query::<HashMap<String, String>>())
        .and(with_state(state))
        .and_then(handlers::list)
}
