//! The connections a process needs, made once at start-up: the broker's database and the
//! result backend (the same connection when they are one database), each checked for a server
//! that keeps every key ([`crate::eviction`]) before work is taken or accepted on it.

use redis::RedisResult;

use crate::config::RedisConfig;
use crate::conn::{Conn, Waits};
use crate::eviction::Unconfirmed;
use crate::result::ResultBackend;
use envconf::ConfigError;

/// The connections a process needs: the broker's database and the result backend.
#[derive(Clone)]
pub struct Stores {
    /// The broker's database (queues, and the shop's keys).
    pub redis: Conn,
    /// The result backend, on its own connection or on `redis`'s.
    pub results: ResultBackend,
}

impl Stores {
    /// Connects lazily to the broker and, when it is another database, to the result backend;
    /// both connections check the eviction policy (see [`Stores::confirm`]).
    pub fn connect(cfg: &RedisConfig, waits: Waits) -> RedisResult<Self> {
        let redis = Conn::new(&cfg.url, waits)?.checking_eviction("REDIS_URL", cfg.allow_eviction);
        let shared = cfg.results_in_broker_db();
        let results_conn = if shared {
            redis.clone()
        } else {
            Conn::new(&cfg.result_url, waits)?
                .checking_eviction("RESULT_BACKEND_URL", cfg.allow_eviction)
        };
        Ok(Stores {
            redis,
            results: ResultBackend::new(
                results_conn,
                cfg.result_url.clone(),
                cfg.result_expires,
                shared,
            ),
        })
    }

    /// Ok when the servers both connections reach now are confirmed to keep every key (asked
    /// once per (re)connection; see [`Conn::confirm`]). The worker asks before each claim, a
    /// service before each submission: nothing is taken or accepted on a server that may evict
    /// keys or that cannot be asked.
    pub async fn confirm(&self) -> Result<(), Unconfirmed> {
        self.redis.confirm().await?;
        self.results.connection().confirm().await
    }

    /// Start-up checks of what the configuration points at: a Unix socket that does not exist,
    /// a database the server does not have, sentinels that do not know the master, and a server
    /// that may evict keys (or is older than Redis 7) are refused. A Redis that cannot be asked
    /// (down) is logged, not refused: the process starts and takes no work until
    /// [`Stores::confirm`] succeeds.
    pub async fn check(&self, cfg: &RedisConfig) -> Result<(), ConfigError> {
        let conns = [
            ("REDIS_URL", &self.redis, &cfg.url),
            (
                "RESULT_BACKEND_URL",
                self.results.connection(),
                &cfg.result_url,
            ),
        ];
        for (var, conn, url) in conns {
            // A socket file that does not exist is a wrong path, not a Redis still starting.
            if let Some(path) = url.unix_socket().filter(|p| !p.exists()) {
                return Err(ConfigError {
                    var,
                    reason: format!(
                        "names the Unix socket {}, which does not exist",
                        path.display()
                    ),
                });
            }
            match conn.confirm().await {
                Ok(()) => {}
                Err(Unconfirmed::Refused { var, reason }) => {
                    return Err(ConfigError { var, reason });
                }
                Err(Unconfirmed::Unasked { error, .. }) => {
                    let resolved = conn.resolve_error().await;
                    if let Some(reason) = resolved.and_then(|e| e.misconfigured()) {
                        return Err(ConfigError { var, reason });
                    }
                    if error.to_string().contains("DB index is out of range") {
                        return Err(ConfigError {
                            var,
                            reason: "names a database this Redis does not have".into(),
                        });
                    }
                    // Logged by the check itself; it is asked again before any work.
                }
            }
        }
        Ok(())
    }
}
