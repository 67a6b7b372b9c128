//! The worker as a value: [`Worker::build`] it, [`Worker::step`] it (one fetch: claim as many
//! messages as slots are free and start each), [`Worker::run`] it until a shutdown, then
//! [`Worker::shutdown`]: running tasks finish within the grace period (their leases renewed all
//! along), the rest is handed back to the queue at once. No claim is made on a Redis not
//! confirmed to keep every key (`celery_redis::eviction`), and none while Redis refuses writes
//! for lack of memory (see [`crate::pacing`]).

use std::sync::Arc;
use std::time::Duration;

use celery_redis::broker::{Broker, Claim, Rotation};
use celery_redis::conn::Waits;
use celery_redis::control::Lamport;
use celery_redis::events::{Batcher, Events};
use celery_redis::leases::Leases;
use celery_redis::shutdown::{self, Shutdown, Trigger};
use celery_redis::stores::Stores;
use celery_redis::task::Tasks;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::config::WorkerConfig;
use crate::context::Context;
use crate::delivery::{self, poison};
use crate::pacing::Pacing;
use crate::waits::Blocking;
use crate::{heartbeat, upkeep};

/// Most messages one claim takes (when that many slots are free).
const MAX_CLAIM: usize = 32;
/// Connection attempts one Redis call makes before it fails (the fetch loop then backs off).
const CONNECT_RETRIES: usize = 2;
/// Bound on one Redis reply for the worker's shared connection.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a worker could not be built or started.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// Redis' connections cannot be made from the configuration (a Redis down is waited out).
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The address of the metrics and health listener (`WORKER_METRICS_BIND`) cannot be read.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A setting, or what it points at, cannot be used (the program stops naming the variable).
    #[error("{0}")]
    Config(#[from] envconf::ConfigError),
    /// A registered task's `rate_limit` or `fleet_rate_limit` option is not a rate (`10/s`).
    #[error("{0}")]
    Limits(#[from] crate::limits::LimitError),
}

/// What one [`Worker::step`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// This many deliveries started (dead-lettered entries not counted).
    Started(usize),
    /// The queue was empty; the step waited up to a second for a message.
    Idle,
    /// Redis refused a write of a delivery for lack of memory since the last step (it was
    /// handed back): nothing was claimed; the caller pauses before the next step.
    NoMemory,
}

/// A worker: its connections, the tasks it runs and the leases it holds.
pub struct Worker {
    cfg: WorkerConfig,
    ctx: Arc<Context>,
    stores: Stores,
    /// The queues it consumes, in the order of the next claim.
    rotation: Rotation,
    blocking: Blocking,
    leases: Leases,
    slots: Arc<Semaphore>,
    /// Each ends with whether Redis refused one of its writes for lack of memory.
    running: JoinSet<bool>,
    background: JoinSet<()>,
    /// Stops lease renewal; fired by [`Worker::shutdown`] once nothing is held any more.
    lease_stop: Option<Trigger>,
    /// Sends the batched task events; started with the upkeep.
    batcher: Option<Batcher>,
}

impl Worker {
    /// Prepares a worker named `node` (connections are opened lazily; nothing runs yet).
    pub fn build(cfg: WorkerConfig, tasks: Tasks, node: String) -> Result<Self, WorkerError> {
        let limits = crate::limits::Limits::new(&tasks)?;
        let waits = |response| Waits {
            response: Some(response),
            connect_retries: CONNECT_RETRIES,
        };
        let stores = Stores::connect(&cfg.redis, waits(RESPONSE_TIMEOUT))?;
        let broker = Broker::new(stores.redis.clone(), cfg.redis.queue.clone(), node.clone())
            .with_layout(cfg.redis.layout.clone())
            .with_routes(crate::context::routes(&cfg, &tasks)?)
            .with_results(stores.results.clone())
            .with_retention(cfg.redis.retention)
            .with_limits(cfg.limits);
        let blocking = Blocking::new(&broker, &cfg.queues, &cfg.redis.url, CONNECT_RETRIES)?;
        let checked = stores.clone();
        let (events, batcher) = Events::new(
            stores.redis.clone(),
            &cfg.redis.layout,
            cfg.redis.url.db(),
            &node,
            Arc::new(Lamport::default()),
            cfg.task_events,
        );
        let ctx = Context::new(&cfg, tasks, node, broker, stores, events, limits);
        let ctx = Arc::new(ctx);
        Ok(Worker {
            slots: Arc::new(Semaphore::new(cfg.concurrency)),
            rotation: Rotation::ordered(cfg.queues.clone(), cfg.queue_order),
            cfg,
            ctx,
            stores: checked,
            blocking,
            leases: Leases::default(),
            running: JoinSet::new(),
            background: JoinSet::new(),
            lease_stop: None,
            batcher: Some(batcher),
        })
    }

