//! The body's text read in one pass into its three parts, with Python's `json.loads` rules and
//! the same verdicts as reading it into a JSON tree first (`Body::from_json`'s reference in the
//! tests): every part is read whole, so a bad string or number anywhere is still a JSON error.
//! What it saves: the outer array, the embed's map and serde's second pass over it when the
//! embed is all `null` (every plain task's). It relies on serde_json's `arbitrary_precision`
//! feature being off (a number would then reach `visit_map`); the equivalence test, which
//! has numbers for embeds, fails if anything in the workspace turns it on.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::Embed;

/// `[args, kwargs, embed]` when the text has that shape (a list, an object, anything), `None`
/// for any other JSON. The embed is read whatever the shape; only its error's verdict waits
/// until the shape is known (a shape error comes first, as with the tree).
pub(super) struct Parts(pub(super) Option<(Vec<Value>, Map<String, Value>, EmbedPart)>);

/// The embed as read: its error is the body's only once the body has the right shape.
pub(super) struct EmbedPart(pub(super) Result<Embed, serde_json::Error>);

impl<'de> Deserialize<'de> for Parts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(PartsVisitor)
    }
}

struct PartsVisitor;

/// Any JSON that is not an array is read whole (so still checked) and is not a body.
macro_rules! not_a_body {
    ($($name:ident: $t:ty),*) => {$(
        fn $name<E: de::Error>(self, _: $t) -> Result<Parts, E> {
            Ok(Parts(None))
        }
    )*};
}

impl<'de> Visitor<'de> for PartsVisitor {
    type Value = Parts;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("JSON")
    }

    not_a_body!(visit_bool: bool, visit_i64: i64, visit_u64: u64, visit_f64: f64, visit_str: &str);

    fn visit_unit<E: de::Error>(self) -> Result<Parts, E> {
        Ok(Parts(None))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Parts, A::Error> {
        while map.next_entry::<String, Value>()?.is_some() {}
        Ok(Parts(None))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Parts, A::Error> {
        let args = seq.next_element::<Value>()?;
        let kwargs = seq.next_element::<Value>()?;
        let embed = seq.next_element::<EmbedPart>()?;
        let mut more = false;
        while seq.next_element::<Value>()?.is_some() {
            more = true;
        }
        Ok(Parts(match (args, kwargs, embed, more) {
            (Some(Value::Array(args)), Some(Value::Object(kwargs)), Some(embed), false) => {
                Some((args, kwargs, embed))
            }
            _ => None,
        }))
    }
}

impl<'de> Deserialize<'de> for EmbedPart {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(EmbedVisitor)
    }
}

struct EmbedVisitor;

/// An embed that is not an object nor `null` is what serde makes of it as a tree (an error,
/// or the fields in order for an array).
fn from_tree<E>(value: Value) -> Result<EmbedPart, E> {
    Ok(EmbedPart(serde_json::from_value(value)))
}

impl<'de> Visitor<'de> for EmbedVisitor {
    type Value = EmbedPart;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("JSON")
    }

    fn visit_unit<E: de::Error>(self) -> Result<EmbedPart, E> {
        Ok(EmbedPart(Ok(Embed::default())))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<EmbedPart, E> {
        from_tree(Value::from(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<EmbedPart, E> {
        from_tree(Value::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<EmbedPart, E> {
        from_tree(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<EmbedPart, E> {
        from_tree(Value::from(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<EmbedPart, E> {
        from_tree(Value::from(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<EmbedPart, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Value>()? {
            items.push(item);
        }
        from_tree(Value::Array(items))
    }

    /// Field by field: a repeated field keeps its last value (as `json.loads` does), any other
    /// field is read (so checked) and dropped, as serde's derive drops it.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<EmbedPart, A::Error> {
        let mut fields: [Option<Value>; 4] = Default::default();
        while let Some(key) = map.next_key::<Key>()? {
            let value = map.next_value::<Value>()?;
            if let Some(slot) = key.0.and_then(|i| fields.get_mut(i)) {
                *slot = Some(value);
            }
        }
        if fields.iter().all(|f| matches!(f, None | Some(Value::Null))) {
            return Ok(EmbedPart(Ok(Embed::default())));
        }
        let named = KEYS
            .iter()
            .zip(fields)
            .filter_map(|(name, value)| value.map(|v| ((*name).to_owned(), v)));
        from_tree(Value::Object(named.collect()))
    }
}

/// The embed's fields, in [`Key`]'s numbering.
const KEYS: [&str; 4] = ["callbacks", "errbacks", "chain", "chord"];

/// A key of the embed: its index in [`KEYS`], `None` for any other (not kept).
struct Key(Option<usize>);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
        Ok(Key(KEYS.iter().position(|k| *k == v)))
    }
}
