//! Python's `repr()` of JSON values, as Celery writes `args`, `kwargs`, `result` and
//! `exception` into task events (Flower shows these strings as they are), and what is shown of
//! a URL: an http(s) URL in any value shown (a repr, an `inspect` listing) is cut to
//! `scheme://host/...`, since webhook URLs (Slack's, Teams') carry a secret in their path.

use std::fmt::Write as _;

use serde_json::Value;

/// Longest repr sent (Celery's `resultrepr_maxsize` is 1024); longer ones end in `...`.
pub const MAX_REPR: usize = 1024;

/// `repr(value)` as Python prints the decoded JSON, cut at [`MAX_REPR`] characters.
pub fn repr(value: &Value) -> String {
    let mut out = String::new();
    write_repr(&mut out, value);
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

/// Where the first `http://` or `https://` (any case) starts in `text`.
fn find_url(text: &str) -> Option<usize> {
    text.char_indices()
        .map(|(i, _)| i)
        .find(|&i| text.get(i..).and_then(shown_url_scheme).is_some())
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

/// `s` cut at [`MAX_REPR`] characters (ending in `...` when cut).
pub fn cut(s: &str) -> String {
    if s.chars().nth(MAX_REPR).is_some() {
        let mut out: String = s.chars().take(MAX_REPR - 3).collect();
        out.push_str("...");
        out
    } else {
        s.to_owned()
    }
}

fn truncate(s: String) -> String {
    if s.chars().nth(MAX_REPR).is_some() {
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
        Value::Object(map) => {
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
    }
}

/// A Python string literal: single quotes unless the text has one and no double quote.
fn write_str(out: &mut String, s: &str) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
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
        assert_eq!(
            exception_repr("ValueError", &json!(["bad"])),
            "ValueError('bad')"
        );
    }

    #[test]
    fn long_values_are_cut() {
        let r = repr(&json!(vec!["x".repeat(100); 1000]));
        assert_eq!(r.chars().count(), MAX_REPR);
        assert!(r.ends_with("..."));
    }
}
