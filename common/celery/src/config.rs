//! Configuration from environment variables, read once at start-up into typed values.
//!
//! `.env` is loaded first, from the working directory, whole or not at all ([`envfile`]; real
//! environment variables win). A bad value stops the
//! program with a message that names the variable; URLs are never echoed (they may hold
//! passwords). This module has the reading helpers every process uses and [`RedisConfig`]; the
//! worker's and the services' own settings live in their crates, built with the same helpers.

use std::time::Duration;

use crate::routes::Routes;

pub mod envfile;
pub mod layout;
mod queues;
pub mod sentinel;

use crate::conn::RedisUrl;

/// Variables every process reads (through [`RedisConfig`]), plus logging.
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
    "RUST_LOG",
    "LOG_FORMAT",
];

/// Longest result lifetime accepted: ten years (Redis refuses TTLs near `i64::MAX` ms, and every
/// SETEX would then fail).
pub const MAX_RESULT_EXPIRES_SECS: u64 = 10 * 365 * 86_400;

/// A variable with a value the program cannot use.
#[derive(Debug, thiserror::Error)]
#[error("invalid {var}: {reason}")]
pub struct ConfigError {
    /// The variable's name.
    pub var: &'static str,
    /// What is wrong with its value (never the value of a URL, which may hold a password).
    pub reason: String,
}

/// Where variables come from: the process environment, or any `Fn(&str) -> Option<String>`,
/// which is how tests pass a map:
///
/// ```
/// use celery_redis::config::RedisConfig;
/// let vars = |var: &str| (var == "CELERY_QUEUE").then(|| "orders".to_owned());
/// let cfg = RedisConfig::from_source(&vars).unwrap();
/// assert_eq!(cfg.queue, "orders");
/// ```
pub trait Source {
    /// The value of `var`, `None` when it is not set.
    fn get(&self, var: &str) -> Option<String>;
}

/// The process environment (after `.env` has been loaded).
pub struct ProcessEnv;

impl Source for ProcessEnv {
    fn get(&self, var: &str) -> Option<String> {
        std::env::var(var).ok()
    }
}

impl<F: Fn(&str) -> Option<String>> Source for F {
    fn get(&self, var: &str) -> Option<String> {
        self(var)
    }
}

/// Loads `.env` from the working directory ([`envfile`]) and starts logging in the
/// `LOG_FORMAT`, stopping the program when either cannot be used; the first thing every `main`
/// does (the worker, its admin subcommands and both services).
pub fn init() {
    let loaded = envfile::load().unwrap_or_else(|e| fail(&e));
    observe::log::init(log_format(&ProcessEnv).unwrap_or_else(|e| fail(&e)));
    if let Some(count) = loaded {
        log::info!(
            "loaded {} ({count} variables; the environment's own win)",
            envfile::ENV_FILE
        );
    }
}

/// `LOG_FORMAT`: `text` (the default) or `json` (one object per line).
pub fn log_format(src: &dyn Source) -> Result<observe::log::Format, ConfigError> {
    match raw(src, "LOG_FORMAT")? {
        None => Ok(observe::log::Format::Text),
        Some(v) => v.parse().map_err(|reason| ConfigError {
            var: "LOG_FORMAT",
            reason,
        }),
    }
}

/// The value of `var`, `None` when unset. A variable set to an empty (or blank) value is an
/// error, not the default: `REDIS_URL=""` must not quietly mean the default Redis.
pub fn raw(src: &dyn Source, var: &'static str) -> Result<Option<String>, ConfigError> {
    match src.get(var) {
        Some(v) if v.trim().is_empty() => Err(ConfigError {
            var,
            reason: "is set but empty; unset it to use the default".into(),
        }),
        other => Ok(other),
    }
}

/// `var` parsed as a `T`, or `default` when unset; `expected` names the kind in the error.
pub fn parse<T: std::str::FromStr>(
    src: &dyn Source,
    var: &'static str,
    default: T,
    expected: &str,
) -> Result<T, ConfigError> {
    match raw(src, var)? {
        None => Ok(default),
        Some(raw) => raw.trim().parse().map_err(|_| ConfigError {
            var,
            reason: format!("{raw:?} is not {expected}"),
        }),
    }
}

/// A whole number from `min` to `max` (inclusive), or `default` when unset.
pub fn number(
    src: &dyn Source,
    var: &'static str,
    default: u64,
    (min, max): (u64, u64),
) -> Result<u64, ConfigError> {
    let expected = format!("a whole number from {min} to {max}");
    let v = parse(src, var, default, &expected)?;
    if !(min..=max).contains(&v) {
        return Err(ConfigError {
            var,
            reason: format!("{v} is not {expected}"),
        });
    }
    Ok(v)
}

/// A count from `min` to `max`, as a `usize`.
pub fn count(
    src: &dyn Source,
    var: &'static str,
    default: u64,
    range: (u64, u64),
) -> Result<usize, ConfigError> {
    usize::try_from(number(src, var, default, range)?).map_err(|_| ConfigError {
        var,
        reason: "is too large for this machine".into(),
    })
}

/// Stops the program on a configuration error: the message goes to stderr directly (whatever
/// `RUST_LOG` says) and the exit status is 2.
pub fn fail(e: &ConfigError) -> ! {
    eprintln!("error: {e}");
    std::process::exit(2);
}

/// `true/false`, `1/0`, `yes/no`, `on/off`.
pub fn boolean(src: &dyn Source, var: &'static str, default: bool) -> Result<bool, ConfigError> {
    match raw(src, var)?.map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) => match v.as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err(ConfigError {
                var,
                reason: format!("{v:?} is not a boolean (true/false)"),
            }),
        },
    }
}

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
    fn log_format_is_text_or_json() {
        use observe::log::Format;
        assert_eq!(log_format(&src(&[])).unwrap(), Format::Text);
        assert_eq!(
            log_format(&src(&[("LOG_FORMAT", "json")])).unwrap(),
            Format::Json
        );
        for bad in ["yaml", " ", "JSON lines"] {
            let err = log_format(&src(&[("LOG_FORMAT", bad)])).unwrap_err();
            assert_eq!(err.var, "LOG_FORMAT", "{bad}");
        }
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
        // Logging is read by `init`, not here (an empty LOG_FORMAT: `log_format_is_text_or_json`).
        for var in REDIS_VARIABLES
            .iter()
            .filter(|v| !["RUST_LOG", "LOG_FORMAT"].contains(*v))
        {
            let err = RedisConfig::from_source(&src(&[(var, " ")])).unwrap_err();
            assert_eq!(err.var, *var);
            assert!(err.reason.contains("empty"), "{err}");
        }
    }
}
