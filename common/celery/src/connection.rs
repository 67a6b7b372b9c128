//! Redis connections: one reconnecting, multiplexed connection per database, with bounded waits.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::RedisResult;

use crate::config::{RedisConfig, RedisUrl};
use crate::result::ResultBackend;

/// How a process waits on Redis: for each reply, and for a connection.
#[derive(Debug, Clone, Copy)]
pub struct Waits {
    /// Longest wait for one reply (`None`: no bound, for blocking commands' own connections).
    pub response: Option<Duration>,
    /// Connection attempts a call makes (with backoff) before it fails. A worker retries
    /// (2); a service answering requests fails at once (0), so a refused connection is
    /// known to have written nothing and the request answers within its bound.
    pub connect_retries: usize,
}

/// A multiplexed connection that reconnects by itself with backoff. It is created lazily, so a
/// process starts (and reports "not ready") while Redis is still down.
pub fn manager(url: &RedisUrl, waits: Waits) -> RedisResult<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(waits.response)
        .set_number_of_retries(waits.connect_retries)
        .set_max_delay(Duration::from_millis(500));
    ConnectionManager::new_lazy_with_config(url.client().clone(), config)
}

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
    fn is_transient(&self) -> bool;
}

impl Transient for redis::RedisError {
    fn is_transient(&self) -> bool {
        self.is_io_error() || self.is_connection_dropped() || self.is_connection_refusal()
    }
}

impl Transient for crate::result::ResultError {
    fn is_transient(&self) -> bool {
        matches!(self, crate::result::ResultError::Redis(e) if e.is_transient())
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
pub async fn ping(conn: &ConnectionManager, limit: Duration) -> RedisResult<()> {
    let mut conn = conn.clone();
    bounded(limit, async move {
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(drop)
    })
    .await
}

/// The connections a process needs: the broker's database and the result backend.
#[derive(Clone)]
pub struct Stores {
    /// The broker's database (queues, and the shop's keys).
    pub redis: ConnectionManager,
    pub results: ResultBackend,
}

impl Stores {
    /// Connects lazily to the broker and, when it is another database, to the result backend.
    pub fn connect(cfg: &RedisConfig, waits: Waits) -> RedisResult<Self> {
        let redis = manager(&cfg.url, waits)?;
        let shared = cfg.results_in_broker_db();
        let results_conn = if shared {
            redis.clone()
        } else {
            manager(&cfg.result_url, waits)?
        };
        Ok(Stores {
            redis,
            results: ResultBackend::new(
                results_conn,
                cfg.result_url.client().clone(),
                cfg.result_expires,
                shared,
            ),
        })
    }
}
