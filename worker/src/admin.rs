//! Operator subcommands: queue counts, the dead-letter list (list, requeue, purge), parked
//! messages returned to their queues (a rollback), the health check (a remote-control ping of
//! this worker's node, as `celery inspect ping -d`), and CI's questions ([`crate::rules`]).

use std::time::Duration;

use celery_redis::broker::Broker;
use celery_redis::control::client::{self, Target};
use celery_redis::control::Lamport;
use serde_json::json;

use crate::cli::Command;
use crate::config::WorkerConfig;
use crate::rules;

/// Why an operator subcommand failed (the program prints it and exits with status 1).
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// A Redis call failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// `healthcheck`: the worker did not answer a ping in time, or cannot be found.
    #[error("unhealthy: {0}")]
    Unhealthy(String),
    /// The settings the task table reads (`route`).
    #[error(transparent)]
    Shop(#[from] crate::shop::ShopError),
    /// A setting the subcommand reads cannot be used.
    #[error(transparent)]
    Config(#[from] envconf::ConfigError),
    /// `check-submissions` found problems: one line each, then the summary.
    #[error("{0}")]
    HalfEnqueued(String),
}

/// Runs one operator subcommand and returns what to print (JSON for machines, one line per
/// entry). `Command::Run` is not one: it prints nothing.
pub async fn run(worker: &WorkerConfig, command: &Command) -> Result<String, AdminError> {
    if let Command::Route { tasks } = command {
        // What this binary would send: its task table's own queues after TASK_ROUTES.
        let table = crate::shop::tasks(&envconf::ProcessEnv, worker)?;
        let routes = crate::context::routes(worker, &table)?;
        return Ok(rules::route(&routes, tasks));
    }
    if *command == Command::Queues {
        return Ok(rules::queues(&worker.queues));
    }
    let cfg = &worker.redis;
    let waits = celery_redis::conn::Waits {
        // The health check blocks for a reply up to the timeout, on this connection.
        response: Some(cfg.timeout + Duration::from_secs(1)),
        connect_retries: 2,
    };
    let conn = celery_redis::conn::Conn::new(&cfg.url, waits)?;
    let broker = Broker::new(
        conn.clone(),
        cfg.queue.clone(),
        celery_redis::node::unique(),
    )
    .with_layout(cfg.layout.clone());
    let lines = |items: Vec<String>| items.join("\n");
    Ok(match command {
        Command::Run => String::new(),
        Command::Healthcheck => healthcheck(worker, &conn).await?,
        // One line per queue it consumes (`WORKER_QUEUES`), or for the one named.
        Command::Stats { queue } => {
            let queues = match queue {
                Some(q) => vec![q.clone()],
                None => worker.queues.clone(),
            };
            lines(broker.stats_of(&queues).await?.iter().map(json).collect())
        }
        Command::DeadLetters { count, queue } => {
            let dead = broker.dead_letters_of(*count, queue.as_deref()).await?;
            lines(dead.iter().map(json).collect())
        }
        Command::RequeueDead { count, queue } => format!(
            "requeued {}",
            broker.requeue_dead_of(*count, queue.as_deref()).await?
        ),
        // One line per queue: how many parked messages went back to it.
        Command::ReturnScheduled { queue } => {
            let queues = match queue {
                Some(q) => vec![q.clone()],
                None => worker.queues.clone(),
            };
            let mut out = Vec::with_capacity(queues.len());
            for q in &queues {
                let n = broker.for_queue(q).return_scheduled().await?;
                out.push(format!("returned {n} to {q}"));
            }
            lines(out)
        }
        Command::PurgeDead { queue } => {
            format!("purged {}", broker.purge_dead_of(queue.as_deref()).await?)
        }
        Command::Route { .. } | Command::Queues => String::new(),
        Command::CheckSubmissions { kind, max_depth } => {
            let report =
                rules::check_submissions(&conn, &cfg.layout, &cfg.routes, *kind, *max_depth)
                    .await?;
            let mut out: Vec<String> = report
                .problems
                .iter()
                .map(|p| format!("half-enqueued: {p}"))
                .collect();
            out.push(report.summary);
            match report.problems.is_empty() {
                true => lines(out),
                false => return Err(AdminError::HalfEnqueued(lines(out))),
            }
        }
    })
}

/// Pings this worker through the pidbox, as `celery inspect ping -d NODE` does; healthy when
/// it answers within `REDIS_TIMEOUT_MS`. This worker is the node `WORKER_NAME` names or,
/// without one, the node that the worker listening on `WORKER_METRICS_BIND` says it is: never
/// just any node on this host (a Python worker beside a dead Rust one is not this worker).
async fn healthcheck(
    worker: &WorkerConfig,
    conn: &celery_redis::conn::Conn,
) -> Result<String, AdminError> {
    let timeout = worker.redis.timeout;
    let node = match worker.named {
        true => worker.node.clone(),
        false => crate::metrics::node_at(worker.metrics_bind, timeout)
            .await
            .map_err(|why| {
                AdminError::Unhealthy(format!(
                    "no worker answers on {} ({why}); several workers on one host need a \
                     WORKER_NAME and a WORKER_METRICS_BIND each",
                    worker.metrics_bind
                ))
            })?,
    };
    let clock = Lamport::default();
    let db = worker.redis.url.db();
    let target = Target::Nodes(vec![node.clone()]);
    let mailbox = client::Mailbox {
        layout: &worker.redis.layout,
        db,
    };
    let replies = client::call(conn, mailbox, &clock, "ping", json!({}), &target, timeout).await?;
    match replies.iter().any(|(n, v)| *n == node && v["ok"] == "pong") {
        true => Ok(format!("{node}: pong")),
        false => Err(AdminError::Unhealthy(format!(
            "{node} did not answer a ping within {} ms",
            timeout.as_millis()
        ))),
    }
}

/// One line of JSON.
fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}
