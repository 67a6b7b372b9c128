//! How long the fetch loop waits after each fetch: nothing after a good one, a growing backoff
//! after a Redis error, and a short fixed pause while Redis refuses writes for lack of memory
//! (a claim refused, or a delivery handed back because its write was), logged when it starts
//! and when it ends.

use std::time::Duration;

use celery_redis::refusal::refused_for_memory;

/// Pauses after a Redis error while fetching: the first, and the longest.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The pause between claims while Redis refuses writes for lack of memory: short, so work
/// resumes soon after memory is freed; a refused script costs Redis next to nothing (it is
/// refused before it runs).
pub const MEMORY_PAUSE: Duration = Duration::from_millis(500);

/// The fetch loop's state between fetches.
#[derive(Debug)]
pub struct Pacing {
    backoff: Duration,
    /// Fetches refused for lack of memory in a row.
    refused: u64,
}

impl Default for Pacing {
    fn default() -> Self {
        Pacing {
            backoff: MIN_BACKOFF,
            refused: 0,
        }
    }
}

impl Pacing {
    /// The pause after a fetch, if any: `Ok(true)` when a delivery was handed back because
    /// Redis refused its write for lack of memory, `Ok(false)` for any other good fetch.
    pub fn after(&mut self, outcome: Result<bool, &redis::RedisError>) -> Option<Duration> {
        match outcome {
            Ok(true) => Some(self.refused()),
            Err(e) if refused_for_memory(e) => Some(self.refused()),
            Ok(false) => {
                if self.refused > 0 {
                    log::info!(
                        "redis accepts writes again; taking work (paused {} time(s) for lack of memory)",
                        self.refused
                    );
                }
                *self = Pacing::default();
                None
            }
            Err(e) => {
                let pause = self.backoff;
                log::warn!("redis error while fetching ({e}); retrying in {pause:?}");
                self.backoff = (pause * 2).min(MAX_BACKOFF);
                Some(pause)
            }
        }
    }

    fn refused(&mut self) -> Duration {
        if self.refused == 0 {
            log::warn!("redis refuses writes for lack of memory (maxmemory reached under noeviction): taking no work, trying again every {MEMORY_PAUSE:?}");
        }
        self.refused = self.refused.saturating_add(1);
        MEMORY_PAUSE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oom() -> redis::RedisError {
        redis::make_extension_error("OOM".to_owned(), Some("command not allowed".to_owned()))
    }

    #[test]
    fn memory_refusals_pause_briefly_and_other_errors_back_off() {
        let mut p = Pacing::default();
        for _ in 0..10 {
            assert_eq!(p.after(Err(&oom())), Some(MEMORY_PAUSE));
        }
        assert_eq!(p.after(Ok(true)), Some(MEMORY_PAUSE));
        assert_eq!(p.after(Ok(false)), None);
        let io = redis::RedisError::from((redis::ErrorKind::Io, "gone"));
        assert_eq!(p.after(Err(&io)), Some(MIN_BACKOFF));
        assert_eq!(p.after(Err(&io)), Some(MIN_BACKOFF * 2));
        assert_eq!(p.after(Ok(false)), None);
        assert_eq!(p.after(Err(&io)), Some(MIN_BACKOFF));
    }
}
