//! Whether a running task may still be stopped: by `revoke(terminate=True)` or its time limit
//! from outside, or not any more once the task has passed its point of no return
//! ([`Stop::commit`], just before its effect). Whichever comes first wins and the other does
//! nothing, so a task is either stopped before its effect or runs to its normal end: the one
//! place that decides it.

use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;

/// Why a running task was stopped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stopped {
    /// By `revoke(terminate=True)`, with the signal number `task-revoked` reports.
    Terminated(i32),
    /// By its time limit (the `timelimit` header): the limit in seconds, and whether it was the
    /// soft one.
    TimeLimit {
        /// The limit that ran out, in seconds.
        seconds: f64,
        /// Whether it was the soft limit (SoftTimeLimitExceeded).
        soft: bool,
    },
}

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stopped::Terminated(signum) => write!(f, "terminated by a revoke (signal {signum})"),
            Stopped::TimeLimit { seconds, .. } => write!(f, "time limit of {seconds}s exceeded"),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum State {
    Running,
    /// Past its point of no return: it runs to its end.
    Committed,
    Stopped(Stopped),
}

/// One running delivery's stop, shared by the task (through its context), the runtime that
/// runs it and remote control (a `terminate`).
#[derive(Debug)]
pub struct Stop {
    state: Mutex<State>,
    notify: Notify,
}

impl Default for Stop {
    fn default() -> Self {
        Stop {
            state: Mutex::new(State::Running),
            notify: Notify::new(),
        }
    }
}

impl Stop {
    fn state(&self) -> MutexGuard<'_, State> {
        // Every change below is one assignment: a panic elsewhere cannot leave it half done.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops the task unless it has passed its point of no return; returns whether it stops
    /// (a second stop keeps the first one's reason).
    pub fn fire(&self, why: Stopped) -> bool {
        let mut state = self.state();
        match *state {
            State::Running => {
                *state = State::Stopped(why);
                self.notify.notify_one();
                true
            }
            State::Stopped(_) => true,
            State::Committed => false,
        }
    }

    /// The task's point of no return, called just before its effect (a write that must not be
    /// left without its result): from here no terminate or time limit stops it, and it runs to
    /// its normal end. `Err` when it was stopped before: it must not apply its effect.
    pub fn commit(&self) -> Result<(), Stopped> {
        let mut state = self.state();
        match *state {
            State::Running | State::Committed => {
                *state = State::Committed;
                Ok(())
            }
            State::Stopped(why) => Err(why),
        }
    }

    /// Resolves once the task is stopped, with the reason.
    pub async fn stopped(&self) -> Stopped {
        loop {
            if let State::Stopped(why) = *self.state() {
                return why;
            }
            // A permit stored by `fire` before this wait makes it return at once.
            self.notify.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TERM: Stopped = Stopped::Terminated(15);

    #[test]
    fn the_first_of_a_stop_and_the_point_of_no_return_wins() {
        let stop = Stop::default();
        assert!(stop.fire(TERM));
        assert_eq!(stop.commit(), Err(TERM));
        let limit = Stopped::TimeLimit {
            seconds: 1.0,
            soft: false,
        };
        assert!(stop.fire(limit), "still stopped");
        assert_eq!(stop.commit(), Err(TERM), "by the first reason");

        let stop = Stop::default();
        assert_eq!(stop.commit(), Ok(()));
        assert!(!stop.fire(TERM), "past its point of no return");
        assert_eq!(stop.commit(), Ok(()), "committing twice is harmless");
    }

    #[tokio::test]
    async fn stopped_resolves_for_a_stop_fired_before_or_while_waiting() {
        let stop = std::sync::Arc::new(Stop::default());
        stop.fire(TERM);
        assert_eq!(stop.stopped().await, TERM);

        let stop = std::sync::Arc::new(Stop::default());
        let waiter = tokio::spawn({
            let stop = stop.clone();
            async move { stop.stopped().await }
        });
        tokio::task::yield_now().await;
        stop.fire(TERM);
        assert_eq!(waiter.await.unwrap(), TERM);
    }
}
