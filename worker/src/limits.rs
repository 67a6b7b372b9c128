//! Each registered task's limits as they stand now: its per-worker rate (Celery's `rate_limit`,
//! a [`TokenBucket`]), its fleet-wide rate (`fleet_rate_limit`, counted in Redis by
//! [`celery_redis::task::fleet`]) and its time limits, from its [`Options`] when the worker is
//! built (a rate string that is not one is refused then), changed at run time by remote
//! control (`rate_limit`, `time_limit`: [`crate::control::limits`]).
//!
//! Asked once per delivery: [`Limits::wait`] before it starts (a task over a limit waits in
//! its queue's schedule, as one that [`Task::admit`](celery_redis::task::Task::admit) refuses),
//! [`Limits::time_limits`] when it runs (the message's own `timelimit` still wins, see
//! [`crate::delivery::decide::time_limit`]). A task without a rate limit costs two atomic
//! loads: no lock, no Redis call.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use celery_redis::conn::Conn;
use celery_redis::keys::Layout;
use celery_redis::protocol::pyrepr;
use celery_redis::task::rate::{self, Line, Rate, RateError, TokenBucket};
use celery_redis::task::{fleet, Options, Tasks};
use serde_json::Value;

/// Longest a task over its rate limit (or refused by its `admit`) waits in the schedule at
/// once (then it asks again).
pub const MAX_WAIT: Duration = Duration::from_secs(86_400);
/// Shortest wait: a refusal always puts the task off a little.
pub const MIN_WAIT: Duration = Duration::from_millis(1);

/// A task's option that is not a rate, refused when the worker is built.
#[derive(Debug, thiserror::Error)]
#[error("task {task}: {option}={value} is not a rate (like \"10/s\", \"100/m\", \"5/h\"): {error}")]
pub struct LimitError {
    task: &'static str,
    option: &'static str,
    value: String,
    error: RateError,
}

/// The limits of every registered task, sorted by name as the table is.
pub struct Limits {
    tasks: Vec<TaskLimits>,
}

struct TaskLimits {
    name: &'static str,
    /// Whether `bucket` holds one, read on every delivery without taking its lock.
    rated: AtomicBool,
    bucket: Mutex<Option<TokenBucket>>,
    fleet: Option<Fleet>,
    /// Hard and soft time limits (seconds) as `f64` bits, NaN for none.
    time: [AtomicU64; 2],
}

struct Fleet {
    rate: Rate,
    /// Spreads this worker's tasks told to wait over the fleet's successive starts.
    line: Mutex<Line>,
}

fn parse(
    task: &'static str,
    option: &'static str,
    value: Option<&str>,
) -> Result<Option<Rate>, LimitError> {
    let Some(value) = value else {
        return Ok(None);
    };
    rate::parse(value).map_err(|error| LimitError {
        task,
        option,
        value: pyrepr::repr(&Value::String(value.to_owned())),
        error,
    })
}

fn bits(seconds: Option<f64>) -> u64 {
    seconds.unwrap_or(f64::NAN).to_bits()
}

fn seconds(bits: &AtomicU64) -> Option<f64> {
    let s = f64::from_bits(bits.load(Ordering::Relaxed));
    (!s.is_nan()).then_some(s)
}

/// A lock whose holders cannot leave it half changed (each change is one assignment).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn wait_of(seconds: f64) -> Duration {
    Duration::try_from_secs_f64(seconds.min(MAX_WAIT.as_secs_f64()))
        .unwrap_or(MAX_WAIT)
        .max(MIN_WAIT)
}

impl TaskLimits {
    fn new(name: &'static str, options: &Options) -> Result<Self, LimitError> {
        let rate = parse(name, "rate_limit", options.rate_limit)?;
        let fleet = parse(name, "fleet_rate_limit", options.fleet_rate_limit)?;
        Ok(TaskLimits {
            name,
            rated: AtomicBool::new(rate.is_some()),
            bucket: Mutex::new(rate.map(TokenBucket::new)),
            fleet: fleet.map(|rate| Fleet {
                rate,
                line: Mutex::new(Line::default()),
            }),
            time: [
                AtomicU64::new(bits(options.time_limit)),
                AtomicU64::new(bits(options.soft_time_limit)),
            ],
        })
    }

    /// Takes a token of the per-worker bucket: `Ok(true)` when one was taken, `Ok(false)` when
    /// it has none to take (no rate), `Err(wait)` when the rate says wait.
    fn take(&self, now: f64) -> Result<bool, f64> {
        if !self.rated.load(Ordering::Relaxed) {
            return Ok(false);
        }
        match lock(&self.bucket).as_mut() {
            Some(bucket) => bucket.take(now).map(|()| true),
            None => Ok(false),
        }
    }

    fn refund(&self) {
        if let Some(bucket) = lock(&self.bucket).as_mut() {
            bucket.refund();
        }
    }
}

impl Limits {
    /// The limits of `tasks` from their options; an option that is not a rate is an error.
    pub fn new(tasks: &Tasks) -> Result<Self, LimitError> {
        let tasks = tasks
            .iter()
            .map(|t| TaskLimits::new(t.name(), t.options()))
            .collect::<Result<_, _>>()?;
        Ok(Limits { tasks })
    }

