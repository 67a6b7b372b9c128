//! A remote-control request as kombu's `Mailbox` sends it on `celery.pidbox`, and the rule of
//! `kombu.pidbox.Node.handle_message` that says whether a node acts on it.

use regex::RegexBuilder;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::glob::Glob;
use crate::protocol::{DecodeError, Fanout};

/// Longest node-name pattern compiled (a pattern is a node name with wildcards).
const MAX_PATTERN: usize = 256;

/// Where replies go: the direct exchange and the client's routing key (its oid).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ReplyTo {
    /// The reply exchange (`reply.celery.pidbox`).
    pub exchange: String,
    /// The client's oid: its replies go to `<oid>.reply.celery.pidbox`'s queue.
    pub routing_key: String,
}

/// One control request (a `cast` has no ticket and no `reply_to`).
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The command, e.g. `ping`, `revoke`, `stats`.
    pub method: String,
    /// Its keyword arguments (empty when none were sent).
    pub arguments: Map<String, Value>,
    /// The nodes it is for, by name; `None` or empty: see `pattern`.
    pub destination: Option<Vec<String>>,
    /// A pattern of node names it is for, read with `matcher`.
    pub pattern: Option<String>,
    /// How `pattern` is read: `glob` or `pcre`.
    pub matcher: Option<String>,
    /// The call's id, repeated in every reply so the client can tell its replies apart.
    pub ticket: Option<String>,
    /// Where replies go; `None` for a cast.
    pub reply_to: Option<ReplyTo>,
    /// The sender's Lamport clock (header `clock`).
    pub clock: u64,
}

#[derive(Deserialize)]
struct Wire {
    method: String,
    #[serde(default)]
    arguments: Option<Map<String, Value>>,
    #[serde(default)]
    destination: Option<Vec<String>>,
    #[serde(default)]
    pattern: Option<String>,
    #[serde(default)]
    matcher: Option<String>,
    #[serde(default)]
    ticket: Option<String>,
    #[serde(default)]
    reply_to: Option<ReplyTo>,
}

impl Request {
    /// Decodes a message published on the pidbox channel.
    pub fn decode(raw: &[u8]) -> Result<Self, DecodeError> {
        let fanout = Fanout::decode(raw)?;
        let wire: Wire = serde_json::from_value(fanout.body).map_err(DecodeError::BodyJson)?;
        let clock = fanout
            .headers
            .get("clock")
            .and_then(|c| {
                c.as_u64()
                    .or_else(|| c.as_str().and_then(|s| s.parse().ok()))
            })
            .unwrap_or(0);
        Ok(Request {
            method: wire.method,
            arguments: wire.arguments.unwrap_or_default(),
            destination: wire.destination,
            pattern: wire.pattern,
            matcher: wire.matcher,
            ticket: wire.ticket,
            reply_to: wire.reply_to,
            clock,
        })
    }

    /// Whether `node` acts on this request: named in `destination`; else matching
    /// `pattern` with `matcher` (`glob` or `pcre`); else every node does.
    pub fn is_for(&self, node: &str) -> bool {
        if let Some(dest) = self.destination.as_ref().filter(|d| !d.is_empty()) {
            return dest.iter().any(|d| d == node);
        }
        match (self.pattern.as_deref(), self.matcher.as_deref()) {
            (Some(p), Some(m)) if !p.is_empty() && !m.is_empty() => matches(p, m, node),
            _ => true,
        }
    }

    /// Whether a reply is expected (a call, not a cast).
    pub fn wants_reply(&self) -> bool {
        self.reply_to.is_some() && self.ticket.is_some()
    }
}

/// kombu's matchers: `glob` is `fnmatch` (whole name, [`crate::glob`]), `pcre` is `re.match`
/// (anchored at the start only). An unknown matcher or a pattern too long or invalid matches
/// nothing.
fn matches(pattern: &str, matcher: &str, node: &str) -> bool {
    if pattern.len() > MAX_PATTERN {
        return false;
    }
    match matcher {
        "glob" => Glob::new(pattern).is_match(node),
        "pcre" => RegexBuilder::new(&format!("^(?:{pattern})"))
            .size_limit(1 << 20)
            .build()
            .is_ok_and(|re| re.is_match(node)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(dest: Value, pattern: Value, matcher: Value) -> Request {
        let body = json!({"method": "ping", "arguments": {}, "destination": dest,
                          "pattern": pattern, "matcher": matcher});
        let raw = Fanout::encode(&body, Map::new(), 2, "celery.pidbox", "");
        Request::decode(raw.as_bytes()).unwrap()
    }

    #[test]
    fn destination_pattern_or_everyone() {
        assert!(request(json!(null), json!(null), json!(null)).is_for("a@h"));
        assert!(request(json!(["a@h"]), json!(null), json!(null)).is_for("a@h"));
        assert!(!request(json!(["b@h"]), json!(null), json!(null)).is_for("a@h"));
        let glob = request(json!(null), json!("py1@*"), json!("glob"));
        assert!(glob.is_for("py1@vm"));
        assert!(!glob.is_for("rust1@vm"));
        assert!(request(json!(null), json!("r[a-z]st?@*"), json!("glob")).is_for("rust1@vm"));
        assert!(request(json!(null), json!("rust\\d"), json!("pcre")).is_for("rust1@vm"));
        assert!(!request(json!(null), json!("vm"), json!("pcre")).is_for("rust1@vm"));
        assert!(!request(json!(null), json!("*"), json!("sql")).is_for("rust1@vm"));
        assert!(!request(json!(null), json!("(a"), json!("pcre")).is_for("a"));
        let huge = "a*".repeat(1000);
        assert!(!request(json!(null), json!(huge), json!("glob")).is_for("a"));
    }
}
