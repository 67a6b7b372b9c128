//! Operator subcommands: queue counts, the dead-letter list (list, requeue, purge) and the
//! health check (a remote-control ping of this worker's node, as `celery inspect ping -d`).

use std::time::Duration;

use celery_redis::broker::Broker;
use celery_redis::control::client::{self, Target};
use celery_redis::control::Lamport;
use serde_json::json;

use crate::config::WorkerConfig;

/// The subcommands `worker` understands besides running.
pub const USAGE: &str = "usage: worker [run | healthcheck | stats | dead-letters [N] | requeue-dead [N] | purge-dead] [--queue QUEUE]";

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
    let (args, only) = queue_option(args)?;
    let args = args.as_slice();
    let count = |default: usize| -> Result<usize, AdminError> {
        match args.get(1) {
            None => Ok(default),
            Some(n) => n
                .parse()
                .map_err(|_| AdminError::Usage(format!("{n:?} is not a count\n{USAGE}"))),
        }
    };
    match args.first().map(String::as_str) {
        // One line per queue it consumes (`WORKER_QUEUES`), or for the one named.
        Some("stats") => {
            let queues = match only {
                Some(q) => vec![q.to_owned()],
                None => worker.queues.clone(),
            };
            let lines: Vec<String> = broker.stats_of(&queues).await?.iter().map(json).collect();
            Ok(lines.join("\n"))
        }
        Some("dead-letters") => {
            let dead = broker.dead_letters_of(count(20)?, only).await?;
            let lines: Vec<String> = dead.iter().map(json).collect();
            Ok(lines.join("\n"))
        }
        Some("requeue-dead") => Ok(format!(
            "requeued {}",
            broker.requeue_dead_of(count(0)?, only).await?
        )),
        Some("purge-dead") => Ok(format!("purged {}", broker.purge_dead_of(only).await?)),
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

/// `args` without `--queue QUEUE`, and that queue (a usable queue name): the dead-letter
/// commands then see only its dead letters, `stats` only its counts.
fn queue_option(args: &[String]) -> Result<(Vec<String>, Option<&str>), AdminError> {
    let Some(at) = args.iter().position(|a| a == "--queue") else {
        return Ok((args.to_vec(), None));
    };
    let queue = args
        .get(at.saturating_add(1))
        .map(String::as_str)
        .filter(|q| celery_redis::keys::is_queue_name(q))
        .ok_or_else(|| AdminError::Usage(format!("--queue needs a queue name\n{USAGE}")))?;
    let rest = args
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != at && *i != at.saturating_add(1))
        .map(|(_, a)| a.clone())
        .collect();
    Ok((rest, Some(queue)))
}

/// One line of JSON.
fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}
