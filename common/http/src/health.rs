//! Health: `GET /healthz` (the process answers), `GET /readyz` (Redis answers and is confirmed
//! to keep every key), and the client behind the `healthcheck` subcommand (the images have no
//! shell or curl).

use std::net::SocketAddr;
use std::time::Duration;

use celery_redis::conn::{bounded, Conn};
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use crate::body::{json_reply, with_state};
use crate::error::ApiError;
use crate::openapi::HealthStatus;

/// How long the `healthcheck` subcommand waits for an answer.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// `GET /healthz`: the process answers.
pub fn healthz() -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    warp::path!("healthz")
        .and(warp::get())
        .map(|| json_reply(StatusCode::OK, &HealthStatus::OK))
}

/// `GET /readyz`: Redis answers within `limit`, and `redis` is confirmed to reach a server that
/// keeps every key (`Conn::confirm`).
pub fn readyz(
    redis: Conn,
    limit: Duration,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    warp::path!("readyz")
        .and(warp::get())
        .and(with_state(redis))
        .then(move |redis: Conn| async move {
            let confirmed = bounded(limit, async {
                redis.confirm().await.map_err(redis::RedisError::from)
            });
            let ready = match celery_redis::conn::ping(&redis, limit).await {
                Ok(()) => confirmed.await,
                Err(e) => Err(e),
            };
            match ready {
                Ok(()) => json_reply(StatusCode::OK, &HealthStatus::READY),
                Err(e) => ApiError::unavailable(&e).into_response(),
            }
        })
}

/// GETs `/healthz` of the service listening on `bind` (on this host); returns the process exit
/// code: 0 healthy, 1 not.
pub async fn check(bind: SocketAddr) -> i32 {
    let mut addr = bind;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    match tokio::time::timeout(CHECK_TIMEOUT, http_status(addr, "/healthz")).await {
        Ok(Ok(200)) => 0,
        Ok(Ok(status)) => {
            eprintln!("unhealthy: /healthz answered {status}");
            1
        }
        Ok(Err(e)) => {
            eprintln!("unhealthy: {e}");
            1
        }
        Err(_) => {
            eprintln!("unhealthy: no answer within {CHECK_TIMEOUT:?}");
            1
        }
    }
}

/// The status code of a plain HTTP/1.1 GET (enough for a health check; no client crate needed).
async fn http_status(addr: SocketAddr, path: &str) -> std::io::Result<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut head = [0u8; 32];
    let n = stream.read(&mut head).await?;
    std::str::from_utf8(&head[..n])
        .ok()
        .and_then(|s| s.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP answer"))
}
