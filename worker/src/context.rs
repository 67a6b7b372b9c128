//! What every task run needs, shared by all of them: built once by [`crate::worker::Worker`].

use std::sync::Arc;
use std::time::Duration;

use celery_redis::broker::Broker;
use celery_redis::connection::Conn;
use celery_redis::events::Events;
use celery_redis::result::ResultBackend;
use tokio::sync::Notify;

use celery_redis::stores::Stores;

use crate::config::WorkerConfig;
use crate::registry::Registry;
use crate::webhook::Webhooks;

pub struct Context {
    pub broker: Broker,
    pub results: ResultBackend,
    /// The broker's database (stock, notifications, idempotency records).
    pub redis: Conn,
    pub webhooks: Webhooks,
    /// This worker's node name (Celery's `hostname`).
    pub node: String,
    pub acks_late: bool,
    pub track_started: bool,
    /// `RESULT_EXTENDED`: results carry the request (Celery's `result_extended`).
    pub result_extended: bool,
    pub max_retries: u32,
    /// How long the shop's per-task keys (reservations, delivery records) live.
    pub retention: Duration,
    pub retry_backoff: Duration,
    /// What happens to a task name this worker does not run.
    pub unknown: crate::config::Unknown,
    /// What runs here now, what was parked, what is revoked (remote control reads it).
    pub registry: Arc<Registry>,
    /// This worker's events (task events only while switched on).
    pub events: Events,
    /// This worker's metrics (counted in memory, served on `WORKER_METRICS_BIND`).
    pub metrics: observe::metrics::Metrics,
    /// The queues it consumes (`WORKER_QUEUES`).
    pub queues: Vec<String>,
    /// The labels of its task metrics, made once.
    pub labels: crate::labels::Labels,
    /// Wakes the scheduler when this worker parks a message (an eta task or a retry).
    pub scheduled: Arc<Notify>,
}

impl Context {
    /// What the tasks (`names`) of a worker named `node` share, from its configuration and
    /// connections.
    pub fn new(
        cfg: &WorkerConfig,
        names: &[&str],
        node: String,
        broker: Broker,
        stores: Stores,
        events: Events,
    ) -> Result<Self, reqwest::Error> {
        Ok(Context {
            registry: Arc::new(Registry::new(&node)),
            events,
            metrics: observe::metrics::Metrics::new(),
            labels: crate::labels::Labels::new(names, &node, &cfg.queues),
            queues: cfg.queues.clone(),
            broker,
            results: stores.results,
            redis: stores.redis,
            webhooks: Webhooks::new(
                cfg.webhook_policy.clone(),
                cfg.webhook_timeout,
                cfg.webhook_concurrency,
            )?,
            node,
            acks_late: cfg.acks_late,
            track_started: cfg.track_started,
            result_extended: cfg.result_extended,
            max_retries: cfg.max_retries,
            retention: cfg.redis.retention,
            retry_backoff: cfg.retry_backoff,
            unknown: cfg.unknown,
            scheduled: Arc::new(Notify::new()),
        })
    }
}
