//! What a `RedisUrl` knows beyond its client ([`Topology`]: the sentinels of a `sentinel://`
//! URL, the `WAIT` policy), and finding the master the sentinels name (checked with `ROLE`),
//! or why none was found ([`ResolveError`], typed: a configuration error is told from an outage
//! without reading its text).
//!
//! It uses nothing else of this crate; every `RedisUrl` keeps a [`Topology`], and connections
//! and the pub/sub code ask it for the master.

use std::sync::Arc;
use std::time::Duration;

use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo, RedisError};

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
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
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
    /// not know the master or names a server that is not (or no longer) master is skipped, and
    /// the error says why each was (a [`RedisError`] through `?`: a refusal, nothing was sent).
    pub async fn resolve(&self, client: &redis::Client) -> Result<redis::Client, ResolveError> {
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
            let sentinel = format!("{host}:{port}");
            match answer {
                Ok(Some(m)) => found.push(m),
                Ok(None) => why.push(Skipped::UnknownMaster {
                    sentinel,
                    master: s.master.clone(),
                }),
                Err(Refused::NotASentinel) => why.push(Skipped::NotASentinel { sentinel }),
                Err(Refused::Other(reason)) => why.push(Skipped::Sentinel { sentinel, reason }),
            }
        }
        found.sort_by_key(|m| std::cmp::Reverse(m.0));
        found.dedup_by(|a, b| (&a.1, a.2) == (&b.1, b.2));
        for (_, mhost, mport) in found {
            let master = format!("{mhost}:{mport}");
            let info = ConnectionAddr::Tcp(mhost, mport)
                .into_connection_info()
                .map_err(|e| ResolveError::of(vec![Skipped::BadMaster(e.category().into())]))?
                .set_redis_settings(settings.clone());
            match is_master(&info).await {
                Ok(true) => {
                    return redis::Client::open(info).map_err(|e| {
                        ResolveError::of(vec![Skipped::BadMaster(e.category().into())])
                    })
                }
                Ok(false) => why.push(Skipped::NotMaster { master }),
                Err(e) => why.push(Skipped::MasterSilent {
                    master,
                    category: e.category().to_owned(),
                }),
            }
        }
        Err(ResolveError::of(why))
    }
}

/// Why the sentinels named no master. Its text names sentinels and addresses only, never a
/// credential. Through `?` it becomes a refused connection (nothing was sent to any master).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolveError {
    /// The configuration, not an outage: every sentinel answered and none knows the master
    /// name, or a server listed as a sentinel is not one. Start-up refuses it.
    Misconfigured(Vec<Skipped>),
    /// An outage (sentinels or the master down, a failover under way): asked again later.
    NoMaster(Vec<Skipped>),
}

/// Why one sentinel, or one master a sentinel named, was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skipped {
    /// The sentinel (`host:port`) answered that it knows no master of that name.
    UnknownMaster {
        /// The sentinel's `host:port`.
        sentinel: String,
        /// The master name asked about.
        master: String,
    },
    /// The server listed as a sentinel does not know `SENTINEL`.
    NotASentinel {
        /// Its `host:port`.
        sentinel: String,
    },
    /// The sentinel did not answer, or answered something unusable.
    Sentinel {
        /// The sentinel's `host:port`.
        sentinel: String,
        /// What happened, without credentials.
        reason: String,
    },
    /// The server a sentinel named (`host:port`) says it is not a master (`ROLE`).
    NotMaster {
        /// Its `host:port`.
        master: String,
    },
    /// The server a sentinel named does not answer.
    MasterSilent {
        /// Its `host:port`.
        master: String,
        /// The error's category (redis-rs's, without credentials).
        category: String,
    },
    /// The server a sentinel named cannot be made a client of (its error's category).
    BadMaster(String),
}

impl ResolveError {
    /// Sorts `why` into a configuration error or an outage.
    fn of(why: Vec<Skipped>) -> Self {
        let unknown = |w: &Skipped| matches!(w, Skipped::UnknownMaster { .. });
        let not_sentinel = |w: &Skipped| matches!(w, Skipped::NotASentinel { .. });
        if why.iter().any(not_sentinel) || (!why.is_empty() && why.iter().all(unknown)) {
            ResolveError::Misconfigured(why)
        } else {
            ResolveError::NoMaster(why)
        }
    }

    /// What each sentinel or master answered.
    pub fn skipped(&self) -> &[Skipped] {
        match self {
            ResolveError::Misconfigured(why) | ResolveError::NoMaster(why) => why,
        }
    }

    /// For a configuration error, what is wrong (the text a start-up refusal shows).
    pub fn misconfigured(&self) -> Option<String> {
        matches!(self, ResolveError::Misconfigured(_)).then(|| self.detail())
    }

    fn detail(&self) -> String {
        let parts: Vec<String> = self.skipped().iter().map(ToString::to_string).collect();
        parts.join("; ")
    }
}

impl std::fmt::Display for ResolveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no master found: {}", self.detail())
    }
}

impl std::error::Error for ResolveError {}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skipped::UnknownMaster { sentinel, master } => {
                write!(f, "{sentinel} knows no master {master:?}")
            }
            Skipped::NotASentinel { sentinel } => {
                write!(
                    f,
                    "{sentinel}: is not a sentinel (it does not know SENTINEL)"
                )
            }
            Skipped::Sentinel { sentinel, reason } => write!(f, "{sentinel}: {reason}"),
            Skipped::NotMaster { master } => write!(f, "{master} is named, but not a master"),
            Skipped::MasterSilent { master, category } => {
                write!(f, "{master} is named, but does not answer ({category})")
            }
            Skipped::BadMaster(category) => write!(f, "a master named is unusable ({category})"),
        }
    }
}

/// A resolution that found no master, as the refused connection of the call that needed it.
impl From<ResolveError> for RedisError {
    fn from(e: ResolveError) -> Self {
        std::io::Error::new(std::io::ErrorKind::ConnectionRefused, e.to_string()).into()
    }
}

/// Why a sentinel was skipped, as `ask` says it.
enum Refused {
    /// It does not know `SENTINEL`.
    NotASentinel,
    /// A short reason, without credentials.
    Other(String),
}

/// `SENTINEL MASTER`: the master's configuration epoch and address, `None` when the sentinel
/// does not know the name.
async fn ask(host: &str, port: u16, master: &str) -> Result<Option<(u64, String, u16)>, Refused> {
    let info = ConnectionAddr::Tcp(host.to_owned(), port)
        .into_connection_info()
        .map_err(|e| Refused::Other(e.category().to_owned()))?
        .set_redis_settings(RedisConnectionInfo::default().set_skip_set_lib_name());
    let asked = tokio::time::timeout(ASK_WAIT, async {
        let client = redis::Client::open(info)?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let cmd = redis::cmd("SENTINEL").arg("MASTER").arg(master).clone();
        cmd.query_async::<Vec<String>>(&mut conn).await
    })
    .await;
    let fields = match asked {
        Err(_) => return Err(Refused::Other("did not answer in time".into())),
        // The server's own words (Sentinel's and Redis's replies carry no code of their own).
        Ok(Err(e)) if e.to_string().contains("No such master") => return Ok(None),
        Ok(Err(e)) if e.to_string().contains("unknown command") => {
            return Err(Refused::NotASentinel)
        }
        Ok(Err(e)) => return Err(Refused::Other(format!("did not answer ({})", e.category()))),
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
        _ => Err(Refused::Other(
            "answered an address that is not host and port".into(),
        )),
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
