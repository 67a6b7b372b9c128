//! The worker's settings, read once at start-up (with the helpers of `celery_redis::config`).

use std::time::Duration;

use celery_redis::config::RedisConfig;
use celery_redis::node;
use celery_redis::protocol::{Limits, MAX_DELIVERIES, MAX_MESSAGE_BYTES};
use envconf::{boolean, count, number, parse, raw, ConfigError, Source};

/// Variables only the worker reads.
pub const WORKER_VARIABLES: &[&str] = &[
    "WORKER_CONCURRENCY",
    "WORKER_THREADS",
    "VISIBILITY_TIMEOUT_SECS",
    "BROKER_VISIBILITY_TIMEOUT_SECS",
    "WORKER_SHUTDOWN_TIMEOUT_SECS",
    "WORKER_ACKS_LATE",
    "WORKER_TRACK_STARTED",
    "RESULT_EXTENDED",
    "RESULT_CHORD_ORDERED",
    "TASK_MAX_RETRIES",
    "TASK_RETRY_BACKOFF_MS",
    "UNKNOWN_TASK_HANDBACKS",
    "UNKNOWN_TASK_HANDBACK_DELAY_MS",
    "DEAD_LETTER_MAX",
    "WORKER_NAME",
    "WORKER_SEND_TASK_EVENTS",
    "WORKER_METRICS_BIND",
    "WORKER_QUEUES",
    "MESSAGE_MAX_BYTES",
    "MESSAGE_MAX_DELIVERIES",
    "BROKER_QUEUE_ORDER",
];

/// What to do with a task nobody here runs (see [`crate::delivery::unknown`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unknown {
    /// Hand-backs before giving up (0: fail at once, as Celery does).
    pub handbacks: u32,
    /// How long a handed-back message waits before it is on its queue again.
    pub delay: Duration,
}

/// The worker's settings.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// `REDIS_URL` and the other Redis variables: broker, result backend, queue, key layout.
    pub(crate) redis: RedisConfig,
    /// `WORKER_QUEUES`: the queues it consumes, like Celery's `-Q` (default: `CELERY_QUEUE`).
    pub queues: Vec<String>,
    /// `BROKER_QUEUE_ORDER`: kombu's `queue_order_strategy` (default `round_robin`).
    pub queue_order: celery_redis::keys::QueueOrder,
    /// `WORKER_CONCURRENCY`: tasks run at once (default: number of cores).
    pub concurrency: usize,
    /// `WORKER_THREADS`: threads that run tasks (default 1: a current-thread runtime, which
    /// spends the least CPU per task when the tasks wait on Redis and HTTP; raise it for tasks
    /// that compute, or run one worker process per core).
    pub threads: usize,
    /// `VISIBILITY_TIMEOUT_SECS`: a task whose worker stops renewing its lease comes back after this (default 30).
    pub visibility_timeout: Duration,
    /// `BROKER_VISIBILITY_TIMEOUT_SECS`: kombu's `visibility_timeout` of the fleet (default
    /// 3600, Celery's): what a Python worker holds comes back only after this.
    pub broker_visibility_timeout: Duration,
    /// `WORKER_SHUTDOWN_TIMEOUT_SECS`: grace period for in-flight tasks on SIGTERM (default 30).
    pub shutdown_timeout: Duration,
    /// `WORKER_ACKS_LATE`: acknowledge after the result is stored (default true).
    pub acks_late: bool,
    /// `WORKER_TRACK_STARTED`: store STARTED when a task begins (default true).
    pub track_started: bool,
    /// `RESULT_EXTENDED`: Celery's `result_extended`: stored results carry the task's name,
    /// args, kwargs, worker, retries and queue (default false, as Celery's).
    pub result_extended: bool,
    /// `RESULT_CHORD_ORDERED`: Celery's `result_backend_transport_options`
    /// `result_chord_ordered`: a chord's join key is a ZSET by header position (default true,
    /// as Celery's), else a LIST in arrival order. The same on every worker of a chord.
    pub chord_ordered: bool,
    /// `TASK_MAX_RETRIES`: retries of a transient failure before the task fails (default 4).
    pub max_retries: u32,
    /// `TASK_RETRY_BACKOFF_MS`: base of the exponential retry backoff with full jitter (default 1000).
    pub retry_backoff: Duration,
    /// `UNKNOWN_TASK_HANDBACKS` (default 0: FAILURE `NotRegistered` at once, as Celery) and
    /// `UNKNOWN_TASK_HANDBACK_DELAY_MS` (default 1000): a task name this worker does not run
    /// is handed back to its queue that many times, after that delay, for another worker.
    pub unknown: Unknown,
    /// `DEAD_LETTER_MAX`: dead letters kept, newest first (default 10000); older ones are
    /// dropped and counted.
    pub dead_letter_max: usize,
    /// `WORKER_NAME`: the node name, a template like Celery's `-n` (`%h` host, `%n` its first
    /// label, `%d` the domain); default `rust<pid>-<boot id>@<host>`, unique per start.
    pub node: String,
    /// Whether `WORKER_NAME` set the node name (the health check then pings it by name).
    pub named: bool,
    /// `WORKER_SEND_TASK_EVENTS`: send task events from the start, like `celery worker -E`
    /// (default false; Flower switches them on with `enable_events`).
    pub task_events: bool,
    /// `WORKER_METRICS_BIND`: where `/metrics` and `/healthz` listen (default
    /// `127.0.0.1:9808`, celery-exporter's port; `0.0.0.0:9808` in the image).
    pub metrics_bind: std::net::SocketAddr,
    /// Whether `WORKER_METRICS_BIND` was set: only the default gives way to a free port when
    /// taken (a second worker on the host); an address asked for must be had.
    pub metrics_bind_set: bool,
    /// `MESSAGE_MAX_BYTES` (default 1 MiB: largest entry, and body once inflated; each part may
    /// hold 1/16 as many JSON values) and `MESSAGE_MAX_DELIVERIES` (default 5: a message given
    /// back this many times by restores is dead-lettered at its next delivery).
    pub limits: Limits,
}

