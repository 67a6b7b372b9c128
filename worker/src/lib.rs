//! The worker: takes Celery tasks off the Redis queue and runs them.
//!
//! Read in this order:
//! - [`worker`] — the worker as a value: build, step (one fetch), run, shut down;
//! - [`pacing`] — the pauses between fetches (Redis errors, Redis out of memory);
//! - [`waits`] — the idle worker's blocking waits, one per consumed queue;
//! - [`execute`] — one delivery from decode to its end;
//! - [`shop`] — the shop's tasks (defined in `shop::tasks`) registered, with their dependencies;
//! - [`ending`], [`retry`], [`poison`], [`unknown`]: the ways a delivery ends;
//! - [`canvas`] — callbacks and chain steps a task sends on;
//! - [`registry`], [`report`] — what runs here now (for remote control) and the task events;
//! - [`stop`] — whether a running task may still be stopped (terminate, time limit);
//! - [`control`], [`heartbeat`] — remote control (pidbox) and worker events;
//! - [`metrics`], [`labels`] — `/metrics` and `/healthz` on `WORKER_METRICS_BIND`; the task labels;
//! - [`cli`], [`admin`] — the command line and the operator subcommands;
//! - [`context`], [`config`], [`upkeep`]: what they say.
//!
//! The task API (what a task is, its context, the table of registered tasks) is
//! `celery_redis::task`; this crate runs whatever table it is given.

pub mod admin;
pub mod banner;
pub mod canvas;
pub mod cli;
pub mod config;
pub mod context;
pub mod control;
pub mod ending;
pub mod execute;
pub mod heartbeat;
pub mod labels;
pub mod metrics;
pub mod pacing;
pub mod poison;
pub mod registry;
pub mod report;
pub mod retry;
pub mod shop;
pub mod start;
pub mod stop;
pub mod unknown;
pub mod upkeep;
pub mod waits;
pub mod worker;

pub use start::run;
pub use worker::Worker;
