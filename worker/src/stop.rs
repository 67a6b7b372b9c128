//! A running task's time limit: the message's `timelimit` header, else its task's options
//! (as in Celery, the message's own limits win). Whether a task may still be stopped is
//! [`celery_redis::task::Stop`]'s to decide.

use std::convert::Infallible;
use std::time::Duration;

use celery_redis::protocol::Message;
pub use celery_redis::task::{Stop, Stopped};

/// Fires `stop` when the task's time limit ([hard, soft] seconds: the message's `timelimit`,
/// each one falling back to `defaults`, its task's) passes, (Soft) TimeLimitExceeded as
/// billiard names them; never resolves. A task past its point of no return is not stopped: it
/// runs to its end.
pub async fn time_limit(msg: &Message, defaults: [Option<f64>; 2], stop: &Stop) -> Infallible {
    let usable = |l: Option<f64>| l.filter(|s| *s > 0.0 && s.is_finite());
    let [hard, soft] = msg.envelope.headers.timelimit;
    let hard = usable(hard).or(usable(defaults[0]));
    let soft = usable(soft).or(usable(defaults[1]));
    let limit = match (hard, soft) {
        (Some(h), Some(s)) if s < h => Some((s, true)),
        (Some(h), _) => Some((h, false)),
        (None, Some(s)) => Some((s, true)),
        (None, None) => None,
    };
    // A limit too large for a Duration (say 1e300 s) is no limit at all.
    if let Some((seconds, soft)) = limit {
        if let Ok(limit) = Duration::try_from_secs_f64(seconds) {
            tokio::time::sleep(limit).await;
            if !stop.fire(Stopped::TimeLimit { seconds, soft }) {
                log::warn!(
                    "task {} [{}] is past its time limit of {seconds}s after its point of no return: it runs to its end",
                    msg.task(),
                    msg.id()
                );
            }
        }
    }
    std::future::pending().await
}