    /// This worker's node name (`WORKER_NAME`, else a unique `rust<pid>-<boot id>@<host>`).
    pub fn node(&self) -> &str {
        &self.ctx.node
    }

    /// Checks what the configuration points at (eviction policy, database, socket), and warns
    /// of lists of its queues in another key layout than its own.
    pub async fn check(&self) -> Result<(), envconf::ConfigError> {
        self.stores.check(&self.cfg.redis).await?;
        self.ctx.broker.warn_foreign(&self.cfg.queues).await;
        Ok(())
    }

    /// Starts the background upkeep: lease renewal (until [`Worker::shutdown`] has nothing
    /// left to hold), restores of dead workers' messages, eta promotion and the heartbeat
    /// (until `stop`), and the event batcher (until the worker is gone).
    pub fn start_upkeep(&mut self, stop: &Shutdown) {
        if let Some(batcher) = self.batcher.take() {
            self.background.spawn(batcher.run());
        }
        self.background.spawn(heartbeat::beat(
            self.ctx.events.clone(),
            self.ctx.registry.clone(),
            self.ctx.redis.clone(),
            stop.clone(),
        ));
        let (lease_trigger, lease_stop) = shutdown::channel();
        self.lease_stop = Some(lease_trigger);
        let broker = self.ctx.broker.clone();
        let visibility = self.cfg.visibility_timeout;
        self.background.spawn(
            self.leases
                .clone()
                .keep(broker.clone(), visibility, lease_stop),
        );
        self.background.spawn(upkeep::restore_orphans(
            broker.clone(),
            celery_redis::broker::Visibility {
                own: visibility,
                foreign: self.cfg.broker_visibility_timeout,
            },
            self.cfg.dead_letter_max,
            self.ctx.metrics.worker.leases_restored.clone(),
            stop.clone(),
        ));
        for queue in &self.cfg.queues {
            self.background.spawn(upkeep::promote_scheduled(
                broker.for_queue(queue),
                self.ctx.scheduled.clone(),
                stop.clone(),
            ));
        }
    }

    /// Waits for a free slot.
    async fn slot(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().acquire_owned().await.ok()
    }

    /// One fetch: waits for a free slot, claims up to as many messages as slots are free (one
    /// script call) and starts each; when the queue is empty, waits up to a second for one.
    pub async fn step(&mut self) -> Result<Step, redis::RedisError> {
        match self.slot().await {
            Some(permit) => self.fetch(permit).await,
            None => Ok(Step::Idle),
        }
    }

