//! JSON written by hand for the messages the worker writes per task (envelopes, results,
//! bodies), byte for byte what serde_json writes (tests compare the two). serde_json escapes a
//! string by testing each byte on its own, which was a tenth of the worker's instructions per
//! task; here a string that needs no escape (almost all: ids, names, base64) is found so 16
//! bytes at a time and copied whole, and one that does goes to serde_json.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{Map, Value};

/// Appends `text` as a JSON string.
pub(crate) fn string(out: &mut String, text: &str) {
    if super::needs_no_escape(text) {
        out.reserve(text.len().saturating_add(2));
        out.push('"');
        out.push_str(text);
        out.push('"');
    } else {
        serde(out, text);
    }
}

/// Appends `text` as a JSON string, or `null`.
pub(crate) fn opt_string(out: &mut String, text: Option<&str>) {
    match text {
        Some(text) => string(out, text),
        None => out.push_str("null"),
    }
}

/// Appends an integer, or `null`.
pub(crate) fn opt_int(out: &mut String, n: Option<i64>) {
    match n {
        Some(n) => out.push_str(itoa::Buffer::new().format(n)),
        None => out.push_str("null"),
    }
}

/// Appends `true` or `false`.
pub(crate) fn bool(out: &mut String, b: bool) {
    out.push_str(if b { "true" } else { "false" });
}

/// Appends `value` as serde_json writes it.
pub(crate) fn value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => bool(out, *b),
        Value::Number(n) => number(out, n),
        Value::String(s) => string(out, s),
        Value::Array(items) => array(out, items),
        Value::Object(map) => object(out, map),
    }
}

/// Appends a number: an integer by `itoa`, anything else by its Display, which is its JSON.
fn number(out: &mut String, n: &serde_json::Number) {
    if let Some(i) = n.as_i64() {
        out.push_str(itoa::Buffer::new().format(i));
    } else if let Some(u) = n.as_u64() {
        out.push_str(itoa::Buffer::new().format(u));
    } else {
        // Writing to a String cannot fail.
        let _ = write!(out, "{n}");
    }
}

/// Appends `value`, or `null`.
pub(crate) fn opt_value(out: &mut String, item: Option<&Value>) {
    match item {
        Some(item) => value(out, item),
        None => out.push_str("null"),
    }
}

/// Appends a JSON array.
pub(crate) fn array(out: &mut String, items: &[Value]) {
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        value(out, item);
    }
    out.push(']');
}

/// Appends a JSON object.
pub(crate) fn object(out: &mut String, map: &Map<String, Value>) {
    let mut fields = Object::new(out);
    for (key, item) in map {
        value(fields.entry(key), item);
    }
    fields.end();
}

/// Appends `item` with serde_json (for the rare and the small: floats, canvas signatures).
pub(crate) fn serde<T: Serialize + ?Sized>(out: &mut String, item: &T) {
    // Serializing plain data cannot fail.
    out.push_str(&serde_json::to_string(item).unwrap_or_default());
}

/// An object being written: each [`Object::key`] adds a key and returns where its value goes.
pub(crate) struct Object<'a> {
    out: &'a mut String,
    empty: bool,
}

impl<'a> Object<'a> {
    pub(crate) fn new(out: &'a mut String) -> Self {
        out.push('{');
        Object { out, empty: true }
    }

    /// Adds a field the code names (`name` needs no escape: a field name of the protocol);
    /// the caller appends its value to what this returns.
    pub(crate) fn key(&mut self, name: &'static str) -> &mut String {
        debug_assert!(super::needs_no_escape(name), "{name}");
        self.comma();
        self.out.push('"');
        self.out.push_str(name);
        self.out.push_str("\":");
        self.out
    }

    /// Adds a key that came with the data (escaped as it needs); the caller appends its value.
    pub(crate) fn entry(&mut self, key: &str) -> &mut String {
        self.comma();
        string(self.out, key);
        self.out.push(':');
        self.out
    }

    fn comma(&mut self) {
        if !self.empty {
            self.out.push(',');
        }
        self.empty = false;
    }

    /// The fields of `map` after those written so far (serde's `flatten`).
    pub(crate) fn rest<'v>(&mut self, fields: impl IntoIterator<Item = (&'v String, &'v Value)>) {
        for (key, item) in fields {
            value(self.entry(key), item);
        }
    }

    pub(crate) fn end(self) {
        self.out.push('}');
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    fn ours(v: &Value) -> String {
        let mut out = String::new();
        super::value(&mut out, v);
        out
    }

    #[test]
    fn values_are_written_as_serde_writes_them() {
        let mut strings: Vec<String> = (0u32..0x80)
            .filter_map(char::from_u32)
            .map(|c| format!("a{c}b"))
            .collect();
        strings.extend(
            [
                "",
                "plain",
                "ünï",
                "\u{2028}",
                "😀",
                "\"",
                "\\",
                "x".repeat(40).as_str(),
            ]
            .map(String::from),
        );
        strings.push(format!("{}\n{}", "y".repeat(17), "z".repeat(33)));
        for s in &strings {
            let v = json!({ s.as_str(): [s, {"k": s}] });
            assert_eq!(ours(&v), serde_json::to_string(&v).unwrap(), "{s:?}");
        }
        let v = json!([null, true, false, 0, -1, i64::MIN, u64::MAX, 0.1, -0.0, 1e300, 2.5e-8,
            [], {}, [[{"a": {"b": []}}]]]);
        assert_eq!(ours(&v), serde_json::to_string(&v).unwrap());
    }
}
