//! The configuration of Redis every process reads from its environment ([`RedisConfig`]: the
//! broker's and the result backend's URLs, Sentinel, `WAIT`, queues and routes, kombu's key
//! layout), built with the generic helpers of the `envconf` crate (where `.env`, [`Source`],
//! bounds and exit status 2 live). A bad value names its variable; URLs are never echoed.

use std::time::Duration;

use envconf::{boolean, number, raw, ConfigError, Source};

use crate::conn::RedisUrl;
use crate::routes::Routes;

pub mod layout;
mod queues;
pub mod sentinel;

/// Variables every process reads (through [`RedisConfig`]); logging's are `envconf`'s.
pub const REDIS_VARIABLES: &[&str] = &[
    "REDIS_URL",
    "RESULT_BACKEND_URL",
    "CELERY_QUEUE",
    "TASK_ROUTES",
    "RESULT_EXPIRES_SECS",
    "REDIS_TIMEOUT_MS",
    "RETENTION_SECS",
    "ALLOW_EVICTION",
    "BROKER_PRIORITY_STEPS",
    "BROKER_KEY_SEP",
    "BROKER_KEY_PREFIX",
];

/// Longest result lifetime accepted: ten years (Redis refuses TTLs near `i64::MAX` ms, and every
/// SETEX would then fail).
pub const MAX_RESULT_EXPIRES_SECS: u64 = 10 * 365 * 86_400;

fn redis_url(
    src: &dyn Source,
    var: &'static str,
    default: Option<&RedisUrl>,
) -> Result<RedisUrl, ConfigError> {
    match (raw(src, var)?, default) {
        (None, Some(default)) => Ok(default.clone()),
        (Some(raw), _) if crate::conn::is_url(&raw) => sentinel::url(src, var, &raw),
        (raw, _) => {
            RedisUrl::parse(raw.as_deref().unwrap_or("redis://127.0.0.1:6379/0")).map_err(|e| {
                ConfigError {
                    var,
                    // The error text of redis-rs never contains the password; the URL is not echoed.
                    reason: format!("not a usable Redis URL ({})", e.category()),
                }
            })
        }
    }
}

/// What every process needs to reach the broker and the result backend.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// Broker: `REDIS_URL` (default `redis://127.0.0.1:6379/0`).
    pub url: RedisUrl,
    /// Result backend: `RESULT_BACKEND_URL` (default: the broker URL, as one Redis db).
    pub result_url: RedisUrl,
    /// `CELERY_QUEUE` (default `celery`): Celery's `task_default_queue`.
    pub queue: String,
    /// `TASK_ROUTES`: the queue of each task by name (default: every task to `queue`).
    pub routes: Routes,
    /// `RESULT_EXPIRES_SECS`: TTL of stored results; 0 keeps them forever (default 86400, Celery's).
    pub result_expires: Duration,
    /// `REDIS_TIMEOUT_MS`: bound on one Redis call made while answering a request (default 2000).
    pub timeout: Duration,
    /// `RETENTION_SECS`: lifetime of the keys this project writes per task (idempotency keys,
    /// stock reservations, delivery records, recipient lists); default 7 days.
    pub retention: Duration,
    /// `ALLOW_EVICTION`: start even when Redis's `maxmemory-policy` may evict keys (default false).
    pub allow_eviction: bool,
    /// `BROKER_PRIORITY_STEPS`, `BROKER_KEY_SEP`, `BROKER_KEY_PREFIX`: where kombu's keys are
    /// (its `priority_steps`, `sep` and `global_keyprefix` transport options; see [`layout`]).
    pub layout: crate::keys::Layout,
}