impl WorkerConfig {
    /// Reads every setting from `src`; the error names the first variable with a value the
    /// worker cannot use.
    pub fn from_source(src: &dyn Source) -> Result<Self, ConfigError> {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let redis = RedisConfig::from_source(src)?;
        let concurrency = count(
            src,
            "WORKER_CONCURRENCY",
            u64::try_from(cores).unwrap_or(1),
            (1, 10_000),
        )?;
        Ok(WorkerConfig {
            queues: match raw(src, "WORKER_QUEUES")? {
                None => vec![redis.queue.clone()],
                Some(spec) => {
                    celery_redis::routes::parse_queues(&spec).map_err(|reason| ConfigError {
                        var: "WORKER_QUEUES",
                        reason,
                    })?
                }
            },
            redis,
            queue_order: celery_redis::config::layout::queue_order(src)?,
            concurrency,
            threads: count(src, "WORKER_THREADS", 1, (1, 256))?,
            visibility_timeout: Duration::from_secs(number(
                src,
                "VISIBILITY_TIMEOUT_SECS",
                30,
                (1, 7 * 86_400),
            )?),
            broker_visibility_timeout: Duration::from_secs(number(
                src,
                "BROKER_VISIBILITY_TIMEOUT_SECS",
                3600,
                (1, 7 * 86_400),
            )?),
            shutdown_timeout: Duration::from_secs(number(
                src,
                "WORKER_SHUTDOWN_TIMEOUT_SECS",
                30,
                (0, 86_400),
            )?),
            acks_late: boolean(src, "WORKER_ACKS_LATE", true)?,
            track_started: boolean(src, "WORKER_TRACK_STARTED", true)?,
            result_extended: boolean(src, "RESULT_EXTENDED", false)?,
            chord_ordered: boolean(src, "RESULT_CHORD_ORDERED", true)?,
            named: raw(src, "WORKER_NAME")?.is_some(),
            node: match raw(src, "WORKER_NAME")? {
                None => node::unique(),
                Some(t) => {
                    node::from_template(&t, &node::hostname()).map_err(|reason| ConfigError {
                        var: "WORKER_NAME",
                        reason,
                    })?
                }
            },
            task_events: boolean(src, "WORKER_SEND_TASK_EVENTS", false)?,
            metrics_bind: parse(
                src,
                "WORKER_METRICS_BIND",
                ([127, 0, 0, 1], 9808).into(),
                "an address:port",
            )?,
            metrics_bind_set: raw(src, "WORKER_METRICS_BIND")?.is_some(),
            unknown: Unknown {
                handbacks: u32::try_from(number(src, "UNKNOWN_TASK_HANDBACKS", 0, (0, 1000))?)
                    .unwrap_or(1000),
                delay: Duration::from_millis(number(
                    src,
                    "UNKNOWN_TASK_HANDBACK_DELAY_MS",
                    1000,
                    (1, 3_600_000),
                )?),
            },
            dead_letter_max: count(src, "DEAD_LETTER_MAX", 10_000, (1, 10_000_000))?,
            max_retries: u32::try_from(number(src, "TASK_MAX_RETRIES", 4, (0, 1000))?)
                .unwrap_or(1000),
            retry_backoff: Duration::from_millis(number(
                src,
                "TASK_RETRY_BACKOFF_MS",
                1000,
                (1, 3_600_000),
            )?),
            limits: Limits {
                max_bytes: count(
                    src,
                    "MESSAGE_MAX_BYTES",
                    u64::try_from(MAX_MESSAGE_BYTES).unwrap_or(u64::MAX),
                    (16 * 1024, 64 * 1024 * 1024),
                )?,
                max_deliveries: u32::try_from(number(
                    src,
                    "MESSAGE_MAX_DELIVERIES",
                    u64::from(MAX_DELIVERIES),
                    (1, 1000),
                )?)
                .unwrap_or(1000),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use testkit::vars as src;

    #[test]
    fn every_variable_is_documented() {
        testkit::docs::assert_documented(WORKER_VARIABLES, &["worker/.env.example"]);
        testkit::docs::assert_reads_only(include_str!("config.rs"), WORKER_VARIABLES);
    }

    #[test]
    fn defaults_are_celerys() {
        let c = WorkerConfig::from_source(&src(&[])).unwrap();
        assert_eq!(c.redis.queue, "celery");
        assert_eq!(c.queues, ["celery"]);
        let c = WorkerConfig::from_source(&src(&[("CELERY_QUEUE", "q")])).unwrap();
        assert_eq!(c.queues, ["q"]);
        let c = WorkerConfig::from_source(&src(&[("WORKER_QUEUES", "a, b")])).unwrap();
        assert_eq!(c.queues, ["a", "b"]);
        assert!(c.acks_late);
        assert!(c.chord_ordered, "Celery's result_chord_ordered is True");
        assert!(c.concurrency >= 1);
        assert_eq!(c.threads, 1);
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (var, value) in [
            ("WORKER_CONCURRENCY", "lots"),
            ("WORKER_CONCURRENCY", "0"),
            ("WORKER_CONCURRENCY", "18446744073709551615"),
            ("WORKER_THREADS", "0"),
            ("WORKER_THREADS", "5000"),
            ("WORKER_ACKS_LATE", "maybe"),
            ("WORKER_ACKS_LATE", ""),
            ("VISIBILITY_TIMEOUT_SECS", "18446744073709551615"),
            ("BROKER_VISIBILITY_TIMEOUT_SECS", "0"),
            ("WORKER_SHUTDOWN_TIMEOUT_SECS", "18446744073709551615"),
            ("TASK_MAX_RETRIES", "4294967296"),
            ("TASK_RETRY_BACKOFF_MS", "0"),
            ("UNKNOWN_TASK_HANDBACKS", "1001"),
            ("UNKNOWN_TASK_HANDBACK_DELAY_MS", "0"),
            ("WORKER_NAME", "w@%x"),
            ("WORKER_NAME", "a b@h"),
            ("WORKER_SEND_TASK_EVENTS", "yes please"),
            ("WORKER_METRICS_BIND", "localhost"),
            ("WORKER_QUEUES", "orders,,notifications"),
            ("WORKER_QUEUES", "orders,orders"),
            ("WORKER_QUEUES", "unacked"),
            ("MESSAGE_MAX_BYTES", "1000"),
            ("MESSAGE_MAX_BYTES", "1e9"),
            ("MESSAGE_MAX_DELIVERIES", "0"),
            ("BROKER_QUEUE_ORDER", "fair"),
        ] {
            let err = WorkerConfig::from_source(&src(&[(var, value)])).unwrap_err();
            assert_eq!(err.var, var);
        }
    }
}
