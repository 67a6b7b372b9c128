//! The connections a process needs, made once at start-up: the broker's database and the
//! result backend (the same connection when they are one database).

use redis::RedisResult;

use crate::config::RedisConfig;
use crate::connection::{Conn, Waits};
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
                cfg.result_url.client().clone(),
                cfg.result_expires,
                shared,
            ),
        })
    }
}
