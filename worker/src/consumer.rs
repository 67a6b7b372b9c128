//! The consumer: takes messages while it has free slots, runs each in its own tokio task,
//! renews their leases, restores what dead workers left, promotes due eta tasks, and on
//! shutdown stops fetching, lets running tasks finish within the grace period and hands the
//! rest back to the queue at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::config::WorkerConfig;
use common::connection;
use common::queue::{Broker, Claim, Delivery};
use common::shutdown::Shutdown;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

use crate::execute::{self, Context};

/// How long one blocking wait for new messages lasts (kombu's BRPOP uses 1 s).
const BLOCK: Duration = Duration::from_secs(1);
/// Most messages one claim takes (when that many slots are free).
const MAX_CLAIM: usize = 32;
/// Longest pause after a Redis error before trying again.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("http client: {0}")]
    Http(#[from] reqwest::Error),
}

/// Deliveries this process holds, by tag: their leases are renewed, and on shutdown the ones
/// still running are handed back.
#[derive(Default, Clone)]
struct InFlight(Arc<Mutex<HashMap<String, Delivery>>>);

impl InFlight {
    fn insert(&self, d: &Delivery) {
        self.lock().insert(d.tag.clone(), d.clone());
    }
    fn remove(&self, tag: &str) {
        self.lock().remove(tag);
    }
    fn tags(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }
    fn drain(&self) -> Vec<Delivery> {
        self.lock().drain().map(|(_, d)| d).collect()
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Delivery>> {
        // A panic while holding this lock cannot leave the map inconsistent; keep going.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Runs the worker until `shutdown` fires and everything is handed back or finished.
pub async fn run(cfg: WorkerConfig, shutdown: Shutdown) -> Result<(), WorkerError> {
    let stores = connection::Stores::connect(&cfg.redis, Some(Duration::from_secs(10)))?;
    let broker_client = connection::client(&cfg.redis.url)?;
    let mut blocking = connection::manager(&broker_client, Some(BLOCK + Duration::from_secs(5)))?;
    let broker = Broker::new(stores.redis.clone(), cfg.redis.queue.clone());
    let scheduled = Arc::new(Notify::new());
    let ctx = Arc::new(Context {
        broker: broker.clone(),
        results: stores.results,
        redis: stores.redis,
        http: reqwest::Client::builder().build()?,
        webhook_timeout: cfg.webhook_timeout,
        max_retries: cfg.max_retries,
        retry_backoff: cfg.retry_backoff,
        scheduled: scheduled.clone(),
        queue: cfg.redis.queue.clone(),
        node: common::config::node_name(),
        acks_late: cfg.acks_late,
        results_in_broker_db: cfg.redis.result_url == cfg.redis.url,
        track_started: cfg.track_started,
    });
    let in_flight = InFlight::default();
    let mut background = JoinSet::new();
    background.spawn(keep_leases(
        broker.clone(),
        in_flight.clone(),
        cfg.visibility_timeout,
        shutdown.clone(),
    ));
    background.spawn(restore_orphans(
        broker.clone(),
        cfg.visibility_timeout,
        shutdown.clone(),
    ));
    background.spawn(promote_scheduled(
        broker.clone(),
        scheduled,
        shutdown.clone(),
    ));

    log::info!(
        "worker {} consuming queue {} with concurrency {} on {} thread(s) (acks_late={}, visibility_timeout={}s)",
        ctx.node,
        cfg.redis.queue,
        cfg.concurrency,
        cfg.threads,
        cfg.acks_late,
        cfg.visibility_timeout.as_secs()
    );
    let slots = Arc::new(Semaphore::new(cfg.concurrency));
    let mut running = JoinSet::new();
    let mut stop = shutdown.clone();
    let mut backoff = Duration::from_millis(100);
    loop {
        while running.try_join_next().is_some() {}
        let permit = tokio::select! {
            _ = stop.wait() => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        if stop.is_fired() {
            break;
        }
        // Fill every free slot in one round trip: this permit, plus any others free right now.
        let mut permits = vec![permit];
        while permits.len() < MAX_CLAIM {
            match slots.clone().try_acquire_owned() {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }
        match broker.claim_many(permits.len()).await {
            Ok(claims) if claims.is_empty() => {
                drop(permits);
                // Not cancelled on shutdown: a cancelled BLMOVE stays blocked in Redis and would
                // swallow the messages this worker hands back. It lasts at most BLOCK.
                if let Err(e) = broker.wait_for_message(&mut blocking, BLOCK).await {
                    backoff = pause(&mut stop, backoff, &e).await;
                }
            }
            Ok(claims) => {
                backoff = Duration::from_millis(100);
                for (claim, permit) in claims.into_iter().zip(permits) {
                    match claim {
                        Claim::Message(delivery) => {
                            in_flight.insert(&delivery);
                            let (ctx, in_flight) = (ctx.clone(), in_flight.clone());
                            running.spawn(async move {
                                if let Err(e) =
                                    execute::handle(&ctx, &delivery, delivery.taken_at).await
                                {
                                    log::error!(
                                        "delivery {} left unacknowledged: {e}",
                                        delivery.tag
                                    );
                                }
                                in_flight.remove(&delivery.tag);
                                drop(permit);
                            });
                        }
                        Claim::DeadLettered { reason } => {
                            log::warn!("dead-lettered an undecodable queue entry: {reason}");
                        }
                    }
                }
            }
            Err(e) => {
                drop(permits);
                backoff = pause(&mut stop, backoff, &e).await;
            }
        }
    }

    log::info!(
        "stopped fetching; waiting up to {}s for {} running task(s)",
        cfg.shutdown_timeout.as_secs(),
        running.len()
    );
    let drained = tokio::time::timeout(cfg.shutdown_timeout, async {
        while running.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        running.abort_all();
        while running.join_next().await.is_some() {}
    }
    for delivery in in_flight.drain() {
        match broker.requeue(&delivery).await {
            Ok(true) => log::info!("handed delivery {} back to the queue", delivery.tag),
            Ok(false) => log::info!("delivery {} was already restored elsewhere", delivery.tag),
            Err(e) => log::error!(
                "could not hand back {} ({e}); it returns after the visibility timeout",
                delivery.tag
            ),
        }
    }
    match broker.return_processing().await {
        Ok(0) => {}
        Ok(n) => log::info!("returned {n} fetched-but-unclaimed message(s) to the queue"),
        Err(e) => log::warn!("could not return the processing list ({e}); the next claim takes it"),
    }
    background.abort_all();
    log::info!("worker stopped");
    Ok(())
}

/// Sleeps after a Redis error (exponential, capped), unless shutdown comes first.
async fn pause(stop: &mut Shutdown, backoff: Duration, err: &redis::RedisError) -> Duration {
    log::warn!("redis error while fetching ({err}); retrying in {backoff:?}");
    tokio::select! {
        _ = stop.wait() => {}
        _ = tokio::time::sleep(backoff) => {}
    }
    (backoff * 2).min(MAX_BACKOFF)
}

/// Renews the lease of every running task three times per visibility timeout, so a task that
/// runs for an hour on a live worker is never handed to anyone else (Python workers included).
async fn keep_leases(
    broker: Broker,
    in_flight: InFlight,
    visibility: Duration,
    mut stop: Shutdown,
) {
    let mut tick = tokio::time::interval(visibility / 3);
    loop {
        tokio::select! {
            _ = stop.wait() => return,
            _ = tick.tick() => {}
        }
        let tags = in_flight.tags();
        match broker.renew(&tags).await {
            Ok(held) if held < tags.len() => {
                log::warn!("{} running task(s) lost their lease", tags.len() - held)
            }
            Ok(_) => {}
            Err(e) => log::warn!("could not renew leases: {e}"),
        }
    }
}

/// Gives back messages whose worker stopped renewing their lease (at start, then every half
/// visibility timeout). One worker at a time does it, under kombu's lock.
async fn restore_orphans(broker: Broker, visibility: Duration, mut stop: Shutdown) {
    let mut tick = tokio::time::interval((visibility / 2).max(Duration::from_secs(1)));
    loop {
        tokio::select! {
            _ = stop.wait() => return,
            _ = tick.tick() => {}
        }
        match broker.restore_expired(visibility).await {
            Ok(0) => {}
            Ok(n) => log::info!("restored {n} message(s) whose worker is gone"),
            Err(e) => log::warn!("restore of unacked messages failed: {e}"),
        }
    }
}

/// Moves eta tasks whose time has come back to the queue; sleeps until the next one is due, or
/// until this worker schedules one, but at most a second (other workers schedule too).
async fn promote_scheduled(broker: Broker, scheduled: Arc<Notify>, mut stop: Shutdown) {
    loop {
        let wait = match broker.promote_due().await {
            Ok((_, next)) => next.unwrap_or(BLOCK).min(BLOCK),
            Err(e) => {
                log::warn!("could not promote scheduled tasks: {e}");
                BLOCK
            }
        };
        tokio::select! {
            _ = stop.wait() => return,
            _ = scheduled.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
