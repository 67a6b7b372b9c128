//! Revoked task ids, remembered fleet-wide in one sorted set so that every Rust worker, and a
//! worker that restarts, refuses them; kept for Celery's horizon (`REVOKE_EXPIRES`, 3 hours)
//! and cap (`REVOKES_MAX`, 50,000), as a Celery worker keeps its own in-memory set; and how
//! many one request may name ([`MAX_PER_REVOKE`]).

use std::time::Duration;

use redis::RedisResult;

use crate::conn::Conn;
use crate::keys;
use crate::scripts::REMEMBER_REVOKED;

/// How long a revoke holds (Celery's `REVOKE_EXPIRES`).
pub const HORIZON: Duration = Duration::from_secs(10_800);
/// Most ids remembered (Celery's `REVOKES_MAX`); the oldest are forgotten first.
pub const MAX_REVOKED: usize = 50_000;
/// Most ids one `revoke` request acts on (Celery has no limit); the rest are ignored, and the
/// reply says how many. Bounds what one request costs: the fleet-wide write, the REVOKED
/// results stored for tasks that run nowhere (one per id, kept `RESULT_EXPIRES_SECS`).
pub const MAX_PER_REVOKE: usize = 1_000;
/// Longest task id remembered (Celery's are 36-character uuids).
pub const MAX_ID_LEN: usize = 256;

/// Whether `id` may be remembered: non-empty, at most [`MAX_ID_LEN`] bytes.
fn is_acceptable(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_LEN
}

/// The ids that may be remembered (mingle's `hello` hands over a whole set): acceptable ones, at
/// most [`MAX_REVOKED`] of them.
pub fn acceptable<'a>(ids: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    ids.into_iter()
        .filter(|id| is_acceptable(id))
        .take(MAX_REVOKED)
        .collect()
}

/// The ids one `revoke` request acts on: its first [`MAX_PER_REVOKE`] acceptable ones, and how
/// many acceptable ids after them it ignores.
pub fn per_revoke<'a>(ids: impl IntoIterator<Item = &'a str>) -> (Vec<&'a str>, usize) {
    let mut valid = ids.into_iter().filter(|id| is_acceptable(id));
    let taken = valid.by_ref().take(MAX_PER_REVOKE).collect();
    (taken, valid.count())
}

/// Adds `ids` to the fleet's set; returns the server time they were given.
pub async fn remember(conn: &Conn, ids: &[&str]) -> RedisResult<Option<f64>> {
    if ids.is_empty() {
        return Ok(None);
    }
    let mut invocation = REMEMBER_REVOKED.key(keys::REVOKED);
    invocation.arg(HORIZON.as_secs()).arg(MAX_REVOKED);
    for id in ids {
        invocation.arg(*id);
    }
    let at: Option<String> = invocation.invoke_async(&mut conn.clone()).await?;
    Ok(at.and_then(|s| s.parse().ok()))
}

/// The ids revoked at or after `since` (server time), oldest first, with their times; at most
/// [`MAX_REVOKED`]. A key of another type reads as empty.
pub async fn since(conn: &Conn, since: f64) -> RedisResult<Vec<(String, f64)>> {
    let mut conn = conn.clone();
    let kind: String = redis::cmd("TYPE")
        .arg(keys::REVOKED)
        .query_async(&mut conn)
        .await?;
    if kind != "zset" {
        return Ok(Vec::new());
    }
    redis::cmd("ZRANGEBYSCORE")
        .arg(keys::REVOKED)
        .arg(since)
        .arg("+inf")
        .arg("WITHSCORES")
        .arg("LIMIT")
        .arg(0)
        .arg(MAX_REVOKED)
        .query_async(&mut conn)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revoke_takes_its_first_acceptable_ids_up_to_the_cap() {
        let long = "x".repeat(MAX_ID_LEN + 1);
        let mut ids: Vec<String> = vec![String::new(), long];
        ids.extend((0..MAX_PER_REVOKE + 7).map(|i| i.to_string()));
        let (taken, ignored) = per_revoke(ids.iter().map(String::as_str));
        assert_eq!((taken.len(), ignored), (MAX_PER_REVOKE, 7));
        assert_eq!(taken[0], "0");
        let (taken, ignored) = per_revoke(["a", "b"]);
        assert_eq!((taken, ignored), (vec!["a", "b"], 0));
    }
}
