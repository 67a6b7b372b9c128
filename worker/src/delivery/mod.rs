//! The life of one delivery, in one folder. Read in this order:
//! - [`handle`] — the delivery as the worker spawns it: decoded within the limits, the start
//!   decided, the task run (off the async threads when it is blocking), its end carried out;
//! - [`admit`] — whether it may start now: its rate limits, what it must hold;
//! - [`decide`] — every decision, without Redis (unit-tested): revoked, handed back,
//!   scheduled, expired or run; the time limit; succeeded, failed, retried, given up,
//!   terminated, left unfinished;
//! - [`apply`] — the one call that stores, acknowledges and reports how a run ended;
//! - [`ending`] — the result written with what it sends on ([`canvas`]: callbacks, chain
//!   steps, errbacks) and the ack, in one step; [`chord`]: a chord header member's join, and
//!   the chord's body published by the member that completes it;
//! - [`retry`], [`poison`], [`unknown`] — a retry or giving up, dead letters, a task nobody
//!   here runs;
//! - [`blocking`] — a blocking task on a thread of its own, its place held until it ends;
//! - [`stop`] — the time limit that stops a run before its point of no return.

pub mod admit;
pub mod apply;
pub mod blocking;
pub mod canvas;
pub mod chord;
pub mod decide;
pub mod ending;
pub mod handle;
pub mod poison;
pub mod retry;
pub mod stop;
pub mod unknown;

pub use ending::ExecuteError;
pub use handle::{guarded, in_scope};
