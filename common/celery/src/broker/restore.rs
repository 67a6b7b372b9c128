//! Giving back what dead workers held: deliveries whose lease is older than the visibility
//! timeout go back to their queue, under kombu's `unacked_mutex`, with kombu's redelivered flags.
//! A pass restores at most `BATCH` entries in one script call; passes follow each other while
//! full batches come back, so the time to give back a backlog grows with the backlog, not with
//! the number of upkeep ticks it would otherwise wait for.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::conn::Conn;
use redis::RedisResult;

use super::{Broker, DeadLetter, BATCH};
use crate::keys::{self, Layout};
use crate::protocol::Envelope;
use crate::scripts::{EXPIRED, RESTORE, UNLOCK};

/// How long a restorer may hold `unacked_mutex`. kombu takes it for 300 s, so a restorer that
/// dies holding it (or a Redis restart that keeps it in the AOF) stops every restore for five
/// minutes; ours lasts 2 s. A pass takes milliseconds (three script calls), and two passes at
/// once are harmless anyway (each entry is restored in an atomic step that checks it is
/// unchanged): the lock only spares the work twice.
pub const MUTEX_TTL_MS: u64 = 2_000;

/// How long a holder may keep a delivery before a restore gives it back: this project's
/// workers' (their lease, renewed while they run) and anybody else's (kombu's visibility
/// timeout: a Python worker holds an eta task or a long task for its whole wait, unrenewed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Visibility {
    /// `VISIBILITY_TIMEOUT_SECS`: entries recorded under [`keys::LEASE_SUFFIX`].
    pub own: Duration,
    /// `BROKER_VISIBILITY_TIMEOUT_SECS`: every other entry (kombu's, 3600 s by default).
    pub foreign: Duration,
}

impl Visibility {
    /// The same timeout for both kinds (tests, tools).
    pub fn both(timeout: Duration) -> Self {
        Visibility {
            own: timeout,
            foreign: timeout,
        }
    }
}

/// Most `unacked_index` entries one pass looks at (those still held are passed over).
const WINDOW: usize = 1000;

/// What one pass did.
struct Pass {
    /// Entries listed as expired (a full [`BATCH`]: there may be more).
    listed: usize,
    /// Entries given back or dead-lettered.
    restored: usize,
}

impl Broker {
    /// Gives back to their queues the deliveries whose lease is older than `visibility` (their
    /// worker is gone), under kombu's `unacked_mutex`, with kombu's redelivered flags: pass after
    /// pass (the lock taken and released around each) while full batches come back. Understands
    /// entries written by Python workers too. Returns how many came back (or were dead-lettered).
    pub async fn restore_expired(&self, visibility: Visibility) -> RedisResult<usize> {
        let mut total = 0usize;
        loop {
            let Some(pass) = self.restore_pass(visibility).await? else {
                // Another restorer holds the lock: it is doing this work.
                return Ok(total);
            };
            total = total.saturating_add(pass.restored);
            // A batch that moved nothing (every entry changed meanwhile) is not a backlog.
            if pass.listed < BATCH || pass.restored == 0 {
                return Ok(total);
            }
        }
    }

    /// One pass under the lock; `None` when another restorer holds it.
    async fn restore_pass(&self, visibility: Visibility) -> RedisResult<Option<Pass>> {
        let mut conn = self.conn.clone();
        let token = uuid::Uuid::new_v4().to_string();
        let locked: Option<String> = redis::cmd("SET")
            .arg(self.layout.unacked_mutex())
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(MUTEX_TTL_MS)
            .query_async(&mut conn)
            .await?;
        if locked.is_none() {
            return Ok(None);
        }
        let pass = self.restore_locked(&mut conn, visibility).await;
        let _: RedisResult<i64> = UNLOCK
            .key(self.layout.unacked_mutex())
            .arg(&token)
            .invoke_async(&mut conn)
            .await;
        pass.map(Some)
    }

