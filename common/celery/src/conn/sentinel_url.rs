//! kombu's `sentinel://` URL list: its sentinels' addresses, and the master's database and
//! credentials, which every sentinel of the list shares.

use redis::{ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo};

/// Most sentinels one URL may list.
const MAX_SENTINELS: usize = 16;
/// Sentinel's port when a URL gives none (kombu's default too).
const DEFAULT_PORT: u16 = 26379;

/// A parsed `sentinel://` URL list: the sentinels, and the master's database and credentials.
pub(crate) struct SentinelUrl {
    /// Each sentinel's host and port, in the URL's order (the order they are asked in).
    pub(crate) addrs: Vec<(String, u16)>,
    /// The master's database and credentials (the first URL's).
    pub(crate) settings: RedisConnectionInfo,
}

/// Whether `url` is in kombu's sentinel form (a `sentinel://` URL, or several joined by `;`).
pub(crate) fn is_url(url: &str) -> bool {
    url.trim_start()
        .get(..11)
        .is_some_and(|s| s.eq_ignore_ascii_case("sentinel://"))
}

/// Parses `sentinel://[[user]:password@]host[:port][/db];sentinel://host2[:port2];...`. The
/// first URL's credentials and database are the master's; a later URL may repeat them but not
/// differ. Errors never contain the password.
pub(crate) fn parse_url(url: &str) -> Result<SentinelUrl, String> {
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
pub(crate) fn is_master_name(name: &str) -> bool {
    (1..=128).contains(&name.len()) && name.chars().all(|c| c.is_ascii_graphic())
}

impl SentinelUrl {
    /// The client a `RedisUrl` keeps for this URL: the master's database and credentials, with
    /// the first sentinel's address standing in (never connected to as a master: every
    /// connection asks [`Topology::resolve`](super::Topology::resolve) for the master first).
    pub(crate) fn placeholder(&self) -> redis::RedisResult<redis::Client> {
        let (host, port) = self.addrs.first().cloned().unwrap_or_default();
        let info = ConnectionAddr::Tcp(host, port)
            .into_connection_info()?
            .set_redis_settings(self.settings.clone());
        redis::Client::open(info)
    }
}
