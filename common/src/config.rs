//! Configuration from environment variables, read once at start-up into typed structs.
//!
//! `.env` is loaded with dotenvy first (real environment variables win). A bad value stops the
//! program with a message that names the variable; URLs are never echoed (they may hold passwords).

use std::net::SocketAddr;
use std::time::Duration;

/// Variables every process reads (through [`RedisConfig`]), plus logging.
pub const REDIS_VARIABLES: &[&str] = &[
    "REDIS_URL",
    "RESULT_BACKEND_URL",
    "CELERY_QUEUE",
    "RESULT_EXPIRES_SECS",
    "REDIS_TIMEOUT_MS",
    "RUST_LOG",
];
/// Variables only the HTTP services read (besides their bind address).
pub const SERVICE_VARIABLES: &[&str] = &["MAX_QUEUE_DEPTH"];
/// Variables only the worker reads.
pub const WORKER_VARIABLES: &[&str] = &[
    "WORKER_CONCURRENCY",
    "WORKER_THREADS",
    "VISIBILITY_TIMEOUT_SECS",
    "WORKER_SHUTDOWN_TIMEOUT_SECS",
    "WORKER_ACKS_LATE",
    "WORKER_TRACK_STARTED",
    "WEBHOOK_TIMEOUT_MS",
    "TASK_MAX_RETRIES",
    "TASK_RETRY_BACKOFF_MS",
];

/// A variable with a value the program cannot use.
#[derive(Debug, thiserror::Error)]
#[error("invalid {var}: {reason}")]
pub struct ConfigError {
    pub var: &'static str,
    pub reason: String,
}

/// Where variables come from: the process environment, or a map in tests.
pub trait Source {
    fn get(&self, var: &str) -> Option<String>;
}

/// The process environment (after `.env` has been loaded).
pub struct ProcessEnv;

impl Source for ProcessEnv {
    fn get(&self, var: &str) -> Option<String> {
        std::env::var(var).ok().filter(|v| !v.trim().is_empty())
    }
}

impl<F: Fn(&str) -> Option<String>> Source for F {
    fn get(&self, var: &str) -> Option<String> {
        self(var)
    }
}

/// Loads `.env` (if present) and starts logging; the first thing every `main` does.
pub fn init() {
    let dotenv = dotenvy::dotenv();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match dotenv {
        Ok(path) => log::info!("loaded {}", path.display()),
        Err(e) if e.not_found() => {}
        Err(e) => log::warn!("ignoring .env: {e}"),
    }
}

fn parse<T: std::str::FromStr>(
    src: &dyn Source,
    var: &'static str,
    default: T,
    expected: &str,
) -> Result<T, ConfigError> {
    match src.get(var) {
        None => Ok(default),
        Some(raw) => raw.trim().parse().map_err(|_| ConfigError {
            var,
            reason: format!("{raw:?} is not {expected}"),
        }),
    }
}

fn positive(src: &dyn Source, var: &'static str, default: u64) -> Result<u64, ConfigError> {
    let v = parse(src, var, default, "a positive integer")?;
    if v == 0 {
        return Err(ConfigError {
            var,
            reason: "must be greater than 0".into(),
        });
    }
    Ok(v)
}

