//! Test support for every crate of the workspace, used only as a dev-dependency (no production
//! binary links it).
//!
//! - [`redis`] — [`TestRedis`], a private `redis-server` on a free port.
//! - [`sentinel`] — [`TestSentinels`], a primary, a replica and three sentinels.
//! - [`process`] — the project's binaries (and Python) as child processes, awaited line by line.
//! - [`stack`] — [`Stack`], a private Redis and the real binaries on port 0, typed helpers.
//! - [`binaries`] — [`Binaries`], the real binaries on any Redis URL (a `sentinel://` one too).
//! - [`webhook`] — [`WebhookReceiver`], a local webhook that scripts its answers.
//! - [`http`] — route-test helpers (`warp::test` requests, a service configuration, the queue).
//! - [`docs`] — checks that every configuration variable is documented.
//! - [`tempdir`] — a directory removed when dropped.
//! - [`tracker`] — [`Tracker`], the results a suite under faults waits for.

#![warn(missing_docs)]

use std::time::Duration;

pub mod binaries;
pub mod docs;
pub mod http;
pub mod openapi;
pub mod process;
pub mod redis;
pub mod sentinel;
pub mod stack;
pub mod tempdir;
pub mod tracker;
pub mod webhook;

pub use crate::http::{call, queued, service_config};
pub use crate::process::{listening_addr, listening_addrs, sibling_binary, Proc};
pub use crate::redis::{
    command_stats, free_port, info_number, unreachable_redis_url, CommandStat, TestRedis,
};
pub use crate::sentinel::TestSentinels;
pub use crate::stack::{Binaries, Binary, Running, Stack};
pub use crate::tempdir::{temp_dir, TempDir};
pub use crate::tracker::{Seen, Tracker};
pub use crate::webhook::{Hit, WebhookReceiver};

/// How long a child may take to print the line a test waits for.
pub const STARTUP: Duration = Duration::from_secs(30);

/// Environment variables for a configuration test: a `config::Source` holding just `pairs`.
pub fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: std::collections::HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k: &str| map.get(k).cloned()
}
