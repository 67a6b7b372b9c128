//! What becomes of a delivery, decided without Redis: before it runs ([`start`]: revoked, handed
//! back, scheduled, expired or run), its time limit ([`time_limit`]) and how its run ends
//! ([`end`]: succeeded, failed, retried, given up, terminated, or left unfinished). Every rule
//! here is unit-tested below; [`super::handle`] and [`super::apply`] carry the decisions out.

use std::time::Duration;

use celery_redis::result::ExceptionInfo;
use celery_redis::task::{Output, Stopped, TaskError};
use serde_json::Value;

/// What is known of a decoded delivery before it runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Facts {
    /// The server's clock when it was claimed (unix seconds).
    pub now: f64,
    /// Its id is revoked.
    pub revoked: bool,
    /// Nobody here runs its task and unknown tasks are handed back to the queue.
    pub foreign: bool,
    /// Its `eta` (unix seconds).
    pub eta: Option<f64>,
    /// Its `expires` (unix seconds).
    pub expires: Option<f64>,
}

/// Before the run, in Celery's order: a revoked id is never run; a task not ours goes back
/// to its queue; one due later waits in the schedule; an expired one is REVOKED; else it runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Start {
    /// Its id is revoked: not run (REVOKED stored).
    Revoked,
    /// Its task is not registered here: handed back to its queue, or FAILURE once
    /// `UNKNOWN_TASK_HANDBACKS` are spent.
    HandBack,
    /// Due at this unix time.
    Scheduled(f64),
    /// Its `expires` has passed: not run (REVOKED stored).
    Expired,
    /// Run it now.
    Run,
}

/// Decides how a delivery starts.
pub fn start(facts: &Facts) -> Start {
    if facts.revoked {
        return Start::Revoked;
    }
    if facts.foreign {
        return Start::HandBack;
    }
    if let Some(due) = facts.eta.filter(|due| *due > facts.now) {
        return Start::Scheduled(due);
    }
    if facts.expires.is_some_and(|at| at < facts.now) {
        return Start::Expired;
    }
    Start::Run
}

/// The limit a run has: (seconds, soft). The message's `timelimit` ([hard, soft]) wins over its
/// task's, one by one, as in Celery; a zero, negative or non-finite limit is none; the soft
/// limit applies when it comes first.
pub fn time_limit(message: [Option<f64>; 2], task: [Option<f64>; 2]) -> Option<(f64, bool)> {
    let usable = |l: Option<f64>| l.filter(|s| *s > 0.0 && s.is_finite());
    let hard = usable(message[0]).or(usable(task[0]));
    let soft = usable(message[1]).or(usable(task[1]));
    match (hard, soft) {
        (Some(h), Some(s)) if s < h => Some((s, true)),
        (Some(h), _) => Some((h, false)),
        (None, Some(s)) => Some((s, true)),
        (None, None) => None,
    }
}

/// Longest a retry waits (a century): a countdown or backoff beyond (`Duration::MAX`) is cut to
/// it, since the retry's `eta` must stay a date Celery and `time` can write.
pub const LONGEST_RETRY_DELAY: Duration = Duration::from_secs(100 * 365 * 86_400);

/// How retries of a task are spaced and counted (its options over the worker's settings).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Most retries; the attempt after the last one gives up.
    pub max_retries: u32,
    /// The first retry's delay; each next one doubles it (Celery's `retry_backoff`).
    pub backoff: Duration,
    /// No delay is longer (Celery's `retry_backoff_max`).
    pub backoff_max: Duration,
    /// Full jitter: a random delay between zero and the backoff (Celery's `retry_jitter`).
    pub jitter: bool,
}

/// How a run ends.
#[derive(Debug)]
pub enum End {
    /// SUCCESS, with what it sends on.
    Succeeded(Output),
    /// FAILURE (its errbacks sent); `timeout` when a time limit stopped it.
    Failed {
        /// The exception stored.
        exc: ExceptionInfo,
        /// A time limit stopped it.
        timeout: bool,
    },
    /// RETRY stored, the message sent again after `delay` (`retries + 1`).
    Retry {
        /// The exception stored with RETRY.
        exc: ExceptionInfo,
        /// How long until the retry is due.
        delay: Duration,
    },
    /// FAILURE and a dead letter: `attempts` runs, none succeeded.
    GaveUp {
        /// The last run's exception.
        exc: ExceptionInfo,
        /// How many runs there were.
        attempts: i64,
    },
    /// REVOKED: a revoke terminated it (with this signal).
    Terminated(i32),
    /// Nothing stored: left unacknowledged (comes back after the visibility timeout), or
    /// handed back at once when Redis refused a write for lack of memory.
    Unfinished {
        /// Redis refused a write for lack of memory (handed back at once).
        no_memory: bool,
        /// What went wrong, for the log.
        why: String,
    },
}

