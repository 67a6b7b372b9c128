//! A running task's time limit, as [`super::decide::time_limit`] chose it; whether a task may
//! still be stopped is [`celery_redis::task::Stop`]'s to decide.

use std::convert::Infallible;
use std::time::Duration;

use celery_redis::protocol::Message;
use celery_redis::task::{Stop, Stopped};

/// Fires `stop` when `limit` ((seconds, soft)) passes, (Soft)TimeLimitExceeded as billiard
/// names them; never resolves. A task past its point of no return is not stopped: it runs to
/// its end.
pub async fn time_limit(msg: &Message, limit: Option<(f64, bool)>, stop: &Stop) -> Infallible {
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
