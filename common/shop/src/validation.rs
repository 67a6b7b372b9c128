//! Field-by-field validation of JSON payloads: every problem is reported with the field it is in.

use celery_redis::keys;
use serde::Serialize;
use serde_json::{Map, Value};

/// One problem with one field, e.g. `items[2].quantity: must be greater than 0`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FieldError {
    /// The field's path in the body (`customer.email`, `items[0].quantity`), or a parameter.
    pub field: String,
    /// What is wrong with it, for a person to read.
    pub message: String,
}

/// All problems found in a payload.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, thiserror::Error)]
#[serde(transparent)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl std::fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect();
        f.write_str(&parts.join("; "))
    }
}

impl ValidationErrors {
    /// The one problem `message` with `field`.
    pub fn single(field: impl Into<String>, message: impl Into<String>) -> Self {
        ValidationErrors(vec![FieldError {
            field: field.into(),
            message: message.into(),
        }])
    }
}

/// A typed request body, read field by field out of a JSON object: every problem is reported
/// with its field (serde's derive would stop at the first).
pub trait FromJson: Sized {
    /// Reads the body out of `obj`, or every problem found in it.
    fn from_json(obj: &Map<String, Value>) -> Result<Self, ValidationErrors>;
}

/// Collects errors while reading fields out of a JSON object. Unknown fields are ignored.
#[derive(Debug, Default)]
pub struct Fields {
    errors: Vec<FieldError>,
}

/// Longest accepted id (order, notification, SKU, customer): ids stand inside key names.
pub const MAX_ID_LEN: usize = keys::MAX_NAME_LEN;
/// Longest e-mail address.
pub const MAX_EMAIL: usize = 254;

impl Fields {
    /// No problem found yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a problem with `field`.
    pub fn error(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    /// `value` when no problem was recorded, else every problem recorded.
    pub fn finish<T>(self, value: T) -> Result<T, ValidationErrors> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(ValidationErrors(self.errors))
        }
    }

    fn required<'a>(
        &mut self,
        obj: &'a Map<String, Value>,
        path: &str,
        key: &str,
    ) -> Option<&'a Value> {
        match obj.get(key) {
            None | Some(Value::Null) => {
                self.error(join(path, key), "is required");
                None
            }
            Some(v) => Some(v),
        }
    }

    /// A required string, trimmed length 1..=max.
    pub fn string(
        &mut self,
        obj: &Map<String, Value>,
        path: &str,
        key: &str,
        max: usize,
    ) -> String {
        match self.required(obj, path, key) {
            Some(Value::String(s)) if s.trim().is_empty() => {
                self.error(join(path, key), "must not be empty");
                String::new()
            }
            // Bytes bound characters: only a long text is counted.
            Some(Value::String(s)) if s.len() > max && s.chars().count() > max => {
                self.error(join(path, key), format!("must be at most {max} characters"));
                String::new()
            }
            Some(Value::String(s)) => s.clone(),
            Some(_) => {
                self.error(join(path, key), "must be a string");
                String::new()
            }
            None => String::new(),
        }
    }

    /// An optional string (absent or null gives `None`).
    pub fn optional_string(
        &mut self,
        obj: &Map<String, Value>,
        path: &str,
        key: &str,
        max: usize,
    ) -> Option<String> {
        match obj.get(key) {
            None | Some(Value::Null) => None,
            Some(_) => Some(self.string(obj, path, key, max)),
        }
    }

    /// A required identifier: 1..=128 characters of `A-Z a-z 0-9 . _ : -` (safe in paths and keys).
    pub fn id(&mut self, obj: &Map<String, Value>, path: &str, key: &str) -> String {
        let s = self.string(obj, path, key, MAX_ID_LEN);
        if !s.is_empty() && !is_id(&s) {
            self.error(
                join(path, key),
                "may contain only letters, digits, '.', '_', ':' and '-'",
            );
        }
        s
    }

    /// A required e-mail address (see [`is_email`]).
    pub fn email(&mut self, obj: &Map<String, Value>, path: &str, key: &str) -> String {
        let s = self.string(obj, path, key, MAX_EMAIL);
        if !s.is_empty() && !is_email(&s) {
            self.error(join(path, key), EMAIL_RULE);
        }
        s
    }

    /// A required integer (JSON numbers with a fraction are refused); `None` after an error.
    pub fn integer(&mut self, obj: &Map<String, Value>, path: &str, key: &str) -> Option<i64> {
        match self.required(obj, path, key) {
            Some(Value::Number(n)) if n.is_i64() => n.as_i64(),
            Some(Value::Number(n)) if n.is_u64() => {
                self.error(join(path, key), "must be an integer within 64 bits");
                None
            }
            Some(_) => {
                self.error(join(path, key), "must be an integer");
                None
            }
            None => None,
        }
    }

    /// The object at `path.key`, required (a problem is recorded when it is absent or another type).
    pub fn object<'a>(
        &mut self,
        obj: &'a Map<String, Value>,
        path: &str,
        key: &str,
    ) -> Option<&'a Map<String, Value>> {
        match self.required(obj, path, key) {
            Some(Value::Object(o)) => Some(o),
            Some(_) => {
                self.error(join(path, key), "must be an object");
                None
            }
            None => None,
        }
    }

    /// The array at `path.key`, required (a problem is recorded when it is absent or another type).
    pub fn array<'a>(
        &mut self,
        obj: &'a Map<String, Value>,
        path: &str,
        key: &str,
    ) -> Option<&'a Vec<Value>> {
        match self.required(obj, path, key) {
            Some(Value::Array(a)) => Some(a),
            Some(_) => {
                self.error(join(path, key), "must be an array");
                None
            }
            None => None,
        }
    }
}