/// Decides how a run that returned `outcome` ends; `retries` is the message's count so far
/// and `random` a number in [0, 1) for the jitter.
pub fn end(
    outcome: Result<Output, TaskError>,
    retries: i64,
    policy: &RetryPolicy,
    random: f64,
) -> End {
    let retries = retries.max(0);
    let retry = |exc: ExceptionInfo, countdown: Option<Duration>| {
        if retries >= i64::from(policy.max_retries) {
            let attempts = retries.saturating_add(1);
            return End::GaveUp { exc, attempts };
        }
        let delay = countdown.unwrap_or_else(|| backoff(policy, retries, random));
        End::Retry {
            exc,
            delay: delay.min(LONGEST_RETRY_DELAY),
        }
    };
    match outcome {
        Ok(output) => End::Succeeded(output),
        Err(TaskError::Failed(exc)) => End::Failed {
            exc,
            timeout: false,
        },
        Err(TaskError::Retry(exc)) => retry(exc, None),
        Err(TaskError::RetryAfter(exc, countdown)) => retry(exc, Some(countdown)),
        Err(TaskError::Stopped(Stopped::Terminated(signum))) => End::Terminated(signum),
        Err(TaskError::Stopped(Stopped::TimeLimit { seconds, soft })) => End::Failed {
            exc: time_limit_exceeded(seconds, soft),
            timeout: true,
        },
        Err(TaskError::Transient(why)) => End::Unfinished {
            no_memory: false,
            why,
        },
        Err(TaskError::NoMemory(why)) => End::Unfinished {
            no_memory: true,
            why,
        },
    }
}

/// The delay before retry number `retries + 1`: the backoff doubled per retry so far, at most
/// the maximum, then (with jitter) scaled by `random`.
fn backoff(policy: &RetryPolicy, retries: i64, random: f64) -> Duration {
    let exp = u32::try_from(retries.clamp(0, 30)).unwrap_or(30);
    let cap = policy
        .backoff
        .saturating_mul(2u32.saturating_pow(exp))
        .min(policy.backoff_max);
    match policy.jitter {
        true => cap.mul_f64(random.clamp(0.0, 1.0)),
        false => cap,
    }
}

