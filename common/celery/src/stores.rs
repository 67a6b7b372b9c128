//! The connections a process needs, made once at start-up: the broker's database and the
//! result backend (the same connection when they are one database).

use std::time::Duration;

use redis::RedisResult;

use crate::config::{ConfigError, RedisConfig};
use crate::connection::{bounded, Conn, Waits};
use crate::result::ResultBackend;

/// The connections a process needs: the broker's database and the result backend.
#[derive(Clone)]
pub struct Stores {
    /// The broker's database (queues, and the shop's keys).
    pub redis: Conn,
    pub results: ResultBackend,
}

impl Stores {
    /// Connects lazily to the broker and, when it is another database, to the result backend.
    pub fn connect(cfg: &RedisConfig, waits: Waits) -> RedisResult<Self> {
        let redis = Conn::new(&cfg.url, waits)?;
        let shared = cfg.results_in_broker_db();
        let results_conn = if shared {
            redis.clone()
        } else {
            Conn::new(&cfg.result_url, waits)?
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
}

/// How long the start-up checks wait for Redis before giving up on them (a Redis that is down
/// at start is no configuration error: the process starts and reports "not ready").
const CHECK_WAIT: Duration = Duration::from_secs(2);

impl Stores {
    /// Start-up checks of what the configuration points at: a database the server does not
    /// have, and a `maxmemory-policy` that may evict keys (queue lists, results and idempotency
    /// keys would silently vanish), refused unless `ALLOW_EVICTION=true`. A Redis that cannot
    /// be asked (down, or CONFIG disabled) is logged, not refused.
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
            let asked = bounded(
                CHECK_WAIT,
                redis::cmd("CONFIG")
                    .arg("GET")
                    .arg("maxmemory-policy")
                    .query_async::<Vec<String>>(&mut conn.clone()),
            )
            .await;
            match asked {
                Ok(reply) => match reply.get(1) {
                    Some(policy) if policy != "noeviction" && !cfg.allow_eviction => {
                        return Err(ConfigError {
                            var: "ALLOW_EVICTION",
                            reason: format!("the Redis of {var} has maxmemory-policy {policy}, which may silently drop queued tasks, results and idempotency keys: set maxmemory-policy noeviction, or ALLOW_EVICTION=true to start anyway"),
                        });
                    }
                    _ => {}
                },
                Err(e) if crate::sentinel::misconfigured(&e).is_some() => {
                    return Err(ConfigError {
                        var,
                        reason: crate::sentinel::misconfigured(&e).unwrap_or_default(),
                    });
                }
                Err(e) if e.to_string().contains("DB index is out of range") => {
                    return Err(ConfigError {
                        var,
                        reason: "names a database this Redis does not have".into(),
                    });
                }
                Err(e) => {
                    log::warn!("could not read the maxmemory-policy of {var} ({e}); not checked")
                }
            }
        }
        Ok(())
    }
}
