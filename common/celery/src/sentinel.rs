//! Redis Sentinel and replication: kombu's `sentinel://` URL lists, finding the master the
//! sentinels name (checked with `ROLE`), and the `WAIT` policy for the writes that matter.
//!
//! A leaf: it uses nothing else of this crate. `config` reads the variables and keeps a
//! [`Topology`] in every `RedisUrl`; `connection` and the pub/sub code ask it for the master.
//! The URL list itself is read in `url` ([`parse_url`]).

use std::sync::Arc;
use std::time::Duration;

use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo, RedisError};

mod url;

pub use url::{is_master_name, is_url, parse_url, SentinelUrl};

/// How the error of a resolution that found no master begins.
const NO_MASTER: &str = "no master found: ";
/// Bound on each exchange with one sentinel or one candidate master while resolving.
const ASK_WAIT: Duration = Duration::from_secs(1);

/// How many replicas must acknowledge a write that matters (`WAIT`), and for how long to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Wait {
    /// Replicas to wait for; 0: off (the default for a plain URL; 1 for a `sentinel://` one).
    pub replicas: u64,
    /// Longest wait for them (`WAIT`'s timeout).
    pub timeout: Duration,
}

/// What a `RedisUrl` knows beyond its client: the sentinels of a `sentinel://` URL, `WAIT`.
#[derive(Clone, Default)]
pub struct Topology {
    sentinels: Option<Arc<Sentinels>>,
    wait: Wait,
}

/// The sentinels of one URL and the master name they are asked about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sentinels {
    /// Each sentinel's host and port, in the URL's order.
    pub addrs: Vec<(String, u16)>,
    /// The master's name, as the sentinels monitor it (kombu's `master_name`).
    pub master: String,
}

impl Topology {
    /// The topology of a `sentinel://` URL: `addrs` asked about `master`, no `WAIT` yet.
    pub fn sentinel(addrs: Vec<(String, u16)>, master: String) -> Self {
        Topology {
            sentinels: Some(Arc::new(Sentinels { addrs, master })),
            wait: Wait::default(),
        }
    }

    /// The same, with `wait` as its `WAIT` policy.
    pub fn with_wait(mut self, wait: Wait) -> Self {
        self.wait = wait;
        self
    }

    /// The sentinels, `None` for a plain URL.
    pub fn sentinels(&self) -> Option<&Sentinels> {
        self.sentinels.as_deref()
    }

    /// How the writes that matter wait for replicas.
    pub fn wait(&self) -> Wait {
        self.wait
    }

    /// Whether both name the same servers (the same sentinels and master, or both none).
    pub fn same_servers(&self, other: &Topology) -> bool {
        self.sentinels() == other.sentinels()
    }

    /// `host:port/db` for a plain URL; `sentinel:h1:p1,h2:p2/db (master NAME)` for sentinels.
    pub fn redacted(&self, user: &str, addr: &ConnectionAddr, db: i64) -> String {
        match self.sentinels() {
            None => format!("{user}{addr}/{db}"),
            Some(s) => {
                let list: Vec<String> = s.addrs.iter().map(|(h, p)| format!("{h}:{p}")).collect();
                format!(
                    "sentinel:{user}{}/{db} (master {})",
                    list.join(","),
                    s.master
                )
            }
        }
    }

