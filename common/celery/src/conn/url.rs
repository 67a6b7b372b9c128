//! The Redis URL, parsed once into [`RedisUrl`]: its client, its sentinels and `WAIT` policy,
//! and its text safe to log (`Debug` and [`RedisUrl::redacted`] hide the password).

use super::resolve::{Topology, Wait};
use super::sentinel_url::SentinelUrl;

/// A Redis URL, parsed once (`redis://`, `rediss://` for TLS, `redis+unix://`; it may carry an
/// ACL user and password). `Debug` shows it with the password replaced by `***`.
#[derive(Clone)]
pub struct RedisUrl {
    /// The client of a plain URL; of a `sentinel://` URL, the master's settings at the first
    /// sentinel's address.
    client: redis::Client,
    /// The sentinels of a `sentinel://` URL, and the `WAIT` policy.
    topology: Topology,
}

impl RedisUrl {
    /// Parses a `redis://`, `rediss://` or `redis+unix://` URL (a `sentinel://` URL is read by
    /// [`RedisConfig`](crate::config::RedisConfig), with the sentinels' own variables).
    pub fn parse(url: &str) -> redis::RedisResult<Self> {
        init_tls();
        Ok(RedisUrl {
            client: redis::Client::open(url)?,
            topology: Default::default(),
        })
    }

    /// The URL of a parsed `sentinel://` list whose sentinels are asked about `master`.
    pub(crate) fn sentinel(parsed: SentinelUrl, master: String) -> redis::RedisResult<Self> {
        let client = parsed.placeholder()?;
        init_tls();
        Ok(RedisUrl {
            client,
            topology: Topology::sentinel(parsed.addrs, master),
        })
    }

    /// The same URL with `wait` as its `WAIT` policy.
    pub(crate) fn with_wait(mut self, wait: Wait) -> Self {
        self.topology = self.topology.with_wait(wait);
        self
    }

    /// The sentinels (for a `sentinel://` URL) and the `WAIT` policy.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// A client for this URL (cheap: it holds no connection). For a `sentinel://` URL it has
    /// the master's settings at the first sentinel's address: connect with `topology().resolve`.
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// The database index (kombu puts it in every pub/sub channel name: `/<db>.`).
    pub fn db(&self) -> i64 {
        self.client.get_connection_info().redis_settings().db()
    }

    /// The address and database, e.g. `127.0.0.1:6379/0`: safe to log.
    pub fn redacted(&self) -> String {
        let info = self.client.get_connection_info();
        let user = match (
            info.redis_settings().username(),
            info.redis_settings().password(),
        ) {
            (Some(u), Some(_)) => format!("{u}:***@"),
            (None, Some(_)) => "***@".to_owned(),
            (Some(u), None) => format!("{u}@"),
            (None, None) => String::new(),
        };
        let db = info.redis_settings().db();
        self.topology.redacted(&user, info.addr(), db)
    }

    /// The socket's path, for a `redis+unix://` URL.
    pub fn unix_socket(&self) -> Option<&std::path::Path> {
        match self.client.get_connection_info().addr() {
            redis::ConnectionAddr::Unix(path) => Some(path.as_path()),
            _ => None,
        }
    }

    /// Whether both URLs reach the same database of the same server as the same user.
    pub fn same_database(&self, other: &RedisUrl) -> bool {
        let (a, b) = (
            self.client.get_connection_info(),
            other.client.get_connection_info(),
        );
        a.addr() == b.addr()
            && a.redis_settings().db() == b.redis_settings().db()
            && a.redis_settings().username() == b.redis_settings().username()
            && self.topology.same_servers(&other.topology)
    }
}

/// Selects rustls' crypto provider once per process, so `rediss://` URLs work whichever other
/// crates also link rustls. Every `RedisUrl` is made by a function of this file that calls it.
fn init_tls() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        // Err means another provider was installed first, which is as good.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    });
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RedisUrl({})", self.redacted())
    }
}

/// A plain URL's client as a `RedisUrl` (tests and tools that hold a `redis::Client`).
impl From<redis::Client> for RedisUrl {
    fn from(client: redis::Client) -> Self {
        init_tls();
        RedisUrl {
            client,
            topology: Topology::default(),
        }
    }
}
