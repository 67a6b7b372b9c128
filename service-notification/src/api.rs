//! Every route of the notification service, composed from small filters (warp's todos layout).

use std::collections::HashMap;
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
    let api = create(state.clone())
        .or(get_one(state.clone()))
        .or(list(state));
    health.or(auth.and(api)).recover(rejection::recover)
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
    warp::path!("notifications" / String)
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
