//! What one message may cost the worker that decodes it: its size in bytes, the size of its
//! body once inflated, how many JSON values each part decodes into, and how many times it may
//! be delivered. A task message is a few kilobytes; these bounds keep a hostile one (a zlib bomb,
//! a megabyte of `0,` under one kwarg) from taking more than a few times its byte limit.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::error::DecodeError;

/// Default largest list entry decoded, and largest body after base64 and zlib.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// Default most deliveries of one message: the one after it goes to the dead-letter list.
pub const MAX_DELIVERIES: u32 = 5;
/// Each JSON value of a part costs at least this many bytes of its byte limit: the envelope and
/// the body may each hold `max_bytes / BYTES_PER_VALUE` values (65,536 for 1 MiB). Decoded, a
/// value takes 32 to ~170 bytes (a map entry in a tree, buffered once by serde on the way).
pub const BYTES_PER_VALUE: usize = 16;

/// The bounds of one message, as the worker's configuration sets them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest list entry, and largest body once decoded and inflated (`MESSAGE_MAX_BYTES`).
    pub max_bytes: usize,
    /// Most deliveries before it is dead-lettered (`MESSAGE_MAX_DELIVERIES`).
    pub max_deliveries: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: MAX_MESSAGE_BYTES,
            max_deliveries: MAX_DELIVERIES,
        }
    }
}

impl Limits {
    /// Most JSON values the envelope, and the body, may each hold.
    pub fn max_values(&self) -> usize {
        (self.max_bytes / BYTES_PER_VALUE).max(1)
    }

    /// Refuses `json` (the entry or the body, named `what`) when it is larger than the byte limit
    /// or holds more values than [`Limits::max_values`], before anything is built from it. The
    /// values are counted only when the text is large enough to hold too many (every value takes
    /// at least two bytes, `0,`): a task message of kilobytes is not scanned. A syntax error is
    /// left to the decoder that follows.
    pub fn check(&self, json: &[u8], what: &'static str) -> Result<(), DecodeError> {
        if json.len() > self.max_bytes {
            return Err(DecodeError::TooLarge(what, self.max_bytes));
        }
        let max = self.max_values();
        if json.len() / 2 < max {
            return Ok(());
        }
        let count = Count {
            left: &Cell::new(max),
            over: &Cell::new(false),
        };
        let mut de = serde_json::Deserializer::from_slice(json);
        if count.deserialize(&mut de).is_err() && count.over.get() {
            return Err(DecodeError::TooManyValues(what, max));
        }
        Ok(())
    }
}

/// Counts JSON values without building any, stopping at the first one over the budget
/// (serde_json bounds the nesting at 128).
#[derive(Clone, Copy)]
struct Count<'a> {
    left: &'a Cell<usize>,
    over: &'a Cell<bool>,
}

impl Count<'_> {
    fn take<E: de::Error>(self) -> Result<(), E> {
        match self.left.get().checked_sub(1) {
            Some(left) => {
                self.left.set(left);
                Ok(())
            }
            None => {
                self.over.set(true);
                Err(E::custom("too many values"))
            }
        }
    }
}

impl<'de> DeserializeSeed<'de> for Count<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Count<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.take()
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.take()
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.take()
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.take()
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.take()
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.take()
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.take()?;
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.take()?;
        // A key is a string: counted with its value, as one entry costs more than a value.
        while map.next_key::<IgnoredAny>()?.is_some() {
            self.take()?;
            map.next_value_seed(self)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_bytes: usize) -> Limits {
        Limits {
            max_bytes,
            ..Limits::default()
        }
    }

    #[test]
    fn small_text_is_not_scanned_and_large_text_is_counted() {
        let l = limits(1024);
        assert_eq!(l.max_values(), 64);
        // 63 values in 127 bytes: under the bound whatever they are.
        let ok = format!("[{}]", vec!["0"; 62].join(","));
        assert!(l.check(ok.as_bytes(), "body").is_ok());
        let over = format!("[{}]", vec!["0"; 64].join(","));
        assert!(matches!(
            l.check(over.as_bytes(), "body"),
            Err(DecodeError::TooManyValues("body", 64))
        ));
        // Few values in many bytes pass.
        let long = format!("[\"{}\"]", "x".repeat(1000));
        assert!(l.check(long.as_bytes(), "body").is_ok());
        assert!(matches!(
            l.check(&[b' '; 1025], "message"),
            Err(DecodeError::TooLarge("message", 1024))
        ));
    }

    #[test]
    fn map_entries_count_their_key_and_nesting_counts_every_level() {
        let l = limits(160); // 10 values
        let map = br#"{"a": 1, "b": 2, "c": 3, "d": 4, "e": 5}                                   "#;
        assert!(matches!(
            l.check(map, "x"),
            Err(DecodeError::TooManyValues("x", 10))
        ));
        let nested = format!("{}{}{}", "[".repeat(11), " ".repeat(60), "]".repeat(11));
        assert!(l.check(nested.as_bytes(), "x").is_err());
    }

    #[test]
    fn syntax_errors_are_left_to_the_decoder() {
        let l = limits(64); // 4 values
        let bad = format!("[1, 2 3]{}", " ".repeat(52));
        assert!(l.check(bad.as_bytes(), "x").is_ok());
    }
}
