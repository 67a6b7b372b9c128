//! Calls on any connection: bounded in time ([`bounded`], [`ping`]), and retried once on a
//! fresh connection when the first died under them ([`retry_once`], [`Transient`]).

use std::time::Duration;

use redis::RedisResult;

use super::connection::Conn;

/// Runs one Redis call with an upper bound on its duration, so nothing waits on Redis forever.
pub async fn bounded<T>(
    limit: Duration,
    call: impl std::future::Future<Output = RedisResult<T>>,
) -> RedisResult<T> {
    match tokio::time::timeout(limit, call).await {
        Ok(result) => result,
        Err(_) => Err(redis::RedisError::from((
            redis::ErrorKind::Io,
            "redis did not answer in time",
        ))),
    }
}

/// An error after which the same call on a fresh connection may well succeed: a connection
/// killed (CLIENT KILL, a restart) or dropped; the connection manager reconnects meanwhile.
pub trait Transient {
    /// Whether this error is such an error, worth one retry on a fresh connection.
    fn is_transient(&self) -> bool;
}

impl Transient for redis::RedisError {
    fn is_transient(&self) -> bool {
        self.is_io_error() || self.is_connection_dropped() || self.is_connection_refusal()
    }
}

/// Runs an idempotent call, and once more when it failed on a dead connection: a killed
/// connection costs the caller nothing. Only for calls that may run twice (reads, and writes
/// guarded by an idempotency key).
pub async fn retry_once<T, E, F, Fut>(call: F) -> Result<T, E>
where
    E: Transient,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    match call().await {
        Err(e) if e.is_transient() => {
            log::info!("retrying once on a fresh connection");
            call().await
        }
        other => other,
    }
}

/// `PING`, bounded.
pub async fn ping(conn: &Conn, limit: Duration) -> RedisResult<()> {
    let mut conn = conn.clone();
    bounded(limit, async move {
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(drop)
    })
    .await
}
