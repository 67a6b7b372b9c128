//! Python's `repr()` of JSON values, as Celery writes `args`, `kwargs`, `result` and
//! `exception` into task events (Flower shows these strings as they are).

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
        Value::String(s) => write_str(out, s),
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