fn boolean(src: &dyn Source, var: &'static str, default: bool) -> Result<bool, ConfigError> {
    match src.get(var).map(|v| v.trim().to_ascii_lowercase()) {
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

fn redis_url(src: &dyn Source, var: &'static str, default: &str) -> Result<String, ConfigError> {
    let url = src.get(var).unwrap_or_else(|| default.to_owned());
    crate::connection::client(&url).map_err(|e| ConfigError {
        var,
        // The error text of redis-rs never contains the password; the URL itself is not echoed.
        reason: format!("not a usable Redis URL ({})", e.category()),
    })?;
    Ok(url)
}

fn queue_name(src: &dyn Source) -> Result<String, ConfigError> {
    let queue = src.get("CELERY_QUEUE").unwrap_or_else(|| "celery".into());
    if !crate::validation::is_id(&queue) {
        return Err(ConfigError {
            var: "CELERY_QUEUE",
            reason: "must be 1-128 characters of letters, digits, '.', '_', ':' or '-'".into(),
        });
    }
    Ok(queue)
}

/// What every process needs to reach the broker and the result backend.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// Broker: `REDIS_URL` (default `redis://127.0.0.1:6379/0`).
    pub url: String,
    /// Result backend: `RESULT_BACKEND_URL` (default: the broker URL, as one Redis db).
    pub result_url: String,
    /// `CELERY_QUEUE` (default `celery`).
    pub queue: String,
    /// `RESULT_EXPIRES_SECS`: TTL of stored results; 0 keeps them forever (default 86400, Celery's).
    pub result_expires: Duration,
    /// `REDIS_TIMEOUT_MS`: bound on one Redis call made while answering a request (default 2000).
    pub timeout: Duration,
}

impl RedisConfig {
    pub fn from_source(src: &dyn Source) -> Result<Self, ConfigError> {
        let url = redis_url(src, "REDIS_URL", "redis://127.0.0.1:6379/0")?;
        let result_url = redis_url(src, "RESULT_BACKEND_URL", &url)?;
        Ok(RedisConfig {
            url,
            result_url,
            queue: queue_name(src)?,
            result_expires: Duration::from_secs(parse(
                src,
                "RESULT_EXPIRES_SECS",
                86_400,
                "a number of seconds",
            )?),
            timeout: Duration::from_millis(positive(src, "REDIS_TIMEOUT_MS", 2000)?),
        })
    }
}

/// An HTTP service: where it listens, and Redis.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub bind: SocketAddr,
    pub redis: RedisConfig,
    /// `MAX_QUEUE_DEPTH`: submissions get 429 while this many messages wait (0: no limit; default 100000).
    pub max_queue_depth: u64,
}

impl ServiceConfig {
    /// `bind_var` names the service's own address variable (`ORDER_BIND`, `NOTIFICATION_BIND`).
    pub fn from_source(
        src: &dyn Source,
        bind_var: &'static str,
        default_bind: SocketAddr,
    ) -> Result<Self, ConfigError> {
        Ok(ServiceConfig {
            bind: parse(
                src,
                bind_var,
                default_bind,
                "a socket address like 127.0.0.1:8080",
            )?,
            redis: RedisConfig::from_source(src)?,
            max_queue_depth: parse(src, "MAX_QUEUE_DEPTH", 100_000, "a number of messages")?,
        })
    }
}

/// The worker's settings.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub redis: RedisConfig,
    /// `WORKER_CONCURRENCY`: tasks run at once (default: number of cores).
    pub concurrency: usize,
    /// `WORKER_THREADS`: threads that run tasks (default 1: a current-thread runtime, which
    /// spends the least CPU per task when the tasks wait on Redis and HTTP; raise it for tasks
    /// that compute, or run one worker process per core).
    pub threads: usize,
    /// `VISIBILITY_TIMEOUT_SECS`: a task whose worker stops renewing its lease comes back after this (default 30).
    pub visibility_timeout: Duration,
    /// `WORKER_SHUTDOWN_TIMEOUT_SECS`: grace period for in-flight tasks on SIGTERM (default 30).
    pub shutdown_timeout: Duration,
    /// `WORKER_ACKS_LATE`: acknowledge after the result is stored (default true).
    pub acks_late: bool,
    /// `WORKER_TRACK_STARTED`: store STARTED when a task begins (default true).
    pub track_started: bool,
    /// `WEBHOOK_TIMEOUT_MS`: one webhook POST attempt (default 5000).
    pub webhook_timeout: Duration,
    /// `TASK_MAX_RETRIES`: retries of a transient failure before the task fails (default 4).
    pub max_retries: u32,
    /// `TASK_RETRY_BACKOFF_MS`: base of the exponential retry backoff with full jitter (default 1000).
    pub retry_backoff: Duration,
}

impl WorkerConfig {
    pub fn from_source(src: &dyn Source) -> Result<Self, ConfigError> {
        let cores = std::thread::available_parallelism().map_or(1, usize::from) as u64;
        Ok(WorkerConfig {
            redis: RedisConfig::from_source(src)?,
            concurrency: positive(src, "WORKER_CONCURRENCY", cores)? as usize,
            threads: positive(src, "WORKER_THREADS", 1)? as usize,
            visibility_timeout: Duration::from_secs(positive(src, "VISIBILITY_TIMEOUT_SECS", 30)?),
            shutdown_timeout: Duration::from_secs(parse(
                src,
                "WORKER_SHUTDOWN_TIMEOUT_SECS",
                30,
                "a number of seconds",
            )?),
            acks_late: boolean(src, "WORKER_ACKS_LATE", true)?,
            track_started: boolean(src, "WORKER_TRACK_STARTED", true)?,
            webhook_timeout: Duration::from_millis(positive(src, "WEBHOOK_TIMEOUT_MS", 5000)?),
            max_retries: parse(src, "TASK_MAX_RETRIES", 4, "a number of retries")?,
            retry_backoff: Duration::from_millis(positive(src, "TASK_RETRY_BACKOFF_MS", 1000)?),
        })
    }
}

