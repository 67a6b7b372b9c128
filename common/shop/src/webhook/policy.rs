//! Where a webhook may go. By default anywhere public: loopback, link-local (cloud metadata),
//! private, shared, multicast, reserved and unspecified addresses are refused, IPv6 forms that
//! embed an IPv4 address are judged by that address and IPv6 outside global unicast is refused
//! ([`is_public`]), as are URLs with credentials or another scheme than http(s). `WEBHOOK_ALLOW` names the exceptions, as host
//! names or CIDRs. The check runs on the addresses a name resolves to, inside the HTTP client's
//! resolver, so the connection goes only to an address that was checked (no DNS rebinding).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use envconf::{raw, ConfigError, Source};

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

    /// A policy allowing exactly `allow` (tests, and callers that build the list themselves).
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

/// Publicly routable. IPv4: none of loopback, private, link-local, shared (CGNAT), multicast,
/// broadcast, reserved (240/4), documentation, benchmarking (198.18/15), IETF protocol
/// assignments (192.0.0/24) or "this network" (0/8). IPv6: an address that stands for an IPv4
/// address ([`embedded_ipv4`]) is judged by that address; any other must be global unicast
/// (`2000::/3`, which leaves out loopback, unspecified, unique-local, link-local, site-local,
/// multicast, discard-only, SRv6 and local-use NAT64), outside documentation (`2001:db8::/32`,
/// `3fff::/20`) and the IETF protocol assignments (`2001::/23`: benchmarking, ORCHID, ...).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match embedded_ipv4(v6) {
            Some(inner) => inner.into_iter().all(is_public_v4),
            None => {
                let [first, second, ..] = v6.segments();
                first & 0xe000 == 0x2000
                    && !(first == 0x2001 && (second & 0xfe00 == 0 || second == 0x0db8))
                    && first & 0xfff0 != 0x3ff0
            }
        },
    }
}

fn is_public_v4(v4: Ipv4Addr) -> bool {
    let [a, b, c, _] = v4.octets();
    !(v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || v4.is_multicast()
        || v4.is_documentation()
        || v4.is_unspecified()
        || a == 0
        || a >= 240
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (b & 0xfe) == 18))
}

