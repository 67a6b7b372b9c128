//! An HTTP service's settings, read once at start-up: where it listens, backpressure, Redis.

use std::net::SocketAddr;

use std::time::Duration;

use celery_redis::config::RedisConfig;
use envconf::{count, number, parse, ConfigError, Source};

use crate::auth::Auth;
use crate::serve::Limits;

/// Variables only the HTTP services read (besides their bind address).
pub const SERVICE_VARIABLES: &[&str] = &[
    "MAX_QUEUE_DEPTH",
    "API_TOKENS",
    "API_PUBLIC",
    "HTTP_REQUEST_TIMEOUT_MS",
    "HTTP_MAX_CONNECTIONS",
    "SHUTDOWN_TIMEOUT_SECS",
];

/// An HTTP service: where it listens, and Redis.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// The service's own address variable (`ORDER_BIND`, `NOTIFICATION_BIND`): where it listens.
    pub(crate) bind: SocketAddr,
    /// `REDIS_URL` and the other Redis variables: the broker and result backend.
    pub(crate) redis: RedisConfig,
    /// `MAX_QUEUE_DEPTH`: submissions get 429 while this many messages wait (0: no limit; default 100000).
    pub max_queue_depth: u64,
    /// `API_TOKENS`, `API_PUBLIC`: who may call the API.
    pub auth: Auth,
    /// `HTTP_REQUEST_TIMEOUT_MS`, `HTTP_MAX_CONNECTIONS`, `SHUTDOWN_TIMEOUT_SECS`.
    pub limits: Limits,
}

impl ServiceConfig {
    /// `bind_var` names the service's own address variable (`ORDER_BIND`, `NOTIFICATION_BIND`).
    pub fn from_source(
        src: &dyn Source,
        bind_var: &'static str,
        default_bind: SocketAddr,
    ) -> Result<Self, ConfigError> {
        let bind = parse(
            src,
            bind_var,
            default_bind,
            "a socket address like 127.0.0.1:8080",
        )?;
        Ok(ServiceConfig {
            bind,
            auth: Auth::from_source(src, bind, bind_var)?,
            redis: RedisConfig::from_source(src)?,
            max_queue_depth: number(src, "MAX_QUEUE_DEPTH", 100_000, (0, 1_000_000_000))?,
            limits: Limits {
                request_timeout: Duration::from_millis(number(
                    src,
                    "HTTP_REQUEST_TIMEOUT_MS",
                    10_000,
                    (1, 600_000),
                )?),
                max_connections: count(src, "HTTP_MAX_CONNECTIONS", 1024, (1, 100_000))?,
                shutdown_timeout: Duration::from_secs(number(
                    src,
                    "SHUTDOWN_TIMEOUT_SECS",
                    10,
                    (0, 3600),
                )?),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variable_is_documented() {
        testkit::docs::assert_documented(
            SERVICE_VARIABLES,
            &[
                "service-order/.env.example",
                "service-notification/.env.example",
            ],
        );
        testkit::docs::assert_documented(&["ORDER_BIND"], &["service-order/.env.example"]);
        testkit::docs::assert_documented(
            &["NOTIFICATION_BIND"],
            &["service-notification/.env.example"],
        );
        testkit::docs::assert_reads_only(include_str!("config.rs"), SERVICE_VARIABLES);
    }

    #[test]
    fn bad_values_name_their_variable() {
        let src = |var: &str| (var == "ORDER_BIND").then(|| "nowhere".to_owned());
        let err =
            ServiceConfig::from_source(&src, "ORDER_BIND", ([127, 0, 0, 1], 1).into()).unwrap_err();
        assert_eq!(err.var, "ORDER_BIND");
        let src = |var: &str| (var == "MAX_QUEUE_DEPTH").then(|| "-1".to_owned());
        let err =
            ServiceConfig::from_source(&src, "ORDER_BIND", ([127, 0, 0, 1], 1).into()).unwrap_err();
        assert_eq!(err.var, "MAX_QUEUE_DEPTH");
    }
}