    async fn restore_locked(&self, conn: &mut Conn, visibility: Visibility) -> RedisResult<Pass> {
        let skip = self.restore_skip.load(Ordering::Relaxed);
        // Bytes: an entry a producer made that is not UTF-8 must not stop every restore.
        let listed: Vec<Vec<u8>> = EXPIRED
            .key(self.layout.unacked_index())
            .key(self.layout.unacked())
            .arg(visibility.own.as_secs_f64())
            .arg(visibility.foreign.as_secs_f64())
            .arg(keys::LEASE_SUFFIX)
            .arg(BATCH)
            .arg(WINDOW)
            .arg(skip)
            .invoke_async(conn)
            .await?;
        let [own, foreign, next, pairs @ ..] = listed.as_slice() else {
            return Ok(Pass {
                listed: 0,
                restored: 0,
            });
        };
        let next = std::str::from_utf8(next).ok().and_then(|n| n.parse().ok());
        self.restore_skip
            .store(next.unwrap_or(0), Ordering::Relaxed);
        let cutoffs = [own.as_slice(), foreign.as_slice()];
        let mut restored = 0usize;
        // Restorable entries, given back together below.
        let mut back: Vec<Back> = Vec::new();
        for pair in pairs.chunks_exact(2) {
            let (tag_bytes, value_bytes) = (&pair[0], &pair[1]);
            let (Ok(tag), Ok(value)) = (
                std::str::from_utf8(tag_bytes),
                std::str::from_utf8(value_bytes),
            ) else {
                log::warn!("an unacked entry is not valid UTF-8; dead-lettering it");
                let lossy = String::from_utf8_lossy(value_bytes);
                let entry = DeadLetter::new(
                    "unacked entry is not valid UTF-8 (raw shown lossily)",
                    lossy,
                );
                if self.settle_dead(tag_bytes, &entry).await? {
                    restored = restored.saturating_add(1);
                }
                continue;
            };
            let bound = match bound_exchange(value) {
                Some((exchange, routing_key)) => {
                    Some(bound_queue(conn, &self.layout, &exchange, &routing_key).await?)
                }
                None => None,
            };
            match restorable(tag, value, &self.layout, &self.queue, bound) {
                Restorable::To(envelope, list, ours) => {
                    back.push((tag, value, envelope, list, ours))
                }
                Restorable::Unroutable(reason, envelope) => {
                    log::warn!("unacked entry {tag}: {reason}; dead-lettering it");
                    let entry = DeadLetter::about(reason, envelope);
                    if self.settle_dead(tag_bytes, &entry).await? {
                        restored = restored.saturating_add(1);
                        self.report_dead(std::slice::from_ref(&entry)).await;
                    }
                }
                Restorable::Unreadable => {
                    // Left in place it would come first in every pass and, a batch of them,
                    // hold every later orphan back for good.
                    log::warn!("unacked entry {tag} is not a kombu [envelope, exchange, routing_key] triple; dead-lettering it");
                    let entry = DeadLetter::new(
                        "unacked entry is not a kombu [envelope, exchange, routing_key] triple",
                        value,
                    );
                    if self.settle_dead(tag_bytes, &entry).await? {
                        restored = restored.saturating_add(1);
                    }
                }
            }
        }
        let moved = self.give_back(conn, cutoffs, &back).await?;
        Ok(Pass {
            listed: pairs.len() / 2,
            restored: restored.saturating_add(moved),
        })
    }

