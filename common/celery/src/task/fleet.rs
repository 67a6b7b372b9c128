//! A task's fleet-wide rate limit (`Options::fleet_rate_limit`), an option Celery lacks: at most
//! so many starts per second by all workers together, whatever their number. One key per task
//! (`fleet:rate:<task>` under the fleet's key prefix) holds the next time the fleet may start
//! it, on the server's clock (GCRA without burst, `lua/fleet_rate.lua`), and expires then:
//! an idle task leaves nothing behind.

use std::time::Duration;

use redis::RedisResult;

use super::rate::Rate;
use crate::conn::Conn;
use crate::keys::Layout;
use crate::scripts::FLEET_RATE;

/// Longest interval between two starts counted (a year): a rate below one a year counts as
/// one a year, the interval then fitting the key's expiry.
const MAX_INTERVAL_US: f64 = 365.0 * 86_400.0 * 1e6;

/// A start of `task` now, within its fleet-wide `rate`: `None` when allowed (the start is
/// counted), else how long after `since` (the server's time the message was taken, so the
/// wait is counted from there) the next start may be. Nothing is counted when it is refused.
pub async fn take(
    conn: &Conn,
    layout: &Layout,
    task: &str,
    rate: Rate,
    since: f64,
) -> RedisResult<Option<Duration>> {
    let interval_us = (rate.interval() * 1e6).ceil().clamp(1.0, MAX_INTERVAL_US);
    let wait_ms: u64 = FLEET_RATE
        .key(layout.fleet_rate(task))
        .arg(format!("{interval_us:.0}"))
        .arg(since)
        .invoke_async(&mut conn.clone())
        .await?;
    Ok((wait_ms > 0).then(|| Duration::from_millis(wait_ms)))
}