    async fn fetch(&mut self, first: OwnedSemaphorePermit) -> Result<Step, redis::RedisError> {
        let mut no_memory = false;
        while let Some(ended) = self.running.try_join_next() {
            no_memory |= matches!(ended, Ok(true));
        }
        if no_memory {
            return Ok(Step::NoMemory);
        }
        // Nothing is taken from a Redis that may evict it (asked once per connection).
        self.stores.confirm().await?;
        let mut permits = vec![first];
        while permits.len() < MAX_CLAIM {
            match self.slots.clone().try_acquire_owned() {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }
        let claims = self
            .ctx
            .broker
            .claim_from(self.rotation.order(), permits.len())
            .await?;
        if claims.is_empty() {
            drop(permits);
            self.blocking.any().await?;
            return Ok(Step::Idle);
        }
        // Junk counts as served too: a queue full of it must not stay first.
        self.rotation.delivered(claims.iter().map(Claim::queue));
        let mut started = 0;
        for (claim, permit) in claims.into_iter().zip(permits) {
            match claim {
                Claim::Message(delivery) => {
                    let delivery = self.leases.hold(delivery);
                    let (ctx, leases) = (self.ctx.clone(), self.leases.clone());
                    self.running
                        .spawn(delivery::guarded(ctx, leases, delivery, permit));
                    started += 1;
                }
                Claim::Unreadable { tag, raw, queue } => {
                    drop(permit);
                    poison::unreadable(&self.ctx, &tag, &raw, &queue).await;
                }
                dead @ Claim::DeadLettered { .. } => {
                    poison::claimed_dead(&self.ctx, &dead).await;
                }
            }
        }
        Ok(Step::Started(started))
    }

    /// Runs until `stop` fires or remote control asks it to stop, then shuts down (see
    /// [`Worker::shutdown`]). It says it is consuming once remote control can reach it.
    pub async fn run(self, stop: Shutdown) {
        self.run_serving(stop, None).await
    }

    /// [`Worker::run`], serving `/metrics` and `/healthz` on `metrics` while it runs.
    pub async fn run_serving(
        mut self,
        stop: Shutdown,
        mut metrics: Option<tokio::net::TcpListener>,
    ) {
        let (local_trigger, local) = shutdown::channel();
        let stop = shutdown::either(stop, local);
        let (remote, ready) =
            crate::control::spawn(&self.ctx, &self.cfg, &stop, &mut self.background);
        let stop = shutdown::either(stop, remote);
        // Keeps the local trigger alive (dropping it would read as a shutdown).
        let _local_trigger = local_trigger;
        self.start_upkeep(&stop);
        if let Some(listener) = metrics.take() {
            let serve = crate::metrics::serve(listener, self.ctx.clone(), stop.clone());
            self.background.spawn(serve);
        }
        self.ctx
            .metrics
            .worker
            .up
            .get_or_create(&crate::metrics::host(&self.ctx))
            .set(1);
        if tokio::time::timeout(self.cfg.redis.timeout, ready)
            .await
            .is_err()
        {
            log::warn!("remote control is not subscribed yet; consuming anyway");
        }
        log::info!(
            "worker {} consuming queue(s) {} with concurrency {} on {} thread(s) (acks_late={}, visibility_timeout={}s)",
            self.ctx.node,
            self.cfg.queues.join(", "),
            self.cfg.concurrency,
            self.cfg.threads,
            self.cfg.acks_late,
            self.cfg.visibility_timeout.as_secs()
        );
        let mut watch = stop.clone();
        let mut pacing = Pacing::default();
        loop {
            let permit = tokio::select! {
                _ = watch.wait() => break,
                permit = self.slot() => match permit {
                    Some(p) => p,
                    None => break,
                },
            };
            if stop.is_fired() {
                break;
            }
            let fetched = self.fetch(permit).await;
            if let Some(pause) = pacing.after(fetched.as_ref().map(|s| *s == Step::NoMemory)) {
                tokio::select! {
                    _ = watch.wait() => {}
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        }
        self.shutdown().await;
    }

    /// Stops: lets running tasks finish within the grace period (their leases still renewed),
    /// hands back at once whatever is still held, returns the processing list to the queue,
    /// then stops the upkeep.
    pub async fn shutdown(mut self) {
        log::info!(
            "stopped fetching; waiting up to {}s for {} running task(s)",
            self.cfg.shutdown_timeout.as_secs(),
            self.running.len()
        );
        let drained = tokio::time::timeout(self.cfg.shutdown_timeout, async {
            while self.running.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            self.running.abort_all();
            while self.running.join_next().await.is_some() {}
        }
        // No wait may move a message into a processing list after those are returned.
        self.blocking.finish().await;
        upkeep::hand_back(&self.ctx.broker, &self.leases, &self.cfg.queues).await;
        if let Some(trigger) = self.lease_stop.take() {
            trigger.fire();
        }
        // Events went out only if the upkeep (batcher and heartbeat) was started.
        if self.batcher.is_none() {
            heartbeat::offline(&self.ctx.events, &self.ctx.registry, self.cfg.redis.timeout).await;
        }
        self.ctx
            .metrics
            .worker
            .up
            .get_or_create(&crate::metrics::host(&self.ctx))
            .set(0);
        self.background.abort_all();
        log::info!("worker stopped");
    }
}