    /// A client of the server to use now: `client` itself for a plain URL; for sentinels, a
    /// client of the master they name (with `client`'s database and credentials), once it
    /// answers `ROLE` as a master. Sentinels are asked in order; one that does not answer, does
    /// not know the master or names a server that is not (or no longer) master is skipped.
    pub async fn resolve(&self, client: &redis::Client) -> redis::RedisResult<redis::Client> {
        let Some(s) = self.sentinels() else {
            return Ok(client.clone());
        };
        let settings = client.get_connection_info().redis_settings().clone();
        // Every sentinel at once; the newest configuration (highest epoch) first, so that a
        // sentinel that has not yet seen a failover does not send us back to the old master.
        let asked = s.addrs.iter().map(|(h, p)| ask(h, *p, &s.master));
        let answers = futures_util::future::join_all(asked).await;
        let mut why = Vec::new();
        let mut found: Vec<(u64, String, u16)> = Vec::new();
        for ((host, port), answer) in s.addrs.iter().zip(answers) {
            match answer {
                Ok(Some(m)) => found.push(m),
                Ok(None) => why.push(format!("{host}:{port} knows no master {:?}", s.master)),
                Err(e) => why.push(format!("{host}:{port}: {e}")),
            }
        }
        found.sort_by_key(|m| std::cmp::Reverse(m.0));
        found.dedup_by(|a, b| (&a.1, a.2) == (&b.1, b.2));
        for (_, mhost, mport) in found {
            let info = ConnectionAddr::Tcp(mhost.clone(), mport)
                .into_connection_info()?
                .set_redis_settings(settings.clone());
            match is_master(&info).await {
                Ok(true) => return redis::Client::open(info),
                Ok(false) => why.push(format!("{mhost}:{mport} is named, but not a master")),
                Err(e) => why.push(format!(
                    "{mhost}:{mport} is named, but does not answer ({})",
                    e.category()
                )),
            }
        }
        // A refusal: nothing was sent to any master. It names sentinels and addresses only.
        let why = format!("{NO_MASTER}{}", why.join("; "));
        Err(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, why).into())
    }
}

/// When a resolution failed because of the configuration rather than an outage: every
/// sentinel answered and none knows the master, or a "sentinel" is not one.
pub fn misconfigured(e: &RedisError) -> Option<String> {
    let shown = e.to_string();
    let detail = &shown[shown.find(NO_MASTER)?.checked_add(NO_MASTER.len())?..];
    let parts: Vec<&str> = detail.split("; ").collect();
    if parts.iter().any(|p| p.contains("is not a sentinel")) {
        return Some(detail.to_owned());
    }
    (!parts.is_empty() && parts.iter().all(|p| p.contains(" knows no master ")))
        .then(|| detail.to_owned())
}

/// `SENTINEL MASTER`: the master's configuration epoch and address, `None` when the sentinel
/// does not know the name. The error is a short reason, without credentials.
async fn ask(host: &str, port: u16, master: &str) -> Result<Option<(u64, String, u16)>, String> {
    let info = ConnectionAddr::Tcp(host.to_owned(), port)
        .into_connection_info()
        .map_err(|e| e.category().to_owned())?
        .set_redis_settings(RedisConnectionInfo::default().set_skip_set_lib_name());
    let asked = tokio::time::timeout(ASK_WAIT, async {
        let client = redis::Client::open(info)?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let cmd = redis::cmd("SENTINEL").arg("MASTER").arg(master).clone();
        cmd.query_async::<Vec<String>>(&mut conn).await
    })
    .await;
    let fields = match asked {
        Err(_) => return Err("did not answer in time".into()),
        Ok(Err(e)) if e.to_string().contains("No such master") => return Ok(None),
        Ok(Err(e)) if e.to_string().contains("unknown command") => {
            return Err("is not a sentinel (it does not know SENTINEL)".into())
        }
        Ok(Err(e)) => return Err(format!("did not answer ({})", e.category())),
        Ok(Ok(fields)) => fields,
    };
    let field = |name: &str| {
        let at = fields.iter().step_by(2).position(|f| f == name)?;
        fields.get(at.checked_mul(2)?.checked_add(1)?)
    };
    let host = field("ip").filter(|h| !h.is_empty() && h.len() <= 253);
    let port = field("port")
        .and_then(|p| p.parse::<u16>().ok())
        .filter(|p| *p > 0);
    let epoch = field("config-epoch").and_then(|e| e.parse::<u64>().ok());
    match (host, port) {
        (Some(h), Some(p)) => Ok(Some((epoch.unwrap_or(0), h.clone(), p))),
        _ => Err("answered an address that is not host and port".into()),
    }
}

/// Whether the server at `info` says it is a master (`ROLE`), with `info`'s credentials.
async fn is_master(info: &ConnectionInfo) -> redis::RedisResult<bool> {
    let checked = tokio::time::timeout(ASK_WAIT, async {
        let client = redis::Client::open(info.clone())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut conn).await?;
        let first = role
            .into_iter()
            .next()
            .map(redis::from_redis_value::<String>);
        Ok(matches!(first, Some(Ok(r)) if r == "master"))
    })
    .await;
    checked.unwrap_or_else(|_| {
        Err(RedisError::from((
            redis::ErrorKind::Io,
            "the master did not answer in time",
        )))
    })
}
