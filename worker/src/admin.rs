//! Operator subcommands: queue counts, the dead-letter list (list, requeue, purge) and the
//! health check (a remote-control ping of this worker's node, as `celery inspect ping -d`).

use std::time::Duration;

use celery_redis::broker::Broker;
use celery_redis::control::client::{self, Target};
use celery_redis::control::Lamport;
use serde_json::json;

use crate::config::WorkerConfig;

/// The subcommands `worker` understands besides running.
pub const USAGE: &str =
    "usage: worker [run | healthcheck | stats | dead-letters [N] | requeue-dead [N] | purge-dead]";

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Usage(String),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("unhealthy: {0}")]
    Unhealthy(String),
}

/// Runs one subcommand and returns what to print (JSON for machines, one line per entry).
pub async fn run(worker: &WorkerConfig, args: &[String]) -> Result<String, AdminError> {
    let cfg = &worker.redis;
    let waits = celery_redis::connection::Waits {
        // The health check blocks for a reply up to the timeout, on this connection.
        response: Some(cfg.timeout + Duration::from_secs(1)),
        connect_retries: 2,
    };
    let conn = celery_redis::connection::Conn::new(&cfg.url, waits)?;
    if args.first().map(String::as_str) == Some("healthcheck") {
        return healthcheck(worker, &conn).await;
    }
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
        // One line per queue it consumes (`WORKER_QUEUES`).
        Some("stats") => {
            let lines: Vec<String> = broker
                .stats_of(&worker.queues)
                .await?
                .iter()
                .map(json)
                .collect();
            Ok(lines.join("\n"))
        }
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

/// Pings this worker's node (`WORKER_NAME`), or without a name any worker on this host (one
/// container, one worker), through the pidbox; healthy when it answers within
/// `REDIS_TIMEOUT_MS`.
async fn healthcheck(
    worker: &WorkerConfig,
    conn: &celery_redis::connection::Conn,
) -> Result<String, AdminError> {
    let target = if worker.named {
        Target::Nodes(vec![worker.node.clone()])
    } else {
        Target::Glob(format!("*@{}", celery_redis::node::hostname()))
    };
    let clock = Lamport::default();
    let db = worker.redis.url.db();
    let replies = client::call(
        conn,
        db,
        &clock,
        "ping",
        json!({}),
        &target,
        worker.redis.timeout,
    )
    .await?;
    // Only this worker's answer counts (by name, or on this host).
    let ours = |node: &str| match &target {
        Target::Nodes(names) => names.iter().any(|n| n == node),
        _ => node.ends_with(&format!("@{}", celery_redis::node::hostname())),
    };
    match replies
        .into_iter()
        .find(|(node, v)| ours(node) && v["ok"] == "pong")
    {
        Some((node, _)) => Ok(format!("{node}: pong")),
        None => Err(AdminError::Unhealthy(format!(
            "no worker answered a ping for {target:?} within {:?}",
            worker.redis.timeout
        ))),
    }
}

/// One line of JSON.
fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}
