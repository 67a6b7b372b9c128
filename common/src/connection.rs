//! Redis connections: one reconnecting, multiplexed connection per database, with bounded waits.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, RedisResult};

/// Selects rustls' crypto provider once per process, so `rediss://` URLs work whichever other
/// crates also link rustls.
pub fn init_tls() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        // Err means another provider was installed first, which is as good.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    });
}

/// Opens a client for a `redis://` or `rediss://` (TLS) URL, which may carry a username and
/// password (ACL); the URL is never logged.
pub fn client(url: &str) -> RedisResult<Client> {
    init_tls();
    Client::open(url)
}

/// A multiplexed connection that reconnects by itself with backoff. It is created lazily, so a
/// process starts (and reports "not ready") while Redis is still down.
pub fn manager(
    client: &Client,
    response_timeout: Option<Duration>,
) -> RedisResult<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(response_timeout)
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_millis(500));
    ConnectionManager::new_lazy_with_config(client.clone(), config)
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
    /// The broker's database (queues, stock, notification records).
    pub redis: ConnectionManager,
    pub results: crate::result::ResultBackend,
}

impl Stores {
    /// Connects lazily to the broker and, when its URL differs, to the result backend.
    pub fn connect(
        cfg: &crate::config::RedisConfig,
        response_timeout: Option<Duration>,
    ) -> RedisResult<Self> {
        let broker = client(&cfg.url)?;
        let redis = manager(&broker, response_timeout)?;
        let results_client = client(&cfg.result_url)?;
        let results_conn = if cfg.result_url == cfg.url {
            redis.clone()
        } else {
            manager(&results_client, response_timeout)?
        };
        Ok(Stores {
            redis,
            results: crate::result::ResultBackend::new(
                results_conn,
                results_client,
                cfg.result_expires,
            ),
        })
    }
}
