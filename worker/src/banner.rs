//! The start-up banner, as `celery worker` prints one: the node, where it connects (passwords
//! hidden), its concurrency and events, its queues and the tasks it runs.

use crate::config::WorkerConfig;

/// The banner's lines for a worker named `node` running `tasks`.
pub fn lines(cfg: &WorkerConfig, node: &str, tasks: &[&str]) -> Vec<String> {
    let on_off = |on| if on { "ON" } else { "OFF" };
    let mut out = vec![
        format!(
            "-------------- {node} v{} (Rust)",
            env!("CARGO_PKG_VERSION")
        ),
        "[config]".to_owned(),
        format!(".> transport:   {}", cfg.redis.url.redacted()),
        format!(".> results:     {}", cfg.redis.result_url.redacted()),
        format!(
            ".> concurrency: {} (tokio, {} thread(s))",
            cfg.concurrency, cfg.threads
        ),
        format!(
            ".> task events: {} (WORKER_SEND_TASK_EVENTS, or Flower's enable_events)",
            on_off(cfg.task_events)
        ),
        format!(
            ".> acks_late:   {}; lease {} s; kombu visibility {} s",
            on_off(cfg.acks_late),
            cfg.visibility_timeout.as_secs(),
            cfg.broker_visibility_timeout.as_secs()
        ),
        "[queues]".to_owned(),
    ];
    out.extend(cfg.queues.iter().map(|q| format!(".> {q}")));
    out.push("[tasks]".to_owned());
    out.extend(tasks.iter().map(|t| format!("  . {t}")));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use testkit::vars;

    #[test]
    fn names_queues_tasks_and_hides_passwords() {
        let cfg = WorkerConfig::from_source(&vars(&[
            ("REDIS_URL", "redis://:s3cret@h:6379/0"),
            ("WORKER_QUEUES", "orders,notifications"),
        ]))
        .unwrap();
        let text = lines(&cfg, "w@h", &["process_order"]).join("\n");
        assert!(!text.contains("s3cret"), "{text}");
        for part in [
            "w@h",
            ".> orders",
            ".> notifications",
            "  . process_order",
            "OFF",
        ] {
            assert!(text.contains(part), "{part} in {text}");
        }
    }
}
