//! Redis Sentinel and replication: kombu's `sentinel://` URL lists, finding the master the
//! sentinels name (checked with `ROLE`), and the `WAIT` policy for the writes that matter.
//!
//! A leaf: it uses nothing else of this crate. `config` reads the variables and keeps a
//! [`Topology`] in every `RedisUrl`; `connection` and the pub/sub code ask it for the master.

use std::sync::Arc;
use std::time::Duration;

use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo, RedisError};

/// Most sentinels one URL may list.
pub const MAX_SENTINELS: usize = 16;
/// Sentinel's port when a URL gives none (kombu's default too).
pub const DEFAULT_PORT: u16 = 26379;
/// How the error of a resolution that found no master begins.
const NO_MASTER: &str = "no master found: ";
/// Bound on each exchange with one sentinel or one candidate master while resolving.
const ASK_WAIT: Duration = Duration::from_secs(1);

/// How many replicas must acknowledge a write that matters (`WAIT`), and for how long to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Wait {
    pub replicas: u64, // 0: off (the default for a plain URL; 1 for a `sentinel://` one)
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
    pub addrs: Vec<(String, u16)>,
    pub master: String,
}

/// A parsed `sentinel://` URL list: the sentinels, and the master's database and credentials.
pub struct SentinelUrl {
    pub addrs: Vec<(String, u16)>,
    pub settings: RedisConnectionInfo,
}

/// Whether `url` is in kombu's sentinel form (a `sentinel://` URL, or several joined by `;`).
pub fn is_url(url: &str) -> bool {
    url.trim_start()
        .get(..11)
        .is_some_and(|s| s.eq_ignore_ascii_case("sentinel://"))
}

/// Parses `sentinel://[[user]:password@]host[:port][/db];sentinel://host2[:port2];...`. The
/// first URL's credentials and database are the master's; a later URL may repeat them but not
/// differ. Errors never contain the password.
pub fn parse_url(url: &str) -> Result<SentinelUrl, String> {
    let mut addrs = Vec::new();
    let mut settings: Option<(Option<String>, Option<String>, i64)> = None;
    for (i, part) in url.split(';').enumerate() {
        let n = i.saturating_add(1);
        let part = part.trim();
        if part.is_empty() {
            return Err(format!("sentinel URL {n} is empty (a stray ';'?)"));
        }
        if addrs.len() >= MAX_SENTINELS {
            return Err(format!("lists more than {MAX_SENTINELS} sentinels"));
        }
        let rest = match part.get(..11) {
            Some(s) if s.eq_ignore_ascii_case("sentinel://") => &part[11..],
            _ => return Err(format!("URL {n} does not start with sentinel://")),
        };
        let (addr, creds, db) = one(rest).map_err(|e| format!("sentinel URL {n}: {e}"))?;
        addrs.push(addr);
        match &settings {
            None => settings = Some((creds.0, creds.1, db.unwrap_or(0))),
            Some((user, pass, first_db)) => {
                let differs = (creds.0.is_some() && creds.0 != *user)
                    || (creds.1.is_some() && creds.1 != *pass)
                    || db.is_some_and(|d| d != *first_db);
                if differs {
                    return Err(format!("sentinel URL {n} names another user, password or database than the first; give them once, in the first"));
                }
            }
        }
    }
    let (user, pass, db) = settings.ok_or("lists no sentinel")?;
    let mut info = RedisConnectionInfo::default().set_db(db);
    if let Some(user) = user {
        info = info.set_username(user);
    }
    if let Some(pass) = pass {
        info = info.set_password(pass);
    }
    Ok(SentinelUrl {
        addrs,
        settings: info,
    })
}

type Credentials = (Option<String>, Option<String>);
type One = ((String, u16), Credentials, Option<i64>);

/// One `[[user]:password@]host[:port][/db]`.
fn one(rest: &str) -> Result<One, String> {
    if rest.contains(['?', '#']) {
        return Err("has a query or fragment, which sentinel URLs do not take".into());
    }
    let (creds, hostpart) = match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let (user, pass) = match userinfo.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (userinfo, None),
            };
            let user = (!user.is_empty()).then(|| decode(user)).transpose()?;
            let pass = pass.filter(|p| !p.is_empty()).map(decode).transpose()?;
            ((user, pass), host)
        }
        None => ((None, None), rest),
    };
    let (hostport, db) = match hostpart.split_once('/') {
        Some((h, "")) => (h, None),
        Some((h, db)) => match db.parse::<i64>() {
            Ok(d) if (0..=65_535).contains(&d) => (h, Some(d)),
            _ => return Err("the database is not a whole number from 0 to 65535".into()),
        },
        None => (hostpart, None),
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or("an IPv6 address lacks its ']'")?;
        (host, after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    let valid = |c: char| c.is_ascii_alphanumeric() || ".-_:".contains(c);
    if host.is_empty() || host.len() > 253 || !host.chars().all(valid) {
        return Err("the host is missing or not a host name or address".into());
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or("the port is not a number from 1 to 65535")?,
    };
    Ok(((host.to_owned(), port), creds, db))
}

/// Percent-decoding of a user name or password (kombu unquotes them).
fn decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = s
                .get(i.saturating_add(1)..i.saturating_add(3))
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("the user name or password has a bad %-escape")?;
            out.push(hex);
            i = i.saturating_add(3);
        } else {
            out.push(b);
            i = i.saturating_add(1);
        }
    }
    String::from_utf8(out).map_err(|_| "the user name or password is not UTF-8".into())
}

/// Whether `name` can be a master name: 1-128 printable ASCII characters without spaces.
pub fn is_master_name(name: &str) -> bool {
    (1..=128).contains(&name.len()) && name.chars().all(|c| c.is_ascii_graphic())
}

impl SentinelUrl {
    /// The client a `RedisUrl` keeps for this URL: the master's database and credentials, with
    /// the first sentinel's address standing in (never connected to as a master: every
    /// connection asks [`Topology::resolve`] for the master first).
    pub fn placeholder(&self) -> redis::RedisResult<redis::Client> {
        let (host, port) = self.addrs.first().cloned().unwrap_or_default();
        let info = ConnectionAddr::Tcp(host, port)
            .into_connection_info()?
            .set_redis_settings(self.settings.clone());
        redis::Client::open(info)
    }
}

impl Topology {
    pub fn sentinel(addrs: Vec<(String, u16)>, master: String) -> Self {
        Topology {
            sentinels: Some(Arc::new(Sentinels { addrs, master })),
            wait: Wait::default(),
        }
    }

    pub fn with_wait(mut self, wait: Wait) -> Self {
        self.wait = wait;
        self
    }

    pub fn sentinels(&self) -> Option<&Sentinels> {
        self.sentinels.as_deref()
    }

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
