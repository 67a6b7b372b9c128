//! The Lua scripts of the Celery layer, in one place. Each is sent with `lua/prelude.lua` in
//! front (the server clock, kombu's ack, Celery's result write), so those rules have one home.
//! Every script touches only the keys Rust passes in `KEYS`; each file's header says which.

use std::sync::LazyLock;

use redis::Script;

macro_rules! script {
    ($file:literal) => {
        LazyLock::new(|| {
            Script::new(concat!(
                include_str!("lua/prelude.lua"),
                include_str!(concat!("lua/", $file))
            ))
        })
    };
}

/// Takes messages and records them in `unacked` (the consumer's fetch).
pub static CLAIM: LazyLock<Script> = script!("claim.lua");
/// Ends a held delivery, optionally moving its message elsewhere (requeue, schedule, retry,
/// dead letter).
pub static SETTLE: LazyLock<Script> = script!("settle.lua");
/// Ends a task: ack, follow-up messages and result in one step.
pub static FINISH: LazyLock<Script> = script!("finish.lua");
/// Stores a task state without ending a delivery.
pub static STORE: LazyLock<Script> = script!("store.lua");
/// Publishes once per idempotency key, within the backpressure limit.
pub static PUBLISH_ONCE: LazyLock<Script> = script!("publish_once.lua");
/// Lists due eta messages; [`MOVE_DUE`] moves them.
pub static DUE: LazyLock<Script> = script!("due.lua");
pub static MOVE_DUE: LazyLock<Script> = script!("move_due.lua");
/// Renews leases.
pub static RENEW: LazyLock<Script> = script!("renew.lua");
/// Lists expired leases; [`RESTORE_ONE`] gives one back if unchanged.
pub static EXPIRED: LazyLock<Script> = script!("expired.lua");
pub static RESTORE_ONE: LazyLock<Script> = script!("restore_one.lua");
/// Moves one dead letter back to its queue.
pub static REQUEUE_DEAD: LazyLock<Script> = script!("requeue_dead.lua");
/// Caps the dead-letter list, counting what it drops.
pub static TRIM_DEAD: LazyLock<Script> = script!("trim_dead.lua");
/// Pushes a remote-control reply with a short life.
pub static PUSH_REPLY: LazyLock<Script> = script!("push_reply.lua");
/// Remembers revoked ids fleet-wide, within Celery's horizon and cap.
pub static REMEMBER_REVOKED: LazyLock<Script> = script!("remember_revoked.lua");
/// Stores REVOKED for a task that has not started.
pub static REVOKE_RESULT: LazyLock<Script> = script!("revoke_result.lua");
/// Releases a lock its holder still owns.
pub static UNLOCK: LazyLock<Script> = script!("unlock.lua");
