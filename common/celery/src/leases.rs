//! The deliveries a worker holds, and the upkeep of their leases: renewed three times per
//! visibility timeout for as long as the worker holds them, so a running task is never handed
//! to another worker, not even while this one shuts down.

use std::borrow::Borrow;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::broker::{Broker, Delivery};
use crate::shutdown::Shutdown;

/// Deliveries this process holds, by tag: their leases are renewed, and on shutdown the ones
/// still running are handed back. Each is shared with the task running it, not copied (an
/// envelope is ~1 KB, and every task is held).
#[derive(Default, Clone)]
pub struct Leases(Arc<Mutex<HashSet<Held>>>);

/// A held delivery, found by its tag.
struct Held(Arc<Delivery>);

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        self.0.tag == other.0.tag
    }
}

impl Eq for Held {}

impl Hash for Held {
    /// As its tag hashes: what [`Borrow<str>`] requires.
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.0.tag.hash(h)
    }
}

impl Borrow<str> for Held {
    fn borrow(&self) -> &str {
        &self.0.tag
    }
}

impl Leases {
    /// Holds `d`: its lease is renewed from the next renewal on. Returns it shared, for the
    /// task that runs it.
    pub fn hold(&self, d: Delivery) -> Arc<Delivery> {
        let d = Arc::new(d);
        self.lock().replace(Held(Arc::clone(&d)));
        d
    }

    /// Stops holding the delivery `tag` (it was settled).
    pub fn remove(&self, tag: &str) {
        self.lock().remove(tag);
    }

    /// The delivery tags held now.
    pub fn tags(&self) -> Vec<String> {
        self.lock().iter().map(|h| h.0.tag.clone()).collect()
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
    pub fn drain(&self) -> Vec<Arc<Delivery>> {
        self.lock().drain().map(|h| h.0).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<Held>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(tag: &str) -> Delivery {
        Delivery {
            raw: format!("{{\"tag\":\"{tag}\"}}"),
            tag: tag.to_owned(),
            taken_at: 0.0,
            queue: "celery".to_owned(),
            deliveries: 1,
        }
    }

    #[test]
    fn held_deliveries_are_shared_found_by_tag_and_drained_once() {
        let leases = Leases::default();
        let a = leases.hold(delivery("a"));
        leases.hold(delivery("b"));
        let again = leases.hold(delivery("a"));
        assert_eq!(leases.len(), 2, "a tag is held once");
        let mut tags = leases.tags();
        tags.sort();
        assert_eq!(tags, ["a", "b"]);
        leases.remove("b");
        leases.remove("unknown");
        let drained = leases.drain();
        assert!(leases.is_empty());
        assert_eq!(drained.len(), 1);
        assert!(
            Arc::ptr_eq(&drained[0], &again) && !Arc::ptr_eq(&drained[0], &a),
            "the task's own delivery, not a copy: the last one held under its tag"
        );
    }
}
