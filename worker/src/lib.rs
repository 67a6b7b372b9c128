//! The worker: takes Celery tasks off the Redis queue and runs them.
//!
//! Read in this order:
//! - [`worker`] — the worker as a value: build, step (one fetch), run, shut down;
//! - [`pacing`] — the pauses between fetches (Redis errors, Redis out of memory);
//! - [`waits`] — the idle worker's blocking waits, one per consumed queue;
//! - [`delivery`] — one delivery from decode to its end, its decisions unit-tested apart;
//! - [`shop`] — the shop's tasks (defined in `shop::tasks`) registered, with their dependencies;
//! - [`registry`], [`report`] — what runs here now (for remote control) and the task events;
//! - [`limits`] — each task's rate and time limits now (options, then remote control);
//! - [`control`], [`heartbeat`] — remote control (pidbox) and worker events;
//! - [`metrics`], [`labels`] — `/metrics` and `/healthz` on `WORKER_METRICS_BIND`; the task labels;
//! - [`cli`], [`admin`] — the command line and the operator subcommands; [`rules`] — the ones CI
//!   asks (`route`, `check-submissions`), answered with the fleet's own code;
//! - [`context`], [`config`], [`upkeep`]: what they say.
//!
//! The task API (what a task is, its context, the table of registered tasks) is
//! `celery_redis::task`; this crate runs whatever table it is given.

#![warn(missing_docs, unreachable_pub)]

pub mod admin;
pub mod banner;
pub mod cli;
pub mod config;
pub mod context;
pub mod control;
pub mod delivery;
pub mod heartbeat;
pub mod labels;
pub mod limits;
pub mod metrics;
pub mod pacing;
pub mod registry;
pub mod report;
pub mod rules;
pub mod shop;
pub mod start;
pub mod upkeep;
pub mod waits;
pub mod worker;

pub use start::run;
pub use worker::Worker;
