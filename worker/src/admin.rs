//! Operator subcommands: queue counts and the dead-letter list (list, requeue, purge).

use celery_redis::broker::Broker;
use celery_redis::config::RedisConfig;

/// The subcommands `worker` understands besides running.
pub const USAGE: &str =
    "usage: worker [run | stats | dead-letters [N] | requeue-dead [N] | purge-dead]";

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Usage(String),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// Runs one subcommand and returns what to print (JSON for machines, one line per entry).
pub async fn run(cfg: &RedisConfig, args: &[String]) -> Result<String, AdminError> {
    let waits = celery_redis::connection::Waits {
        response: Some(cfg.timeout),
        connect_retries: 2,
    };
    let conn = celery_redis::connection::Conn::new(&cfg.url, waits)?;
    let broker = Broker::new(conn, cfg.queue.clone(), celery_redis::node::unique());
    let count = |default: usize| -> Result<usize, AdminError> {
        match args.get(1) {
            None => Ok(default),
            Some(n) => n
                .parse()
                .map_err(|_| AdminError::Usage(format!("{n:?} is not a count\n{USAGE}"))),
        }
    };
    match args.first().map(String::as_str) {
        Some("stats") => Ok(json(&broker.stats().await?)),
        Some("dead-letters") => {
            let limit = isize::try_from(count(20)?).unwrap_or(isize::MAX);
            let lines: Vec<String> = broker.dead_letters(limit).await?.iter().map(json).collect();
            Ok(lines.join("\n"))
        }
        Some("requeue-dead") => Ok(format!(
            "requeued {}",
            broker.requeue_dead(count(0)?).await?
        )),
        Some("purge-dead") => Ok(format!("purged {}", broker.purge_dead().await?)),
        other => Err(AdminError::Usage(format!(
            "unknown command {other:?}\n{USAGE}"
        ))),
    }
}

/// One line of JSON.
fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}
