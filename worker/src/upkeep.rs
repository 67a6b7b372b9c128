//! The worker's background loops besides lease renewal (`celery_redis::leases`): restoring what
//! dead workers left, and moving eta tasks whose time has come back to the queue; and handing
//! held deliveries back (at shutdown, or when Redis refused a write for lack of memory).

use std::sync::Arc;
use std::time::Duration;

use celery_redis::broker::{Broker, Delivery};
use celery_redis::leases::Leases;
use celery_redis::shutdown::Shutdown;
use tokio::sync::Notify;

/// Longest sleep of the scheduler: other workers schedule too, and it cannot hear them.
const MAX_SCHEDULER_SLEEP: Duration = Duration::from_secs(1);

/// Gives back messages whose worker stopped renewing their lease (at start, then every half
/// visibility timeout; one worker at a time, under kombu's lock, as many passes as the backlog
/// needs), and keeps the dead-letter list within `dead_letter_max`.
pub async fn restore_orphans(
    broker: Broker,
    visibility: celery_redis::broker::Visibility,
    dead_letter_max: usize,
    restored: observe::metrics::Counter,
    mut stop: Shutdown,
) {
    let mut tick = tokio::time::interval((visibility.own / 2).max(Duration::from_secs(1)));
    loop {
        tokio::select! {
            _ = stop.wait() => return,
            _ = tick.tick() => {}
        }
        match broker.restore_expired(visibility).await {
            Ok(0) => {}
            Ok(n) => {
                restored.inc_by(u64::try_from(n).unwrap_or(u64::MAX));
                log::info!("restored {n} message(s) whose worker is gone")
            }
            Err(e) => log::warn!("restore of unacked messages failed: {e}"),
        }
        match broker.trim_dead(dead_letter_max).await {
            Ok(0) => {}
            Ok(n) => log::warn!(
                "dropped the {n} oldest dead letter(s) (DEAD_LETTER_MAX={dead_letter_max})"
            ),
            Err(e) => log::warn!("could not trim the dead-letter list: {e}"),
        }
    }
}

/// Moves eta tasks whose time has come back to the queue; sleeps until the next one is due, or
/// until this worker schedules one, but at most a second.
pub async fn promote_scheduled(broker: Broker, scheduled: Arc<Notify>, mut stop: Shutdown) {
    loop {
        let wait = match broker.promote_due().await {
            Ok((_, next)) => next.unwrap_or(MAX_SCHEDULER_SLEEP).min(MAX_SCHEDULER_SLEEP),
            Err(e) => {
                log::warn!("could not promote scheduled tasks: {e}");
                MAX_SCHEDULER_SLEEP
            }
        };
        tokio::select! {
            _ = stop.wait() => return,
            _ = scheduled.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// At shutdown: hands every delivery still held back to its queue at once, then returns the
/// processing list of each of `queues` (fetched but not yet claimed) to its queue.
pub async fn hand_back(broker: &Broker, leases: &Leases, queues: &[String]) {
    for delivery in leases.drain() {
        match broker.requeue(&delivery).await {
            Ok(true) => log::info!("handed delivery {} back to the queue", delivery.tag),
            Ok(false) => log::info!("delivery {} was already restored elsewhere", delivery.tag),
            Err(e) => log::error!(
                "could not hand back {} ({e}); it returns after the visibility timeout",
                delivery.tag
            ),
        }
    }
    for queue in queues {
        match broker.for_queue(queue).return_processing().await {
            Ok(0) => {}
            Ok(n) => log::info!("returned {n} fetched-but-unclaimed message(s) to {queue}"),
            Err(e) => log::warn!(
                "could not return the processing list of {queue} ({e}); the next claim takes it"
            ),
        }
    }
}

/// A delivery one of whose writes Redis refused for lack of memory (`why`), nothing of it
/// written: handed back to its queue at once (the hand-back runs while Redis is out of memory;
/// its first write frees what the message takes in `unacked`), rather than after its lease.
/// The next claim of it waits until Redis accepts writes again (claims are refused meanwhile).
pub async fn hand_back_refused(
    broker: &Broker,
    delivery: &Delivery,
    why: &(dyn std::fmt::Display + Sync),
) {
    match broker.requeue(delivery).await {
        Ok(true) => log::warn!(
            "redis refused a write of delivery {} for lack of memory ({why}); handed it back to its queue",
            delivery.tag
        ),
        Ok(false) => log::warn!(
            "redis refused a write of delivery {} for lack of memory ({why}); it is no longer held here (acknowledged or restored), nothing to hand back",
            delivery.tag
        ),
        Err(e) => log::error!(
            "redis refused a write of delivery {} for lack of memory ({why}) and its hand-back ({e}); it returns after the visibility timeout",
            delivery.tag
        ),
    }
}