/// The IPv4 addresses an IPv6 address stands for, when it embeds any: IPv4-compatible
/// (`::a.b.c.d`) and IPv4-mapped (`::ffff:a.b.c.d`, RFC 4291), IPv4-translated
/// (`::ffff:0:a.b.c.d`, RFC 2765), NAT64's well-known prefix (`64:ff9b::/96`, RFC 6052), 6to4
/// (`2002:AABB:CCDD::/48`, RFC 3056), Teredo (`2001::/32`: the server, and the client's address
/// inverted, RFC 4380) and ISATAP interface identifiers (`…:0:5efe:a.b.c.d`, RFC 5214). Each
/// is routed (by a tunnel, a translator or the host itself) towards the address it carries.
/// Two addresses for Teredo, the same one twice otherwise.
pub fn embedded_ipv4(v6: Ipv6Addr) -> Option<[Ipv4Addr; 2]> {
    let s = v6.segments();
    let v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    let last = v4(s[6], s[7]);
    let found = match s {
        [0, 0, 0, 0, 0, 0 | 0xffff, ..] | [0, 0, 0, 0, 0xffff, 0, ..] => [last, last],
        [0x64, 0xff9b, 0, 0, 0, 0, ..] => [last, last],
        [0x2002, hi, lo, ..] => [v4(hi, lo), v4(hi, lo)],
        [0x2001, 0, hi, lo, ..] => [v4(hi, lo), v4(!s[6], !s[7])],
        [.., iid, 0x5efe, _, _] if iid & 0xfdff == 0 => [last, last],
        _ => return None,
    };
    Some(found)
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

    fn ip4(s: &str) -> std::net::Ipv4Addr {
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

    /// Each IPv6 form that stands for an IPv4 address is judged by that address: refused
    /// exactly when the IPv4 address itself is, whatever form carries it.
    #[test]
    fn ipv6_forms_embedding_an_ipv4_address_are_judged_by_it() {
        let p = Policy::default();
        type Form = (&'static str, fn(&str) -> String);
        let forms: [Form; 7] = [
            ("IPv4-compatible", |v4| format!("::{v4}")),
            ("IPv4-mapped", |v4| format!("::ffff:{v4}")),
            ("IPv4-translated", |v4| format!("::ffff:0:{v4}")),
            ("NAT64", |v4| format!("64:ff9b::{v4}")),
            ("6to4", |v4| {
                let [a, b, c, d] = ip4(v4).octets();
                format!("2002:{a:02x}{b:02x}:{c:02x}{d:02x}::1")
            }),
            ("Teredo client", |v4| {
                let [a, b, c, d] = (!u32::from(ip4(v4))).to_be_bytes();
                format!("2001:0:4136:e378:8000:63bf:{a:02x}{b:02x}:{c:02x}{d:02x}")
            }),
            ("ISATAP", |v4| format!("2620:0:1cfe:face:0:5efe:{v4}")),
        ];
        for (form, make) in forms {
            for inner in [
                "127.0.0.1",
                "10.0.0.1",
                "192.168.1.1",
                "169.254.169.254",
                "0.0.0.0",
            ] {
                let v6 = make(inner);
                assert!(!p.allows("x", ip(&v6)), "{form} {v6} ({inner})");
            }
            let v6 = make("93.184.216.34");
            assert!(p.allows("x", ip(&v6)), "{form} {v6} (public)");
        }
        // Teredo's server address counts too.
        assert!(!p.allows("x", ip("2001:0:a00:1:8000:63bf:a247:d7dd")));
    }

    #[test]
    fn ipv6_outside_global_unicast_is_refused() {
        let p = Policy::default();
        for bad in [
            "fec0::1",                  // site-local
            "feff::1",                  // site-local, top of the range
            "64:ff9b:1::7f00:1",        // local-use NAT64: the embedding is the operator's choice
            "64:ff9b:1:5db8:d8:2200::", // (a public address in its /48 form: still refused)
            "100::1",                   // discard-only
            "2001:db8::1",              // documentation
            "3fff::1",                  // documentation
            "2001:2::1",                // benchmarking
            "2001:10::1",               // ORCHID
            "5f00::1",                  // SRv6 SIDs
            "::2:0:0:1",                // reserved
        ] {
            assert!(!p.allows("x", ip(bad)), "{bad}");
            let url = reqwest::Url::parse(&format!("http://[{bad}]/h")).unwrap();
            assert!(p.check_url(&url).is_err(), "{bad}");
        }
        for good in [
            "2606:4700::1111",
            "2001:4860:4860::8888",
            "2a00:1450:4001:80b::200e",
        ] {
            assert!(p.allows("x", ip(good)), "{good}");
        }
    }

    #[test]
    fn ipv4_reserved_ranges_are_refused() {
        let p = Policy::default();
        for bad in [
            "192.0.0.8",
            "198.18.0.1",
            "198.19.255.1",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(!p.allows("x", ip(bad)), "{bad}");
        }
        assert!(p.allows("x", ip("198.20.0.1")));
    }

    #[test]
    fn embedded_loopback_urls_are_refused_as_written_by_an_attacker() {
        let p = Policy::default();
        for bad in [
            "http://[::127.0.0.1]:6379/",
            "http://[::ffff:0:127.0.0.1]/",
            "http://[64:ff9b::7f00:1]/",
            "http://[2002:7f00:1::1]/",
            "http://[fec0::1]/",
        ] {
            let url = reqwest::Url::parse(bad).unwrap();
            assert!(p.check_url(&url).is_err(), "{bad}");
        }
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