/// This run's identity, `rust<pid>-<boot id>@<host>`: unique per process start (a random boot
/// id), so a restart or a replica with the same host and pid is never mistaken for another.
/// Used where Celery writes `origin` and a worker's `hostname`.
pub fn node_name() -> String {
    static NODE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NODE.get_or_init(make_node_name).clone()
}

fn make_node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    let boot = uuid::Uuid::new_v4().simple().to_string();
    format!("rust{}-{}@{}", std::process::id(), &boot[..8], host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn src(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k: &str| map.get(k).cloned()
    }

    /// Every variable read anywhere must be documented in the `.env.example` files and the README.
    #[test]
    fn env_examples_and_readme_document_every_variable() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap_or_default();
        let has = |text: &str, var: &str| text.lines().any(|l| l.starts_with(&format!("{var}=")));
        let all: Vec<&str> = REDIS_VARIABLES
            .iter()
            .chain(WORKER_VARIABLES)
            .chain(SERVICE_VARIABLES)
            .chain(&["ORDER_BIND", "NOTIFICATION_BIND"])
            .copied()
            .collect();
        let readme = read("README.md");
        for var in &all {
            assert!(has(&read(".env.example"), var), ".env.example lacks {var}");
            assert!(
                readme.contains(&format!("| `{var}` |")),
                "README's table lacks {var}"
            );
        }
        for (file, own) in [
            ("worker/.env.example", WORKER_VARIABLES),
            (
                "service-order/.env.example",
                &["ORDER_BIND", "MAX_QUEUE_DEPTH"][..],
            ),
            (
                "service-notification/.env.example",
                &["NOTIFICATION_BIND", "MAX_QUEUE_DEPTH"][..],
            ),
        ] {
            for var in REDIS_VARIABLES.iter().chain(own) {
                assert!(has(&read(file), var), "{file} lacks {var}");
            }
        }
        // And nothing in the sources reads a variable missing from the lists above.
        for src in ["common/src/config.rs", "common/src/service.rs"] {
            let text = read(src);
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            for var in code
                .split('"')
                .filter(|s| s.len() > 3 && s.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
                .filter(|s| s.contains('_') && !s.starts_with("UNUSED"))
            {
                assert!(
                    all.contains(&var) || var == "HOSTNAME",
                    "{src} reads undocumented {var}"
                );
            }
        }
    }

    #[test]
    fn defaults_are_celerys() {
        let c = WorkerConfig::from_source(&src(&[])).unwrap();
        assert_eq!(c.redis.queue, "celery");
        assert_eq!(c.redis.result_expires, Duration::from_secs(86_400));
        assert_eq!(c.redis.result_url, c.redis.url);
        assert!(c.acks_late);
        assert!(c.concurrency >= 1);
        assert_eq!(c.threads, 1);
    }

    #[test]
    fn bad_values_name_their_variable() {
        let err = WorkerConfig::from_source(&src(&[("WORKER_CONCURRENCY", "lots")])).unwrap_err();
        assert_eq!(err.var, "WORKER_CONCURRENCY");
        let err = WorkerConfig::from_source(&src(&[("WORKER_CONCURRENCY", "0")])).unwrap_err();
        assert_eq!(err.var, "WORKER_CONCURRENCY");
        let err = WorkerConfig::from_source(&src(&[("WORKER_THREADS", "0")])).unwrap_err();
        assert_eq!(err.var, "WORKER_THREADS");
        let err = WorkerConfig::from_source(&src(&[("WORKER_ACKS_LATE", "maybe")])).unwrap_err();
        assert_eq!(err.var, "WORKER_ACKS_LATE");
        let err = ServiceConfig::from_source(
            &src(&[("ORDER_BIND", "nowhere")]),
            "ORDER_BIND",
            ([127, 0, 0, 1], 1).into(),
        )
        .unwrap_err();
        assert_eq!(err.var, "ORDER_BIND");
    }

    #[test]
    fn redis_url_errors_do_not_echo_the_password() {
        let err = RedisConfig::from_source(&src(&[("REDIS_URL", "postgres://u:s3cret@h/0")]))
            .unwrap_err();
        assert_eq!(err.var, "REDIS_URL");
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }
}
