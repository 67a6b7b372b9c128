//! A service's metrics: `GET /metrics` (the text exposition; queue gauges read from Redis at
//! scrape time, bounded by the request timeout) and the accounting of every HTTP exchange
//! (by route template, never the raw path), including submissions refused; and the count of
//! tasks sent, which the submit path calls where it publishes.

use observe::metrics::{HttpLabels, Metrics, ReasonLabels, RouteLabels, TaskLabels, CONTENT_TYPE};
use warp::http::StatusCode;
use warp::{Filter, Rejection};

use celery_redis::broker::Broker;

use crate::body::with_state;

/// `GET /metrics`: `metrics`, with the gauges of the queues `broker` routes to read within
/// `timeout`. A service's route table puts it behind the API's bearer tokens (Prometheus sends
/// one with `authorization: {credentials: ...}`).
pub fn route(
    metrics: Metrics,
    broker: Broker,
    timeout: std::time::Duration,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    warp::path!("metrics")
        .and(warp::get())
        .and(with_state((metrics, broker)))
        .then(move |(metrics, broker): (Metrics, Broker)| async move {
            // Every queue this service can route a task to.
            let queues = broker.routes().queues();
            let counted = tokio::time::timeout(timeout, broker.stats_of(&queues)).await;
            celery_redis::broker::export(&metrics.fleet, counted.ok().and_then(Result::ok));
            let mut response = warp::reply::Response::new(metrics.encode().into());
            if let Ok(v) = warp::http::HeaderValue::from_str(CONTENT_TYPE) {
                response
                    .headers_mut()
                    .insert(warp::http::header::CONTENT_TYPE, v);
            }
            response
        })
}

/// The first path segments the two services route (every other path is `unmatched`, so a
/// scanner cannot create label values).
const ROUTED: [&str; 7] = [
    "healthz",
    "readyz",
    "metrics",
    "openapi.json",
    "orders",
    "inventory",
    "notifications",
];

/// The route template of a request: a routed first segment, each further one as `{id}` (at
/// most one: no route is deeper); `unmatched` for a 404 or anything else.
pub fn template(path: &str, status: StatusCode) -> String {
    let mut segments = path.split('/').filter(|s| !s.is_empty());
    match (status, segments.next()) {
        (StatusCode::NOT_FOUND, _) => "unmatched".into(),
        (_, Some(first)) if ROUTED.contains(&first) => match segments.count() {
            0 => format!("/{first}"),
            1 => format!("/{first}/{{id}}"),
            _ => "unmatched".into(),
        },
        _ => "unmatched".into(),
    }
}

/// Counts a task this process published (by `origin`, in the queue `routes` sends it to):
/// called where it is published, once the message is known to be queued.
pub fn sent(metrics: &Metrics, origin: &str, routes: &celery_redis::routes::Routes, task: &str) {
    metrics
        .tasks
        .sent
        .get_or_create(&TaskLabels {
            name: task.into(),
            hostname: celery_redis::node::host_of(origin).into(),
            queue_name: routes.queue_for(task).into(),
        })
        .inc();
}

/// Accounts one exchange: its duration and status by route template, and a submission refused
/// (backpressure or Redis).
pub fn record(metrics: &Metrics, info: &warp::log::Info<'_>) {
    let status = info.status();
    let route = template(info.path(), status);
    let method = match *info.method() {
        ref m
            if [
                warp::http::Method::GET,
                warp::http::Method::POST,
                warp::http::Method::PUT,
                warp::http::Method::DELETE,
                warp::http::Method::HEAD,
            ]
            .contains(m) =>
        {
            m.as_str().to_owned()
        }
        _ => "other".into(),
    };
    let is_post = method == "POST";
    metrics
        .http
        .duration
        .get_or_create(&RouteLabels {
            route: route.clone(),
            method: method.clone(),
        })
        .observe(info.elapsed().as_secs_f64());
    let refused = match status {
        StatusCode::TOO_MANY_REQUESTS if is_post => Some("backpressure"),
        StatusCode::SERVICE_UNAVAILABLE if is_post => Some("redis"),
        _ => None,
    };
    if let Some(reason) = refused {
        metrics
            .http
            .submissions_refused
            .get_or_create(&ReasonLabels {
                reason: reason.into(),
            })
            .inc();
    }
    metrics
        .http
        .requests
        .get_or_create(&HttpLabels {
            route,
            method,
            status: status.as_u16().to_string(),
        })
        .inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_never_carry_ids_or_unknown_paths() {
        assert_eq!(template("/orders/o-1", StatusCode::OK), "/orders/{id}");
        assert_eq!(template("/orders", StatusCode::ACCEPTED), "/orders");
        assert_eq!(template("/orders/x", StatusCode::NOT_FOUND), "unmatched");
        assert_eq!(
            template("/Admin%20x", StatusCode::UNAUTHORIZED),
            "unmatched"
        );
        assert_eq!(template("/", StatusCode::OK), "unmatched");
        assert_eq!(template("/scan-me", StatusCode::UNAUTHORIZED), "unmatched");
        assert_eq!(template("/orders/a/b", StatusCode::OK), "unmatched");
        assert_eq!(template("/metrics", StatusCode::OK), "/metrics");
    }
}
