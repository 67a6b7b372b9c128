//! Where a webhook may go. By default anywhere public: loopback, link-local (cloud metadata),
//! private, shared, multicast and unspecified addresses are refused, as are URLs with
//! credentials or another scheme than http(s). `WEBHOOK_ALLOW` names the exceptions, as host
//! names or CIDRs. The check runs on the addresses a name resolves to, inside the HTTP client's
//! resolver, so the connection goes only to an address that was checked (no DNS rebinding).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use celery_redis::config::{raw, ConfigError, Source};

/// One `WEBHOOK_ALLOW` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allowed {
    /// A host name, matched exactly (case-insensitive); any address it resolves to is allowed.
    Host(String),
    /// An address range.
    Net(IpAddr, u8),
}

/// The destinations webhooks may reach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    allow: Vec<Allowed>,
}

impl Policy {
    /// Reads `WEBHOOK_ALLOW`: comma-separated host names and CIDRs (`10.1.0.0/16`, `::1/128`,
    /// or a bare address).
    pub fn from_source(src: &dyn Source) -> Result<Self, ConfigError> {
        let mut allow = Vec::new();
        for entry in raw(src, "WEBHOOK_ALLOW")?.iter().flat_map(|v| v.split(',')) {
            let entry = entry.trim();
            allow.push(parse_entry(entry).ok_or_else(|| ConfigError {
                var: "WEBHOOK_ALLOW",
                reason: format!("{entry:?} is neither a host name nor an address or CIDR"),
            })?);
        }
        Ok(Policy { allow })
    }

    pub fn allowing(allow: Vec<Allowed>) -> Self {
        Policy { allow }
    }

    fn host_allowed(&self, host: &str) -> bool {
        self.allow
            .iter()
            .any(|a| matches!(a, Allowed::Host(h) if h.eq_ignore_ascii_case(host)))
    }

    /// Whether a connection to `ip` (reached through `host`) may be made.
    pub fn allows(&self, host: &str, ip: IpAddr) -> bool {
        if self.host_allowed(host) {
            return true;
        }
        let listed = self.allow.iter().any(|a| match a {
            Allowed::Net(net, bits) => in_net(ip, *net, *bits),
            Allowed::Host(_) => false,
        });
        listed || is_public(ip)
    }

    /// Refuses what no resolution can fix: another scheme, credentials, no host, or an address
    /// literal outside the policy. Names are checked again when they are resolved.
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), String> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("scheme {:?} is not http or https", url.scheme()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("URLs with credentials are refused".into());
        }
        let host = url.host_str().ok_or("the URL has no host")?;
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = literal.parse::<IpAddr>() {
            if !self.allows(host, ip) {
                return Err(format!(
                    "{ip} is not an allowed webhook destination (WEBHOOK_ALLOW)"
                ));
            }
        }
        Ok(())
    }
}

fn parse_entry(entry: &str) -> Option<Allowed> {
    let (addr, bits) = match entry.split_once('/') {
        Some((a, b)) => (a, Some(b.parse::<u8>().ok()?)),
        None => (entry, None),
    };
    if let Ok(ip) = addr.parse::<IpAddr>() {
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let bits = bits.unwrap_or(max);
        return (bits <= max).then_some(Allowed::Net(ip, bits));
    }
    let host_ok = bits.is_none()
        && !entry.is_empty()
        && entry.len() <= 253
        && entry
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'));
    host_ok.then(|| Allowed::Host(entry.to_ascii_lowercase()))
}

fn in_net(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

/// Publicly routable: none of loopback, private, link-local, shared (CGNAT), multicast,
/// broadcast, documentation or unspecified, for IPv4, IPv6 and IPv4-mapped IPv6.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_unspecified()
                || a == 0
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

/// The HTTP client's resolver: resolves a name, then keeps only the addresses the policy
/// allows; none left is an error, and no connection is made.
pub struct Resolver(pub Arc<Policy>);

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| policy.allows(&host, a.ip()))
                .collect();
            if found.is_empty() {
                return Err(format!(
                    "{host} resolves to no allowed webhook destination (WEBHOOK_ALLOW)"
                )
                .into());
            }
            Ok(Box::new(found.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn internal_addresses_are_refused_by_default() {
        let p = Policy::default();
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "224.0.0.1",
        ] {
            assert!(!p.allows("x", ip(bad)), "{bad}");
        }
        assert!(p.allows("x", ip("93.184.216.34")));
        assert!(p.allows("x", ip("2606:4700::1111")));
    }

    #[test]
    fn the_allow_list_takes_hosts_and_cidrs() {
        let src = |v: &str| {
            (v == "WEBHOOK_ALLOW").then(|| "127.0.0.1, 10.0.0.0/8,hooks.internal".to_owned())
        };
        let p = Policy::from_source(&src).unwrap();
        assert!(p.allows("x", ip("127.0.0.1")));
        assert!(!p.allows("x", ip("127.0.0.2")));
        assert!(p.allows("x", ip("10.9.9.9")));
        assert!(p.allows("HOOKS.internal", ip("192.168.0.9")));
        let bad = |v: &'static str| move |k: &str| (k == "WEBHOOK_ALLOW").then(|| v.to_owned());
        assert!(Policy::from_source(&bad("10.0.0.0/33")).is_err());
        assert!(Policy::from_source(&bad("a b")).is_err());
        assert!(Policy::from_source(&bad("")).is_err());
    }

    #[test]
    fn urls_with_credentials_or_other_schemes_are_refused() {
        let p = Policy::default();
        for bad in [
            "http://user:pw@example.com/hook",
            "http://user@example.com/hook",
            "file:///etc/passwd",
            "ftp://example.com/x",
            "http://127.0.0.1:6379/",
            "http://[::1]:6379/",
            "http://169.254.169.254/latest/meta-data",
        ] {
            let url = reqwest::Url::parse(bad).unwrap();
            assert!(p.check_url(&url).is_err(), "{bad}");
        }
        assert!(p
            .check_url(&reqwest::Url::parse("https://example.com/h").unwrap())
            .is_ok());
    }
}
