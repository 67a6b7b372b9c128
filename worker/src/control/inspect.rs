//! The read-only answers of remote control, shaped as a Python worker's (the captures in
//! `common/celery/tests/fixtures/celery-vectors/events-control` show each): `stats`, `conf`,
//! `active_queues`, `registered`. What runs and what is revoked comes from the registry.

use celery_redis::conn::RedisUrl;
use serde_json::{json, Value};

use crate::config::WorkerConfig;
use crate::registry::Registry;

/// `stats`: Flower reads `total` and `broker` (both must be objects), the rest with `.get`.
pub fn stats(cfg: &WorkerConfig, registry: &Registry, clock: u64) -> Value {
    json!({
        "total": registry.totals(),
        "pid": celery_redis::node::pid(),
        "clock": clock.to_string(),
        "uptime": registry.uptime(),
        "pool": {
            "implementation": "tokio",
            "max-concurrency": cfg.concurrency,
            "threads": cfg.threads,
            "processes": [celery_redis::node::pid()],
        },
        "broker": broker(&cfg.redis.url),
        "prefetch_count": cfg.concurrency,
        "rusage": rusage(),
    })
}

/// kombu's `Connection.info()` without the password.
fn broker(url: &RedisUrl) -> Value {
    let info = url.client().get_connection_info();
    let (host, port, ssl) = match info.addr() {
        redis::ConnectionAddr::Tcp(h, p) => (h.clone(), Some(*p), false),
        redis::ConnectionAddr::TcpTls { host, port, .. } => (host.clone(), Some(*port), true),
        redis::ConnectionAddr::Unix(path) => (path.display().to_string(), None, false),
        _ => (String::new(), None, false),
    };
    json!({
        "hostname": host,
        "userid": info.redis_settings().username(),
        "virtual_host": url.db().to_string(),
        "port": port,
        "insist": false,
        "ssl": ssl,
        "transport": match (url.unix_socket(), url.topology().sentinels()) {
            (Some(_), _) => "redis+socket",
            (None, Some(_)) => "sentinel",
            (None, None) => "redis",
        },
        "connect_timeout": Value::Null,
        "transport_options": {},
        "login_method": Value::Null,
        "uri_prefix": Value::Null,
        "heartbeat": Value::Null,
        "failover_strategy": "round-robin",
        "alternates": [],
    })
}

/// `getrusage(RUSAGE_SELF)`, as Python's `resource.getrusage` names the fields.
fn rusage() -> Value {
    // SAFETY: getrusage writes a complete `rusage` into the zeroed struct we own.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut u) != 0 {
            return json!({});
        }
        u
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    json!({
        "utime": secs(usage.ru_utime), "stime": secs(usage.ru_stime),
        "maxrss": usage.ru_maxrss, "ixrss": usage.ru_ixrss, "idrss": usage.ru_idrss,
        "isrss": usage.ru_isrss, "minflt": usage.ru_minflt, "majflt": usage.ru_majflt,
        "nswap": usage.ru_nswap, "inblock": usage.ru_inblock, "oublock": usage.ru_oublock,
        "msgsnd": usage.ru_msgsnd, "msgrcv": usage.ru_msgrcv, "nsignals": usage.ru_nsignals,
        "nvcsw": usage.ru_nvcsw, "nivcsw": usage.ru_nivcsw,
    })
}

/// `conf`: the settings that differ from Celery's defaults, URLs without their passwords.
pub fn conf(cfg: &WorkerConfig, task_events: bool) -> Value {
    json!({
        "broker_url": format!("redis://{}", cfg.redis.url.redacted()),
        "result_backend": format!("redis://{}", cfg.redis.result_url.redacted()),
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "enable_utc": true,
        "timezone": "UTC",
        "task_default_queue": cfg.redis.queue,
        "task_routes": cfg.redis.routes.rules().map(|(pattern, queue)| (pattern.to_owned(), json!({"queue": queue}))).collect::<serde_json::Map<_, _>>(),
        "task_acks_late": cfg.acks_late,
        "task_track_started": cfg.track_started,
        "worker_concurrency": cfg.concurrency,
        "worker_send_task_events": task_events,
        "result_expires": cfg.redis.result_expires.as_secs(),
        "broker_transport_options": {"visibility_timeout": cfg.visibility_timeout.as_secs()},
    })
}

/// `active_queues`: kombu's `Queue.as_dict(recurse=True)` of each queue consumed.
pub fn active_queues(cfg: &WorkerConfig) -> Value {
    let queue = |q: &String| {
        json!({
        "name": q,
        "exchange": {"name": q, "type": "direct", "arguments": null, "durable": true,
                     "passive": false, "auto_delete": false, "delivery_mode": null,
                     "no_declare": false},
        "routing_key": q, "queue_arguments": null, "binding_arguments": null,
        "consumer_arguments": null, "durable": true, "exclusive": false, "auto_delete": false,
        "no_ack": false, "alias": null, "bindings": [], "no_declare": null, "expires": null,
        "message_ttl": null, "max_length": null, "max_length_bytes": null, "max_priority": null,
        })
    };
    Value::Array(cfg.queues.iter().map(queue).collect())
}
