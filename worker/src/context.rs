//! What every task run needs, shared by all of them: built once by [`crate::worker::Worker`].

use std::sync::Arc;
use std::time::Duration;

use celery_redis::broker::Broker;
use celery_redis::conn::Conn;
use celery_redis::events::Events;
use celery_redis::result::ResultBackend;
use tokio::sync::Notify;

use celery_redis::stores::Stores;

use celery_redis::task::Tasks;

use crate::config::WorkerConfig;
use crate::registry::Registry;

/// What the deliveries, the remote control and the metrics of one worker share: its
/// connections, settings, tasks, registry and counters.
pub struct Context {
    /// Claims, publishes, acknowledges and hands back messages (the worker's queues, routes
    /// and key layout).
    pub(crate) broker: Broker,
    /// The result backend: states and results of its tasks, chord joins.
    pub(crate) results: ResultBackend,
    /// The broker's database (remote control, health; tasks borrow it as a dependency).
    pub redis: Conn,
    /// The tasks it runs and their dependencies.
    pub tasks: Tasks,
    /// This worker's node name (Celery's `hostname`).
    pub node: String,
    /// `WORKER_ACKS_LATE`: acknowledge after the result is stored (unless a task's option says).
    pub(crate) acks_late: bool,
    /// `WORKER_TRACK_STARTED`: store STARTED when a task begins (unless its option says).
    pub(crate) track_started: bool,
    /// `RESULT_EXTENDED`: results carry the request (Celery's `result_extended`).
    pub result_extended: bool,
    /// `RESULT_CHORD_ORDERED`: a chord's join key is a ZSET by header position.
    pub chord_ordered: bool,
    /// `TASK_MAX_RETRIES`: retries of a task whose options set none.
    pub(crate) max_retries: u32,
    /// `TASK_RETRY_BACKOFF_MS`: the first retry's delay for a task whose options set none.
    pub(crate) retry_backoff: Duration,
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
    /// Places for the threads of blocking tasks (`WORKER_CONCURRENCY`), each held until its
    /// thread ends, even after its task was stopped.
    pub blocking_threads: Arc<tokio::sync::Semaphore>,
    /// Wakes the scheduler when this worker parks a message (an eta task or a retry).
    pub scheduled: Arc<Notify>,
    /// Each task's rate and time limits now (remote control changes them).
    pub limits: Arc<crate::limits::Limits>,
}

impl Context {
    /// What the `tasks` of a worker named `node` share, from its configuration and
    /// connections; the tasks get the broker's database connection as a dependency.
    pub fn new(
        cfg: &WorkerConfig,
        mut tasks: Tasks,
        node: String,
        broker: Broker,
        stores: Stores,
        events: Events,
        limits: crate::limits::Limits,
    ) -> Self {
        tasks.deps_mut().insert(stores.redis.clone());
        Context {
            registry: Arc::new(Registry::new(&node)),
            events,
            metrics: observe::metrics::Metrics::new(),
            labels: crate::labels::Labels::new(&tasks.names(), &node, &cfg.queues),
            tasks,
            queues: cfg.queues.clone(),
            broker,
            results: stores.results,
            redis: stores.redis,
            node,
            acks_late: cfg.acks_late,
            track_started: cfg.track_started,
            result_extended: cfg.result_extended,
            chord_ordered: cfg.chord_ordered,
            max_retries: cfg.max_retries,
            retry_backoff: cfg.retry_backoff,
            unknown: cfg.unknown,
            blocking_threads: Arc::new(tokio::sync::Semaphore::new(cfg.concurrency)),
            scheduled: Arc::new(Notify::new()),
            limits: Arc::new(limits),
        }
    }
}

/// The routes of what this worker sends: `TASK_ROUTES`, then each task's own default queue
/// (its `queue` option) for a task no entry routes.
pub fn routes(
    cfg: &WorkerConfig,
    tasks: &Tasks,
) -> Result<celery_redis::routes::Routes, envconf::ConfigError> {
    let mut routes = cfg.redis.routes.clone();
    for task in tasks.iter() {
        if let Some(queue) = task.options().queue {
            routes =
                routes
                    .or_route(task.name(), queue)
                    .map_err(|reason| envconf::ConfigError {
                        var: "TASK_ROUTES",
                        reason,
                    })?;
        }
    }
    Ok(routes)
}
