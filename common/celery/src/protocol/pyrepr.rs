//! Python's `repr()` of JSON values, as Celery writes `args`, `kwargs`, `result` and
//! `exception` into task events (Flower shows these strings as they are), and what is shown of
//! a URL: an http(s) URL in any value shown (a repr, an `inspect` listing) is cut to
//! `scheme://host/...`, since webhook URLs (Slack's, Teams') carry a secret in their path.

mod printable;

use std::fmt::Write as _;

use serde_json::{Map, Value};

/// Longest repr sent (Celery's `resultrepr_maxsize` is 1024); longer ones end in `...`.
pub const MAX_REPR: usize = 1024;

/// `repr(value)` as Python prints the decoded JSON, cut at [`MAX_REPR`] characters.
pub fn repr(value: &Value) -> String {
    let mut out = String::new();
    write_repr(&mut out, value);
    truncate(out)
}

/// `repr(kwargs)`: a dict, as Celery's `kwargsrepr` is (the same text as [`repr`] of the
/// object, without copying the map into a value first).
pub fn kwargs_repr(kwargs: &Map<String, Value>) -> String {
    let mut out = String::with_capacity(256);
    write_map(&mut out, kwargs);
    truncate(out)
}

/// `repr(args)` for a positional-argument list: a tuple, as Celery's `argsrepr` is.
pub fn args_repr(args: &[Value]) -> String {
    let mut out = String::from("(");
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_repr(&mut out, a);
    }
    if args.len() == 1 {
        out.push(',');
    }
    out.push(')');
    truncate(out)
}

/// `repr(exc)` of an exception `exc_type(*args)`, e.g. `ValueError('bad')`.
pub fn exception_repr(exc_type: &str, message: &Value) -> String {
    let mut out = format!("{exc_type}(");
    match message {
        Value::Array(args) => {
            for (i, a) in args.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_repr(&mut out, a);
            }
        }
        other => write_repr(&mut out, other),
    }
    out.push(')');
    truncate(out)
}

/// What is shown of `s` when it is an http(s) URL: its scheme and host (credentials, path,
/// query and fragment cut, `/...` saying so); `None` when it is not one.
pub fn shown_url(s: &str) -> Option<String> {
    let scheme = shown_url_scheme(s)?;
    let (scheme, rest) = s.split_at_checked(scheme.len())?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = rest.get(..end)?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let cut = end < rest.len() || host.len() < authority.len();
    Some(format!("{scheme}{host}{}", if cut { "/..." } else { "" }))
}

/// `text` (a producer's own `argsrepr`/`kwargsrepr`) with every http(s) URL in it cut by
/// [`shown_url`]; a URL ends at a quote, a space or a bracket.
pub fn shown_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = find_url(rest) {
        let (before, from) = rest.split_at(at);
        out.push_str(before);
        let end = from
            .find(|c: char| c.is_whitespace() || "'\"<>()[]{},".contains(c))
            .unwrap_or(from.len());
        let (url, after) = from.split_at(end);
        out.push_str(&shown_url(url).unwrap_or_else(|| url.to_owned()));
        rest = after;
    }
    out.push_str(rest);
    out
}

/// Where the first `http://` or `https://` (any case) starts in `text`: each `://` found (a
/// fast substring search) is looked behind for its scheme, instead of trying both schemes at
/// every character (that was a fifth of the cost of task events).
fn find_url(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(found) = text.get(from..).and_then(|rest| rest.find("://")) {
        let colon = from.saturating_add(found);
        let scheme = ["https", "http"].into_iter().find_map(|scheme| {
            let start = colon.checked_sub(scheme.len())?;
            let head = bytes.get(start..colon)?;
            head.eq_ignore_ascii_case(scheme.as_bytes())
                .then_some(start)
        });
        if scheme.is_some() {
            return scheme;
        }
        // `://` is ASCII, so this is a character boundary.
        from = colon.saturating_add(3);
    }
    None
}

fn shown_url_scheme(s: &str) -> Option<&'static str> {
    ["https://", "http://"].into_iter().find(|p| {
        s.get(..p.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(p))
    })
}

/// `value` as it may be shown: every http(s) URL in it cut by [`shown_url`].
pub fn shown(value: &Value) -> Value {
    match value {
        Value::String(s) => shown_url(s).map_or_else(|| value.clone(), Value::String),
        Value::Array(items) => Value::Array(items.iter().map(shown).collect()),
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), shown(v))).collect())
        }
        other => other.clone(),
    }
}

/// Whether `s` has more than [`MAX_REPR`] characters (bytes bound characters: only a long
/// text is counted).
fn over_limit(s: &str) -> bool {
    s.len() > MAX_REPR && s.chars().nth(MAX_REPR).is_some()
}