    /// Gives `back` to their lists in one script call, each only if unchanged since it was
    /// listed and past its holder's cutoff; an entry whose list holds another type of value is
    /// dead-lettered. Returns how many were given back or dead-lettered.
    async fn give_back(
        &self,
        conn: &mut Conn,
        [own, foreign]: [&[u8]; 2],
        back: &[Back<'_>],
    ) -> RedisResult<usize> {
        if back.is_empty() {
            return Ok(0);
        }
        let mut inv = RESTORE.key(self.layout.unacked());
        inv.key(self.layout.unacked_index()).arg(own).arg(foreign);
        for (tag, value, envelope, list, ours) in back {
            let ours = if *ours { "1" } else { "0" };
            inv.key(list).arg(*tag).arg(*value).arg(envelope).arg(ours);
        }
        let codes: Vec<i64> = inv.invoke_async(conn).await?;
        let mut moved = 0usize;
        for ((tag, _, envelope, list, _), code) in back.iter().zip(codes) {
            match code {
                1 => moved = moved.saturating_add(1),
                -1 => {
                    let entry = DeadLetter::about(
                        format!("restore: the list {list:?} holds another type of value"),
                        envelope.as_str(),
                    );
                    if self.settle_dead(tag.as_bytes(), &entry).await? {
                        moved = moved.saturating_add(1);
                        self.report_dead(std::slice::from_ref(&entry)).await;
                    }
                }
                _ => {}
            }
        }
        Ok(moved)
    }
}

/// An entry a pass gives back if unchanged: tag, value as listed, envelope to push, list, and
/// whether it is a lease of this project's workers ([`held_by_us`]).
type Back<'a> = (&'a str, &'a str, String, String, bool);

/// What an `unacked` entry restores to.
enum Restorable {
    /// This envelope (with the redelivered flags set) back onto this list; whether the entry
    /// is a lease of this project's workers.
    To(String, String, bool),
    /// Its routing key names no usable queue: the reason, and the envelope.
    Unroutable(String, String),
    /// Not kombu's `[envelope, exchange, routing_key]`.
    Unreadable,
}

/// Most bindings read from one exchange's binding table while restoring (kombu's tables hold
/// one member per queue bound; a bigger one is not kombu's).
const MAX_BINDINGS: u64 = 1000;

/// The named exchange and routing key of an `unacked` entry a kombu worker wrote for a message
/// published to that exchange (entries of this project always name the queue, with exchange "").
fn bound_exchange(value: &str) -> Option<(String, String)> {
    let (_, exchange, routing_key) =
        serde_json::from_str::<(serde::de::IgnoredAny, String, String)>(value).ok()?;
    (!exchange.is_empty()).then_some((exchange, routing_key))
}

/// The queue kombu's binding table (`_kombu.binding.<exchange>`, members `rk SEP pattern SEP
/// queue`) binds to `routing_key` on `exchange`, as kombu's direct exchange routes; with several,
/// the first by name (kombu would push a copy to each: a duplicate on restore). `Err(reason)`
/// when none is bound, or the table is not kombu's.
async fn bound_queue(
    conn: &mut Conn,
    layout: &Layout,
    exchange: &str,
    routing_key: &str,
) -> RedisResult<Result<String, String>> {
    if !keys::is_key_part(exchange) {
        return Ok(Err(format!("exchange {exchange:?} is not a usable name")));
    }
    let table = layout.binding_table(exchange);
    let kind: String = redis::cmd("TYPE").arg(&table).query_async(conn).await?;
    let size: u64 = match kind.as_str() {
        "set" => redis::cmd("SCARD").arg(&table).query_async(conn).await?,
        _ => 0,
    };
    if kind != "set" || size > MAX_BINDINGS {
        return Ok(Err(format!(
            "no usable binding table for exchange {exchange:?} ({kind}, {size} members)"
        )));
    }
    // Bytes: a member that is not UTF-8 is skipped, not an error that stops every restore.
    let members: Vec<Vec<u8>> = redis::cmd("SMEMBERS").arg(&table).query_async(conn).await?;
    let mut bound: Vec<&str> = members
        .iter()
        .filter_map(|m| {
            let (rk, _pattern, queue) = layout.binding_parts(std::str::from_utf8(m).ok()?)?;
            (rk == routing_key && keys::is_queue_name(queue)).then_some(queue)
        })
        .collect();
    bound.sort_unstable();
    Ok(bound.first().map(|q| q.to_string()).ok_or_else(|| {
        format!("no queue is bound to exchange {exchange:?} with routing key {routing_key:?}")
    }))
}

/// Parses kombu's `[envelope, exchange, routing_key]` and returns the envelope with the
/// redelivered flags set, and the list to push it to: the routing key's queue for the default
/// exchange (every entry of this project), `bound` (looked up in kombu's binding table) for a
/// named one.
fn restorable(
    tag: &str,
    value: &str,
    layout: &Layout,
    default_queue: &str,
    bound: Option<Result<String, String>>,
) -> Restorable {
    let Ok((envelope, exchange, routing_key)) =
        serde_json::from_str::<(serde_json::Value, String, String)>(value)
    else {
        return Restorable::Unreadable;
    };
    let Ok(mut env) = serde_json::from_value::<Envelope>(envelope) else {
        return Restorable::Unreadable;
    };
    let ours = held_by_us(tag, &env);
    env.mark_redelivered();
    let queue = match bound {
        Some(Ok(queue)) if !exchange.is_empty() => queue,
        Some(Err(reason)) if !exchange.is_empty() => {
            return Restorable::Unroutable(reason, env.to_json())
        }
        _ if !routing_key.is_empty() => routing_key,
        _ => env.routing_key().unwrap_or(default_queue).to_owned(),
    };
    if !keys::is_queue_name(&queue) {
        let reason = format!("routing key {queue:?} is not a usable queue name");
        return Restorable::Unroutable(reason, env.to_json());
    }
    Restorable::To(
        env.to_json(),
        layout.queue_list(&queue, env.priority()),
        ours,
    )
}

/// Whether the `unacked` field `tag`, holding `env`, is a lease of this project's workers:
/// they record a message under its delivery tag followed by [`keys::LEASE_SUFFIX`]. A kombu
/// worker records it under the delivery tag itself, which its producer chose: one ending with
/// the suffix is still a Python worker's entry, given back only after kombu's timeout.
fn held_by_us(tag: &str, env: &Envelope) -> bool {
    tag.len() > keys::LEASE_SUFFIX.len()
        && tag.ends_with(keys::LEASE_SUFFIX)
        && env.delivery_tag() != Some(tag)
}