    fn find(&self, task: &str) -> Option<&TaskLimits> {
        let i = self.tasks.binary_search_by(|t| t.name.cmp(task)).ok()?;
        self.tasks.get(i)
    }

    /// Whether `task` is registered here.
    pub fn knows(&self, task: &str) -> bool {
        self.find(task).is_some()
    }

    /// `task`'s [hard, soft] time limits in seconds now (none for a task not registered).
    pub fn time_limits(&self, task: &str) -> [Option<f64>; 2] {
        self.find(task)
            .map_or([None, None], |t| [seconds(&t.time[0]), seconds(&t.time[1])])
    }

    /// Sets `task`'s time limits (Celery's `time_limit` command sets both, `None` clearing
    /// one); false when it is not registered.
    pub fn set_time_limits(&self, task: &str, hard: Option<f64>, soft: Option<f64>) -> bool {
        let Some(t) = self.find(task) else {
            return false;
        };
        t.time[0].store(bits(hard), Ordering::Relaxed);
        t.time[1].store(bits(soft), Ordering::Relaxed);
        true
    }

    /// Sets `task`'s per-worker rate (`None`: no limit), with a full bucket as Celery's
    /// `reset_rate_limits` makes; false when it is not registered.
    pub fn set_rate(&self, task: &str, rate: Option<Rate>) -> bool {
        let Some(t) = self.find(task) else {
            return false;
        };
        let mut bucket = lock(&t.bucket);
        *bucket = rate.map(TokenBucket::new);
        t.rated.store(rate.is_some(), Ordering::Relaxed);
        true
    }

    /// Whether `task` may start now (`now`: when its message was taken, the server's clock):
    /// `None` when it may (its starts counted), else how long after `now` it should be tried
    /// again. Its per-worker rate is asked first, then its fleet-wide rate in Redis (`conn`,
    /// keys of `layout`); a token taken from the first is given back when the second refuses.
    pub async fn wait(
        &self,
        conn: &Conn,
        layout: &Layout,
        task: &str,
        now: f64,
    ) -> redis::RedisResult<Option<Duration>> {
        let Some(t) = self.find(task) else {
            return Ok(None);
        };
        let took = match t.take(now) {
            Ok(took) => took,
            Err(wait) => {
                log::debug!("task {task} is over its rate limit: tried again in {wait:.3}s");
                return Ok(Some(wait_of(wait)));
            }
        };
        let Some(fleet) = &t.fleet else {
            return Ok(None);
        };
        let refused = fleet::take(conn, layout, task, fleet.rate, now).await;
        if took && !matches!(refused, Ok(None)) {
            t.refund();
        }
        let Some(wait) = refused? else {
            return Ok(None);
        };
        let booked = lock(&fleet.line).book(now, wait.as_secs_f64(), fleet.rate.interval());
        log::debug!("task {task} is over its fleet-wide rate limit: tried again in {booked:.3}s");
        Ok(Some(wait_of(booked)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use celery_redis::task::{Task, TaskContext, TaskError};

    struct Limited<const N: usize>;

    const RATES: [(Option<&str>, Option<&str>); 3] =
        [(Some("2/s"), None), (None, None), (Some("10/x"), None)];

    impl<const N: usize> Task for Limited<N> {
        const NAME: &'static str = ["a", "b", "c"][N];
        const PARAMS: &'static [&'static str] = &[];
        type Args = serde_json::Map<String, Value>;
        type Output = ();

        fn options() -> Options {
            Options {
                rate_limit: RATES[N].0,
                fleet_rate_limit: RATES[N].1,
                time_limit: Some(5.0),
                ..Options::default()
            }
        }

        async fn run(_: &TaskContext<'_>, _: Self::Args) -> Result<(), TaskError> {
            Ok(())
        }
    }

    #[test]
    fn limits_start_from_the_options_and_change_at_run_time() {
        let tasks = Tasks::new().task::<Limited<0>>().task::<Limited<1>>();
        let limits = Limits::new(&tasks).unwrap();
        let a = limits.find("a").unwrap();
        assert_eq!(a.take(10.0), Ok(true));
        assert_eq!(a.take(10.0), Err(0.5));
        assert_eq!(limits.find("b").unwrap().take(10.0), Ok(false));
        assert_eq!(limits.time_limits("a"), [Some(5.0), None]);
        assert_eq!(limits.time_limits("zz"), [None, None]);
        assert!(limits.set_time_limits("a", None, Some(2.5)));
        assert_eq!(limits.time_limits("a"), [None, Some(2.5)]);
        assert!(limits.set_rate("a", None) && limits.set_rate("b", rate::parse("1/s").unwrap()));
        assert_eq!(a.take(10.0), Ok(false));
        let b = limits.find("b").unwrap();
        assert_eq!((b.take(10.0), b.take(10.5)), (Ok(true), Err(0.5)));
        assert!(!limits.set_rate("zz", None) && !limits.set_time_limits("zz", None, None));
    }

    #[test]
    fn an_option_that_is_not_a_rate_refuses_the_worker() {
        let tasks = Tasks::new().task::<Limited<0>>().task::<Limited<2>>();
        let err = Limits::new(&tasks).err().unwrap().to_string();
        assert_eq!(
            err,
            "task c: rate_limit='10/x' is not a rate (like \"10/s\", \"100/m\", \"5/h\"): KeyError('x')"
        );
    }
}