/// `s` cut at [`MAX_REPR`] characters (ending in `...` when cut).
pub fn cut(s: &str) -> String {
    if over_limit(s) {
        let mut out: String = s.chars().take(MAX_REPR - 3).collect();
        out.push_str("...");
        out
    } else {
        s.to_owned()
    }
}

/// [`cut`] of a text already owned: not copied when it is short.
pub fn truncate(s: String) -> String {
    if over_limit(&s) {
        cut(&s)
    } else {
        s
    }
}

fn write_repr(out: &mut String, value: &Value) {
    // Stop early on huge values: the result is cut at MAX_REPR anyway.
    if out.len() > MAX_REPR * 4 {
        return;
    }
    match value {
        Value::Null => out.push_str("None"),
        Value::Bool(true) => out.push_str("True"),
        Value::Bool(false) => out.push_str("False"),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 1e16 => {
                let _ = write!(out, "{f:.1}");
            }
            _ => out.push_str(&n.to_string()),
        },
        Value::String(s) => match shown_url(s) {
            Some(url) => write_str(out, &url),
            None => write_str(out, s),
        },
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_repr(out, v);
            }
            out.push(']');
        }
        Value::Object(map) => write_map(out, map),
    }
}

fn write_map(out: &mut String, map: &Map<String, Value>) {
    out.push('{');
    for (i, (k, v)) in map.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_str(out, k);
        out.push_str(": ");
        write_repr(out, v);
    }
    out.push('}');
}

