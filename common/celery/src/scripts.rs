//! The Lua scripts of the Celery layer, in one place. Each is sent with `lua/prelude.lua` in
//! front (the server clock, kombu's ack, Celery's result write), so those rules have one home.
//! Every script touches only the keys Rust passes in `KEYS`; each file's header says which.
//!
//! Each script also opens with Redis 7's `#!lua` line, which says what it does when Redis is
//! out of memory (`maxmemory` reached under `noeviction`), decided here for all of them:
//! - [`deny_oom!`]: refused whole before it runs (an `OOM` error, nothing done). For the
//!   scripts that take new work or add data: a claim, a submission, a task state, a revoke,
//!   a start within a fleet-wide rate limit. A script without the line would be refused only
//!   at its first write that may grow memory: the claim's first write (`RPOP`) frees memory,
//!   so Redis let the rest of it run.
//! - [`allow_oom!`]: runs anyway. For the scripts that end, move or drop what is already held
//!   (an ack, a hand-back, a restore, a task's end and its chord join, a lease renewal): their
//!   first write frees what the rest adds back (a held message goes back to a list), or what
//!   they add is bounded by the deliveries already held, since no claim runs meanwhile.
//!   `due.lua` only reads (`no-writes`).

use std::sync::LazyLock;

use redis::Script;

/// A script: its `#!lua` line, the shared prelude, then the file `lua/$file` (or the `$part`s).
macro_rules! script {
    ($shebang:literal, $file:literal) => {
        script!($shebang, include_str!(concat!("lua/", $file)))
    };
    ($shebang:literal, $($part:expr),+) => {
        LazyLock::new(|| Script::new(concat!($shebang, "\n", include_str!("lua/prelude.lua"), $($part),+)))
    };
}

/// The batched form of a script (`lua/batch.lua`): the script as a function `one`, run once per
/// call of a batch ([`crate::batch`]). Its `#!lua` line is the script's own.
macro_rules! batched {
    ($shebang:literal, $file:literal) => {
        script!(
            $shebang,
            "local function one(KEYS, ARGV)\n",
            include_str!(concat!("lua/", $file)),
            "\nend\n",
            include_str!("lua/batch.lua")
        )
    };
}

/// A script Redis refuses whole while out of memory.
macro_rules! deny_oom {
    ($file:literal) => {
        script!("#!lua", $file)
    };
}

/// A script Redis runs even while out of memory.
macro_rules! allow_oom {
    ($file:literal) => {
        script!("#!lua flags=allow-oom", $file)
    };
}

/// Takes messages and records them in `unacked` (the consumer's fetch).
pub(crate) static CLAIM: LazyLock<Script> = deny_oom!("claim.lua");
/// Ends a held delivery, optionally moving its message elsewhere (requeue, schedule, retry,
/// dead letter).
pub(crate) static SETTLE: LazyLock<Script> = allow_oom!("settle.lua");
/// Ends a task: ack, follow-up messages and result in one step.
pub(crate) static FINISH: LazyLock<Script> = allow_oom!("finish.lua");
/// [`FINISH`] for a batch of tasks ending together (group commit).
pub(crate) static FINISH_BATCH: LazyLock<Script> = batched!("#!lua flags=allow-oom", "finish.lua");
/// A chord header member's part of the join; says whether it publishes the body.
pub(crate) static CHORD_JOIN: LazyLock<Script> = allow_oom!("chord_join.lua");
/// Stores task states without ending a delivery (`store.lua`), in batches (group commit).
pub(crate) static STORE_BATCH: LazyLock<Script> = batched!("#!lua", "store.lua");
/// Publishes once per idempotency key, within the backpressure limit.
pub(crate) static PUBLISH_ONCE: LazyLock<Script> = deny_oom!("publish_once.lua");
/// Lists due eta messages; [`MOVE_DUE`] moves them.
pub(crate) static DUE: LazyLock<Script> = script!("#!lua flags=no-writes", "due.lua");
/// Moves the messages [`DUE`] listed out of the schedule, each still there to where Rust
/// routed it (its queue, or the dead letters).
pub(crate) static MOVE_DUE: LazyLock<Script> = allow_oom!("move_due.lua");
/// Renews leases.
pub(crate) static RENEW: LazyLock<Script> = allow_oom!("renew.lua");
/// Lists expired leases; [`RESTORE`] gives them back if unchanged.
pub(crate) static EXPIRED: LazyLock<Script> = allow_oom!("expired.lua");
/// Gives the deliveries [`EXPIRED`] listed back to their queues, each only if unchanged since.
pub(crate) static RESTORE: LazyLock<Script> = allow_oom!("restore.lua");
/// Moves one dead letter back to its queue.
pub(crate) static REQUEUE_DEAD: LazyLock<Script> = allow_oom!("requeue_dead.lua");
/// Caps the dead-letter list, counting what it drops.
pub(crate) static TRIM_DEAD: LazyLock<Script> = allow_oom!("trim_dead.lua");
/// Pushes a remote-control reply with a short life.
pub(crate) static PUSH_REPLY: LazyLock<Script> = deny_oom!("push_reply.lua");
/// Remembers revoked ids fleet-wide, within Celery's horizon and cap.
pub(crate) static REMEMBER_REVOKED: LazyLock<Script> = deny_oom!("remember_revoked.lua");
/// Stores REVOKED for tasks that have not started.
pub(crate) static REVOKE_RESULT: LazyLock<Script> = deny_oom!("revoke_result.lua");
/// Allows a start within a task's fleet-wide rate limit, or says how long to wait.
pub(crate) static FLEET_RATE: LazyLock<Script> = deny_oom!("fleet_rate.lua");
/// Releases a lock its holder still owns.
pub(crate) static UNLOCK: LazyLock<Script> = allow_oom!("unlock.lua");
