//! The Lamport clock every event and control reply carries (kombu's `LamportClock`).

use std::sync::atomic::{AtomicU64, Ordering};

/// One per process, shared by the event sender and the remote-control node.
#[derive(Debug, Default)]
pub struct Lamport(AtomicU64);

impl Lamport {
    /// Advances the clock for a message about to be sent and returns the new value.
    pub fn tick(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed).saturating_add(1)
    }

    /// Takes in another process's clock: `max(ours, theirs) + 1`.
    pub fn adjust(&self, theirs: u64) -> u64 {
        let theirs = theirs.min(u64::MAX / 2);
        self.0.fetch_max(theirs, Ordering::Relaxed);
        self.tick()
    }

    /// The clock's current value, unchanged.
    pub fn value(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_and_adjusts() {
        let c = Lamport::default();
        assert_eq!(c.tick(), 1);
        assert_eq!(c.adjust(10), 11);
        assert_eq!(c.adjust(3), 12);
        assert_eq!(c.value(), 12);
        // A hostile clock cannot wrap ours.
        assert!(c.adjust(u64::MAX) < u64::MAX);
    }
}
