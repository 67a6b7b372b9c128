//! The worker's small HTTP listener (`WORKER_METRICS_BIND`): `GET /metrics` (Prometheus text;
//! the queue gauges read from Redis at scrape time, bounded) and `GET /healthz` (200 while the
//! worker runs and its Redis answers and is confirmed to keep every key, 503 otherwise). Plain hyper: the worker has no web
//! framework.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use observe::metrics::{HostLabels, CONTENT_TYPE};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use celery_redis::shutdown::Shutdown;

use crate::context::Context;

/// Connections served at once (a scraper and a probe need one each).
const MAX_CONNECTIONS: usize = 16;
/// Bound on reading a request's headers, and on the Redis reads of a scrape.
const TIMEOUT: Duration = Duration::from_secs(2);

/// The labels of this worker's own gauges.
pub fn host(ctx: &Context) -> HostLabels {
    HostLabels {
        hostname: celery_redis::node::host_of(&ctx.node).to_owned(),
    }
}

/// Asks the worker listening on `addr` (its `WORKER_METRICS_BIND`) which node it is: one
/// `GET /healthz` (a plain HTTP/1.0 exchange, the answer read up to 4 KiB within `timeout`).
pub async fn node_at(addr: std::net::SocketAddr, timeout: Duration) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream.write_all(b"GET /healthz HTTP/1.0\r\n\r\n").await?;
        let mut answer = Vec::new();
        stream.take(4096).read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = match tokio::time::timeout(timeout, exchange).await {
        Err(_) => return Err("no answer in time".into()),
        Ok(Err(e)) => return Err(e.to_string()),
        Ok(Ok(answer)) => answer,
    };
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(head.lines().next().unwrap_or("no answer").to_owned());
    }
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("node")?.as_str().map(str::to_owned))
        .ok_or_else(|| "not this project's worker".into())
}

/// Serves until `stop`.
pub async fn serve(listener: TcpListener, ctx: Arc<Context>, mut stop: Shutdown) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            _ = stop.wait() => return,
            a = listener.accept() => a,
        };
        let Ok((stream, _)) = accepted else { continue };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue; // over the cap: the connection is closed
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| answer(ctx.clone(), req));
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(TIMEOUT)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(Duration::from_secs(60), conn).await;
            drop(permit);
        });
    }
}

async fn answer(ctx: Arc<Context>, req: Request<Incoming>) -> Result<Response<String>, Infallible> {
    let reply = |status: StatusCode, content_type: &str, body: String| {
        let mut r = Response::new(body);
        *r.status_mut() = status;
        if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
            r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
        }
        r
    };
    if req.method() != Method::GET {
        return Ok(reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        ));
    }
    Ok(match req.uri().path() {
        "/metrics" => reply(StatusCode::OK, CONTENT_TYPE, scrape(&ctx).await),
        "/healthz" => match healthy(&ctx).await {
            Ok(()) => reply(
                StatusCode::OK,
                "application/json",
                serde_json::json!({"status": "ok", "node": ctx.node}).to_string(),
            ),
            Err(_) => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "application/json",
                "{\"status\":\"redis unavailable\"}".into(),
            ),
        },
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    })
}

/// Whether the worker's Redis answers and is confirmed to keep every key (no claim is made
/// otherwise: `Conn::confirm`).
async fn healthy(ctx: &Context) -> redis::RedisResult<()> {
    celery_redis::conn::ping(&ctx.redis, TIMEOUT).await?;
    let confirmed = async { ctx.redis.confirm().await.map_err(redis::RedisError::from) };
    celery_redis::conn::bounded(TIMEOUT, confirmed).await
}

/// Reads the gauges that need Redis (one pipeline per consumed queue, bounded), then encodes
/// everything.
async fn scrape(ctx: &Context) -> String {
    let counted = tokio::time::timeout(TIMEOUT, ctx.broker.stats_of(&ctx.queues)).await;
    let m = &ctx.metrics;
    celery_redis::broker::export(&m.fleet, counted.ok().and_then(Result::ok));
    let host = host(ctx);
    let active = i64::try_from(ctx.registry.active_count()).unwrap_or(i64::MAX);
    m.worker.tasks_active.get_or_create(&host).set(active);
    m.encode()
}
