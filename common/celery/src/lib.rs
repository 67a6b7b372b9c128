//! Celery protocol v2 on Redis, as kombu lays it out: the layer every other crate stands on. It
//! knows nothing about the shop or HTTP; the caller passes in its node name.
//!
//! Map, bottom up (each module uses only the ones above it):
//! - [`clock`] — timestamps as Celery writes them.
//! - [`keys`] — every Redis key name kombu and Celery use, and the fleet's layout of them
//!   (priority steps, separator, global key prefix).
//! - [`node`] — this process's node name (`origin`, a worker's `hostname`).
//! - [`protocol`] — the wire format: the kombu envelope, the `[args, kwargs, embed]` body, and
//!   [`protocol::TaskMessage`], a task to publish.
//! - [`routes`] — the queue of each task by name, the queues a worker consumes.
//! - [`eviction`] — whether a Redis keeps every key (`noeviction`, Redis 7+), asked on every
//!   (re)connection before work is taken or accepted.
//! - [`conn`] — Redis connections and high availability in one place: the URL parsed once,
//!   Sentinel (finding the master, a typed error when none is found), failovers (one watch per
//!   sentinel URL), reconnecting connections with bounded waits, `WAIT` after the writes that
//!   matter.
//! - [`config`] — typed configuration of Redis from the environment (with `envconf`).
//! - `scripts` — the Lua scripts, each sent with one shared prelude (crate-private).
//! - [`glob`] — shell-style globs as `fnmatch` reads them (control patterns, `TASK_ROUTES`).
//! - [`refusal`] — what a failed call says it wrote: nothing (refused, e.g. out of memory).
//! - [`batch`] — group commit: calls of one script made together sent as one script call.
//! - [`result`] — Celery's result backend (`celery-task-meta-<id>`).
//! - [`broker`] — the queue: publish, claim, leases, acknowledgement (its only owner), the eta
//!   schedule, restores and dead letters.
//! - [`control`] — Celery's remote control (pidbox): requests, replies, a client.
//! - [`events`] — Celery events (worker and task), task events batched as `task.multi`.
//! - [`revoked`] — revoked task ids, remembered fleet-wide.
//! - [`shutdown`] — one shutdown signal passed down to every loop.
//! - [`leases`] — the deliveries a worker holds, renewed until each is finished or handed back.
//! - [`stores`] — the broker's and the result backend's connections of a process.
//! - [`task`] — the task API: a task's type, arguments, options and context, and the table of
//!   a worker's registered tasks.
//!
//! The path of one task: a producer builds a [`protocol::TaskMessage`] and
//! [`broker::Broker::publish`]es it; a worker [`broker::Broker::claim_from`]s it, decodes it with
//! [`protocol::Message::decode`], runs it and ends it with [`broker::Broker::finish`], which
//! publishes what the task sends on, stores its result and acknowledges it.

#![warn(missing_docs, unreachable_pub)]

pub mod batch;
pub mod broker;
pub mod clock;
pub mod config;
pub mod conn;
pub mod control;
pub mod events;
pub mod eviction;
pub mod glob;
pub mod keys;
pub mod leases;
pub mod node;
pub mod protocol;
pub mod refusal;
pub mod result;
pub mod revoked;
pub mod routes;
pub(crate) mod scripts;
pub mod shutdown;
pub mod stores;
pub mod task;
