//! The deliveries a worker holds, and the upkeep of their leases: renewed three times per
//! visibility timeout for as long as the worker holds them, so a running task is never handed
//! to another worker, not even while this one shuts down.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::broker::{Broker, Delivery};
use crate::shutdown::Shutdown;

/// Deliveries this process holds, by tag: their leases are renewed, and on shutdown the ones
/// still running are handed back.
#[derive(Default, Clone)]
pub struct Leases(Arc<Mutex<HashMap<String, Delivery>>>);

impl Leases {
    /// Holds `d`: its lease is renewed from the next renewal on.
    pub fn insert(&self, d: &Delivery) {
        self.lock().insert(d.tag.clone(), d.clone());
    }

    /// Stops holding the delivery `tag` (it was settled).
    pub fn remove(&self, tag: &str) {
        self.lock().remove(tag);
    }

    /// The delivery tags held now.
    pub fn tags(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// How many deliveries are held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Takes every delivery still held (to hand them back).
    pub fn drain(&self) -> Vec<Delivery> {
        self.lock().drain().map(|(_, d)| d).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Delivery>> {
        // A panic while holding this lock cannot leave the map inconsistent; keep going.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Renews every held lease three times per `visibility` until `stop` fires. The worker
    /// fires `stop` only once nothing is held any more (every task finished or handed back), not
    /// when its own shutdown begins: a task running through the grace period keeps its lease.
    pub async fn keep(self, broker: Broker, visibility: Duration, mut stop: Shutdown) {
        let mut tick = tokio::time::interval(visibility / 3);
        loop {
            tokio::select! {
                _ = stop.wait() => return,
                _ = tick.tick() => {}
            }
            let tags = self.tags();
            match broker.renew(&tags).await {
                // A tag acknowledged while the renewal ran is not held any more either; only
                // the tags this worker still holds afterwards can have lost their lease.
                Ok(held) if held < tags.len() => {
                    let still: std::collections::HashSet<String> =
                        self.tags().into_iter().collect();
                    let kept = tags.iter().filter(|t| still.contains(*t)).count();
                    if held < kept {
                        log::warn!("{} running task(s) lost their lease", kept - held);
                    }
                }
                Ok(_) => {}
                Err(e) => log::warn!("could not renew leases: {e}"),
            }
        }
    }
}
