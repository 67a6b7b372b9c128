//! Redis connections and high availability, in one place: the URL, Sentinel, failovers, `WAIT`.
//!
//! Map, bottom up (each module uses only the ones above it; all private, the surface is the
//! `pub use` below):
//! - `sentinel_url` — kombu's `sentinel://` URL list: sentinels' addresses, the master's
//!   database and credentials.
//! - `resolve` — [`Topology`] (a URL's sentinels and its [`Wait`] policy) and finding the
//!   master the sentinels name, or why none was found ([`ResolveError`], typed).
//! - `url` — [`RedisUrl`], parsed once, safe to log.
//! - `failover` — the sentinels' `+switch-master`, watched once per sentinel URL for every
//!   connection made from it, and the errors that mean the master went away
//!   ([`needs_new_master`]).
//! - `connection` — [`Conn`]: a reconnecting connection with bounded [`Waits`], which follows
//!   the master the sentinels name.
//! - `calls` — [`bounded`] calls, [`ping`], and [`retry_once`] on a [`Transient`] error.
//! - `replicated` — [`Replicated`]: the writes that matter followed by `WAIT`.
//!
//! The variables that configure all this (`REDIS_URL`, `REDIS_SENTINEL_MASTER`,
//! `REDIS_WAIT_REPLICAS`, ...) are read in [`crate::config`].

mod calls;
mod connection;
mod failover;
mod replicated;
mod resolve;
mod sentinel_url;
mod url;

pub use calls::{bounded, ping, retry_once, Transient};
pub use connection::{Conn, Waits};
pub use failover::{needs_new_master, watch as watch_failovers};
pub use replicated::{short_waits, Replicated};
pub use resolve::{ResolveError, Sentinels, Skipped, Topology, Wait};
pub use url::RedisUrl;

pub(crate) use sentinel_url::{is_master_name, is_url, parse_url};