/// billiard's (Soft)TimeLimitExceeded, as Celery stores it.
fn time_limit_exceeded(seconds: f64, soft: bool) -> ExceptionInfo {
    let name = match soft {
        true => "SoftTimeLimitExceeded",
        false => "TimeLimitExceeded",
    };
    ExceptionInfo {
        exc_type: name.to_owned(),
        exc_message: Value::Array(vec![serde_json::json!(seconds)]),
        exc_module: "billiard.exceptions".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exc() -> ExceptionInfo {
        ExceptionInfo::new("builtins", "OSError", "down")
    }

    fn output() -> Output {
        Output {
            value: Value::from(3),
            children: Vec::new(),
        }
    }

    const POLICY: RetryPolicy = RetryPolicy {
        max_retries: 3,
        backoff: Duration::from_secs(1),
        backoff_max: Duration::from_secs(5),
        jitter: false,
    };

    #[test]
    fn a_revoked_id_is_never_run_whatever_else_holds() {
        let facts = Facts {
            now: 10.0,
            revoked: true,
            foreign: true,
            eta: Some(20.0),
            expires: Some(5.0),
        };
        assert_eq!(start(&facts), Start::Revoked);
    }

    #[test]
    fn a_foreign_task_goes_back_before_its_eta_or_expiry_counts() {
        let facts = Facts {
            now: 10.0,
            foreign: true,
            eta: Some(20.0),
            ..Facts::default()
        };
        assert_eq!(start(&facts), Start::HandBack);
    }

    #[test]
    fn an_eta_in_the_future_waits_even_when_it_expires_before_then() {
        let facts = |eta, expires| Facts {
            now: 10.0,
            eta,
            expires,
            ..Facts::default()
        };
        assert_eq!(
            start(&facts(Some(20.0), Some(15.0))),
            Start::Scheduled(20.0)
        );
        assert_eq!(start(&facts(Some(10.0), None)), Start::Run, "due now");
        assert_eq!(start(&facts(Some(5.0), Some(9.0))), Start::Expired);
        assert_eq!(start(&facts(None, Some(10.0))), Start::Run, "expires now");
        assert_eq!(start(&facts(None, Some(11.0))), Start::Run);
    }

    #[test]
    fn the_message_limit_wins_one_by_one_and_the_soft_one_applies_when_first() {
        assert_eq!(time_limit([None, None], [None, None]), None);
        assert_eq!(
            time_limit([Some(5.0), None], [Some(9.0), None]),
            Some((5.0, false))
        );
        assert_eq!(
            time_limit([None, None], [Some(9.0), Some(4.0)]),
            Some((4.0, true))
        );
        assert_eq!(
            time_limit([None, Some(2.0)], [Some(9.0), None]),
            Some((2.0, true))
        );
        assert_eq!(
            time_limit([Some(3.0), None], [None, Some(4.0)]),
            Some((3.0, false))
        );
        assert_eq!(
            time_limit([Some(1.0), Some(1.0)], [None, None]),
            Some((1.0, false))
        );
    }

    #[test]
    fn unusable_limits_are_none_and_let_the_task_limit_through() {
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert_eq!(
                time_limit([Some(bad), Some(bad)], [None, None]),
                None,
                "{bad}"
            );
            assert_eq!(
                time_limit([Some(bad), None], [Some(7.0), None]),
                Some((7.0, false))
            );
        }
    }

    #[test]
    fn a_retry_doubles_its_delay_up_to_the_maximum_then_gives_up() {
        let delays: Vec<_> = (0..3)
            .map(
                |n| match end(Err(TaskError::Retry(exc())), n, &POLICY, 0.5) {
                    End::Retry { delay, .. } => delay.as_secs(),
                    other => panic!("{other:?}"),
                },
            )
            .collect();
        assert_eq!(delays, [1, 2, 4]);
        let policy = RetryPolicy {
            max_retries: 10,
            ..POLICY
        };
        match end(Err(TaskError::Retry(exc())), 5, &policy, 0.5) {
            End::Retry { delay, .. } => assert_eq!(delay, Duration::from_secs(5), "capped"),
            other => panic!("{other:?}"),
        }
        match end(Err(TaskError::Retry(exc())), 3, &POLICY, 0.5) {
            End::GaveUp { attempts, exc } => {
                assert_eq!(attempts, 4);
                assert_eq!(exc.exc_type, "OSError");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn jitter_scales_the_delay_and_a_countdown_is_taken_as_given() {
        let jittered = RetryPolicy {
            jitter: true,
            ..POLICY
        };
        match end(Err(TaskError::Retry(exc())), 2, &jittered, 0.25) {
            End::Retry { delay, .. } => assert_eq!(delay, Duration::from_secs(1)),
            other => panic!("{other:?}"),
        }
        let countdown = Duration::from_millis(1500);
        match end(
            Err(TaskError::RetryAfter(exc(), countdown)),
            2,
            &jittered,
            0.25,
        ) {
            End::Retry { delay, .. } => assert_eq!(delay, countdown),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            end(
                Err(TaskError::RetryAfter(exc(), countdown)),
                3,
                &jittered,
                0.0
            ),
            End::GaveUp { attempts: 4, .. }
        ));
    }

    #[test]
    fn a_countdown_or_backoff_too_long_for_a_date_is_cut_to_a_century() {
        let huge = RetryPolicy {
            backoff: Duration::MAX,
            backoff_max: Duration::MAX,
            ..POLICY
        };
        for outcome in [
            TaskError::RetryAfter(exc(), Duration::MAX),
            TaskError::Retry(exc()),
        ] {
            match end(Err(outcome), 0, &huge, 0.5) {
                End::Retry { delay, .. } => assert_eq!(delay, LONGEST_RETRY_DELAY),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_negative_retry_count_is_a_first_attempt_and_a_huge_one_saturates() {
        match end(Err(TaskError::Retry(exc())), -5, &POLICY, 0.0) {
            End::Retry { delay, .. } => assert_eq!(delay, Duration::from_secs(1)),
            other => panic!("{other:?}"),
        }
        let policy = RetryPolicy {
            max_retries: u32::MAX,
            ..POLICY
        };
        match end(Err(TaskError::Retry(exc())), 40, &policy, 0.0) {
            End::Retry { delay, .. } => assert_eq!(delay, Duration::from_secs(5)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            end(Err(TaskError::Retry(exc())), i64::MAX, &POLICY, 0.0),
            End::GaveUp {
                attempts: i64::MAX,
                ..
            }
        ));
    }

    #[test]
    fn every_other_outcome_maps_to_its_end() {
        assert!(matches!(end(Ok(output()), 0, &POLICY, 0.0), End::Succeeded(o) if o.value == 3));
        assert!(matches!(
            end(Err(TaskError::Failed(exc())), 0, &POLICY, 0.0),
            End::Failed { timeout: false, .. }
        ));
        let stopped = |s| end(Err(TaskError::Stopped(s)), 0, &POLICY, 0.0);
        assert!(matches!(
            stopped(Stopped::Terminated(9)),
            End::Terminated(9)
        ));
        match stopped(Stopped::TimeLimit {
            seconds: 2.5,
            soft: true,
        }) {
            End::Failed { exc, timeout: true } => {
                assert_eq!(exc.exc_type, "SoftTimeLimitExceeded");
                assert_eq!(exc.exc_module, "billiard.exceptions");
                assert_eq!(exc.exc_message, serde_json::json!([2.5]));
            }
            other => panic!("{other:?}"),
        }
        let unfinished = |e| end(Err(e), 0, &POLICY, 0.0);
        assert!(matches!(
            unfinished(TaskError::Transient("x".into())),
            End::Unfinished {
                no_memory: false,
                ..
            }
        ));
        assert!(matches!(
            unfinished(TaskError::NoMemory("x".into())),
            End::Unfinished {
                no_memory: true,
                ..
            }
        ));
    }
}