/// A Python string literal: single quotes unless the text has one and no double quote. The runs
/// between characters that may need escaping (ASCII ones, and any non-ASCII character, which
/// is escaped when Python does not call it printable) are copied whole.
fn write_str(out: &mut String, s: &str) {
    // Most strings are ASCII with nothing to escape and no quote: one scan, then copied whole.
    // `b - 0x20 >= 0x5f` (wrapping): outside the printable ASCII 0x20..0x7f, in one comparison.
    let special =
        |b: u8| (b == b'\\') | (b == b'\'') | (b == b'"') | (b.wrapping_sub(0x20) >= 0x5f);
    if super::first_byte(s.as_bytes(), special).is_none() {
        out.reserve(s.len().saturating_add(2));
        out.push('\'');
        out.push_str(s);
        out.push('\'');
        return;
    }
    let quote = if s.contains('\'') && !s.contains('"') {
        b'"'
    } else {
        b'\''
    };
    // Bitwise, not `||`: see `first_byte`.
    let escaped = |b: u8| (b == b'\\') | (b == quote) | (b.wrapping_sub(0x20) >= 0x5f);
    out.push(char::from(quote));
    let mut rest = s;
    while let Some(at) = super::first_byte(rest.as_bytes(), escaped) {
        out.push_str(rest.get(..at).unwrap_or_default());
        let Some(&b) = rest.as_bytes().get(at) else {
            break;
        };
        if b >= 0x80 {
            // A character boundary: the runs before it ended on ASCII bytes.
            let Some(c) = rest.get(at..).and_then(|r| r.chars().next()) else {
                break;
            };
            write_char(out, c);
            rest = rest.get(at + c.len_utf8()..).unwrap_or_default();
            continue;
        }
        match b {
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            b if b == quote => {
                out.push('\\');
                out.push(char::from(b));
            }
            b => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
        // `b` is ASCII, so the rest starts on a character boundary.
        rest = rest.get(at + 1..).unwrap_or_default();
    }
    out.push_str(rest);
    out.push(char::from(quote));
}

/// A non-ASCII character as Python's `repr()` writes it: as it is when `str.isprintable()`
/// says so, else `\xNN`, `\uNNNN` or `\UNNNNNNNN`.
fn write_char(out: &mut String, c: char) {
    let code = u32::from(c);
    let hidden = printable::NOT_PRINTABLE
        .binary_search_by(|&(low, high)| {
            if high < code {
                std::cmp::Ordering::Less
            } else if low > code {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok();
    // Writing to a String cannot fail.
    let _ = match code {
        _ if !hidden => {
            out.push(c);
            Ok(())
        }
        0..=0xff => write!(out, "\\x{code:02x}"),
        0x100..=0xffff => write!(out, "\\u{code:04x}"),
        _ => write!(out, "\\U{code:08x}"),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_as_scheme_and_host_only() {
        let hook = "https://hooks.slack.com/services/T000/B000/s3cr3t?x=1";
        assert_eq!(
            shown_url(hook).as_deref(),
            Some("https://hooks.slack.com/...")
        );
        assert_eq!(
            shown_url("HTTP://user:pw@h:8080").as_deref(),
            Some("HTTP://h:8080/...")
        );
        assert_eq!(shown_url("http://h").as_deref(), Some("http://h"));
        // Found anywhere, in any case, after other text and other `://`s.
        assert_eq!(
            shown_text("ré x://y HTTPs://h/p ftp://z xhttp://k/q"),
            "ré x://y HTTPs://h/... ftp://z xhttp://k/..."
        );
        assert_eq!(shown_text("https:/ http:// ://"), "https:/ http:// ://");
        assert_eq!(shown_url("ftp://h/x"), None);
        assert_eq!(shown_url("ht"), None);
        let kwargs = serde_json::json!({"url": hook, "n": [hook, 1]});
        let text = repr(&kwargs);
        assert!(
            !text.contains("s3cr3t") && text.contains("hooks.slack.com"),
            "{text}"
        );
        assert!(!shown(&kwargs).to_string().contains("s3cr3t"));
        let theirs = format!("{{'url': '{hook}', 'to': 'HTTPS://x/y z'}}");
        assert_eq!(
            shown_text(&theirs),
            "{'url': 'https://hooks.slack.com/...', 'to': 'HTTPS://x/... z'}"
        );
    }
    use serde_json::json;

    #[test]
    fn matches_python_repr() {
        assert_eq!(
            repr(&json!({"order_id": "o-1", "n": 2, "ok": true, "x": null, "f": 1.5})),
            "{'f': 1.5, 'n': 2, 'ok': True, 'order_id': 'o-1', 'x': None}"
        );
        assert_eq!(repr(&json!("it's")), "\"it's\"");
        assert_eq!(repr(&json!("a'\"b\n")), "'a\\'\"b\\n'");
        assert_eq!(repr(&json!(2.0)), "2.0");
        assert_eq!(args_repr(&[json!(20)]), "(20,)");
        assert_eq!(args_repr(&[]), "()");
        let kwargs = json!({"order_id": "o-1", "n": [1, "x"]});
        assert_eq!(kwargs_repr(kwargs.as_object().unwrap()), repr(&kwargs));
        assert_eq!(
            exception_repr("ValueError", &json!(["bad"])),
            "ValueError('bad')"
        );
    }

    #[test]
    fn escapes_anywhere_in_a_string_read_as_python_writes_them() {
        // Each expected text is Python 3.11's repr() of the same string.
        assert_eq!(repr(&json!("\\\u{1}é\u{7f}\tend")), r"'\\\x01é\x7f\tend'");
        assert_eq!(repr(&json!("x'y")), r#""x'y""#);
        assert_eq!(repr(&json!("\"")), r#"'"'"#);
        assert_eq!(repr(&json!("ü\nü\n")), r"'ü\nü\n'");
        assert_eq!(repr(&json!("")), "''");
    }

    #[test]
    fn characters_python_does_not_call_printable_are_escaped_as_python_escapes_them() {
        // Each expected text is Python 3.11's repr() of the same string: C1 controls, no-break
        // and zero-width spaces, line and paragraph separators, the BOM, private use and
        // unassigned code points, tags; printable letters and emoji stay as they are.
        for (text, python) in [
            ("\u{85}", r"'\x85'"),
            ("\u{a0}", r"'\xa0'"),
            ("\u{ad}", r"'\xad'"),
            ("é", "'é'"),
            ("\u{200b}", r"'\u200b'"),
            ("\u{2028}", r"'\u2028'"),
            ("\u{feff}", r"'\ufeff'"),
            ("\u{e000}", r"'\ue000'"),
            ("\u{378}", r"'\u0378'"),
            ("中", "'中'"),
            ("😀", "'😀'"),
            ("\u{e0001}", r"'\U000e0001'"),
            ("\u{10ffff}", r"'\U0010ffff'"),
            ("a\u{2029}b'\"", r#"'a\u2029b\'"'"#),
            ("ünï\u{85}x\u{85}", r"'ünï\x85x\x85'"),
        ] {
            assert_eq!(repr(&json!(text)), python, "{text:?}");
        }
    }

    #[test]
    fn the_table_of_hidden_characters_is_sorted_and_disjoint() {
        let table = printable::NOT_PRINTABLE;
        assert!(table.len() > 600, "{}", table.len());
        assert!(table
            .iter()
            .all(|&(low, high)| 0x80 <= low && low <= high && high <= 0x10_ffff));
        assert!(
            table.windows(2).all(|w| w[0].1 + 1 < w[1].0),
            "sorted, apart"
        );
    }

    #[test]
    fn long_values_are_cut() {
        let r = repr(&json!(vec!["x".repeat(100); 1000]));
        assert_eq!(r.chars().count(), MAX_REPR);
        assert!(r.ends_with("..."));
        // The limit is in characters, wide ones too.
        for c in ["x", "é", "😀"] {
            let fits = c.repeat(MAX_REPR);
            assert_eq!(cut(&fits), fits);
            assert_eq!(truncate(fits.clone()), fits);
            let over = c.repeat(MAX_REPR + 1);
            for shown in [cut(&over), truncate(over.clone())] {
                assert_eq!(shown.chars().count(), MAX_REPR, "{c}");
                assert!(shown.ends_with("..."));
            }
        }
    }
}