impl RedisConfig {
    /// Reads the variables of [`REDIS_VARIABLES`] (but the logging ones) and
    /// [`sentinel::SENTINEL_VARIABLES`] from `src`.
    pub fn from_source(src: &dyn Source) -> Result<Self, ConfigError> {
        let url = redis_url(src, "REDIS_URL", None)?;
        let result_url = redis_url(src, "RESULT_BACKEND_URL", Some(&url))?;
        let queue = queues::default_queue(src)?;
        let routes = queues::task_routes(src, &queue)?;
        let (url, result_url) = sentinel::with_wait(src, url, result_url)?;
        Ok(RedisConfig {
            url,
            result_url,
            queue,
            routes,
            result_expires: Duration::from_secs(number(
                src,
                "RESULT_EXPIRES_SECS",
                86_400,
                (0, MAX_RESULT_EXPIRES_SECS),
            )?),
            timeout: Duration::from_millis(number(src, "REDIS_TIMEOUT_MS", 2000, (1, 600_000))?),
            retention: Duration::from_secs(number(
                src,
                "RETENTION_SECS",
                7 * 86_400,
                (1, MAX_RESULT_EXPIRES_SECS),
            )?),
            allow_eviction: boolean(src, "ALLOW_EVICTION", false)?,
            layout: layout::layout(src)?,
        })
    }

    /// Whether results live in the broker's database (then a task's end is one script).
    pub fn results_in_broker_db(&self) -> bool {
        self.url.same_database(&self.result_url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use testkit::vars as src;

    /// Every variable read here is documented in `.env.example`, each binary's own one, and
    /// `docs/configuration.md`; and this file reads no variable missing from the list.
    #[test]
    fn every_variable_is_documented() {
        testkit::docs::assert_documented(
            REDIS_VARIABLES,
            &[
                "worker/.env.example",
                "service-order/.env.example",
                "service-notification/.env.example",
            ],
        );
        testkit::docs::assert_reads_only(include_str!("config.rs"), REDIS_VARIABLES);
    }

    #[test]
    fn defaults_are_celerys() {
        let c = RedisConfig::from_source(&src(&[])).unwrap();
        assert_eq!(c.queue, "celery");
        assert_eq!(c.routes.queue_for("process_order"), "celery");
        assert_eq!(c.result_expires, Duration::from_secs(86_400));
        assert!(c.results_in_broker_db());
        assert_eq!(c.url.redacted(), "127.0.0.1:6379/0");
    }

    #[test]
    fn results_elsewhere_are_noticed() {
        let c = RedisConfig::from_source(&src(&[
            ("REDIS_URL", "redis://h:1/0"),
            ("RESULT_BACKEND_URL", "redis://h:1/1"),
        ]))
        .unwrap();
        assert!(!c.results_in_broker_db());
    }

    #[test]
    fn redis_url_errors_and_debug_do_not_show_the_password() {
        let err = RedisConfig::from_source(&src(&[("REDIS_URL", "postgres://u:s3cret@h/0")]))
            .unwrap_err();
        assert_eq!(err.var, "REDIS_URL");
        assert!(!err.to_string().contains("s3cret"), "{err}");
        let c = RedisConfig::from_source(&src(&[("REDIS_URL", "redis://u:s3cret@h:7/2")])).unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("u:***@h:7/2"), "{shown}");
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (var, value) in [
            ("REDIS_TIMEOUT_MS", "0"),
            ("REDIS_TIMEOUT_MS", "18446744073709551615"),
            ("RESULT_EXPIRES_SECS", "9300000000000000"),
            ("RESULT_EXPIRES_SECS", "-1"),
            ("CELERY_QUEUE", "a b"),
            ("CELERY_QUEUE", "unacked"),
            ("CELERY_QUEUE", "fleet:stock:A"),
            ("TASK_ROUTES", "process_order"),
            ("TASK_ROUTES", "process_order=unacked"),
        ] {
            let err = RedisConfig::from_source(&src(&[(var, value)])).unwrap_err();
            assert_eq!(err.var, var, "{value}");
        }
    }

    #[test]
    fn an_empty_value_is_an_error_not_the_default() {
        for var in REDIS_VARIABLES {
            let err = RedisConfig::from_source(&src(&[(var, " ")])).unwrap_err();
            assert_eq!(err.var, *var);
            assert!(err.reason.contains("empty"), "{err}");
        }
    }
}