/// `a.b`, or `b` at the top level.
pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// What [`is_email`] accepts, as an error message.
pub const EMAIL_RULE: &str = "must be an email address: local@domain.tld with letters, digits and . _ % + - before the @, letters, digits, - and dots after it";

/// A conservative e-mail address (it becomes part of a key name): one `@`; before it 1-64 of
/// `A-Z a-z 0-9 . _ % + -`, not starting or ending with a dot; after it two or more labels of
/// `A-Z a-z 0-9 -` (not starting or ending with `-`) joined by single dots. No white space,
/// control characters or wildcards anywhere.
pub fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    let local_ok = (1..=64).contains(&local.len())
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-'));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    s.len() <= MAX_EMAIL && local_ok && domain_ok
}

/// [`is_email`] as a regular expression, for schemas (ECMA 262 and Rust's `regex` alike); it
/// leaves out the lengths (at most [`MAX_EMAIL`] in all, 64 before the `@`, 63 per label).
pub const EMAIL_PATTERN: &str = "^[A-Za-z0-9_%+-]+(?:\\.[A-Za-z0-9_%+-]+)*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.)+[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$";

/// [`is_id`] but its length (at most [`MAX_ID_LEN`]) as a regular expression, for schemas.
pub const ID_PATTERN: &str = keys::KEY_PART_PATTERN;

/// Whether `s` is a valid id (the rule of [`keys::is_key_part`]).
pub fn is_id(s: &str) -> bool {
    keys::is_key_part(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The limit counts characters, as Python's `len()` does, not bytes.
    #[test]
    fn a_strings_limit_is_in_characters() {
        for (text, ok) in [
            ("é".repeat(4), true),
            ("é".repeat(5), false),
            ("e".repeat(4), true),
            ("e".repeat(5), false),
            ("😀".repeat(4), true),
        ] {
            let obj = Map::from_iter([("k".to_owned(), Value::String(text.clone()))]);
            let mut fields = Fields::new();
            let got = fields.string(&obj, "", "k", 4);
            assert_eq!(fields.finish(()).is_ok(), ok, "{text}");
            assert_eq!(got.is_empty(), !ok, "{text}");
        }
    }

    #[test]
    fn the_patterns_say_what_the_validators_check() {
        let id = regex::Regex::new(ID_PATTERN).unwrap();
        for s in ["o-1", "A", "n:1", "a.b_c", "", ".", "..", "a b", "a/b", "ü"] {
            assert_eq!(id.is_match(s), is_id(s), "{s:?}");
        }
        let email = regex::Regex::new(EMAIL_PATTERN).unwrap();
        for s in [
            "ada@example.com",
            "a.b+c@x-y.example",
            "a@b",
            "a@@b.example",
            ".a@b.example",
            "a.@b.example",
            "a..b@b.example",
            "a@-b.example",
            "a@b-.example",
            "a@b..example",
            "a b@c.example",
            "a@b.example\r\nBcc: x@y.z",
        ] {
            assert_eq!(email.is_match(s), is_email(s), "{s:?}");
        }
    }
}
