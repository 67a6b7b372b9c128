//! The body of a task message, `[args, kwargs, embed]`, and the canvas signatures (callbacks,
//! errbacks, chain steps) that travel in `embed`.

use std::fmt;

use serde::de::{self, IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::error::DecodeError;
use super::json;

/// Most callbacks, errbacks or chain steps one message may carry.
pub const MAX_CANVAS: usize = 1000;

/// The decoded body: positional args, keyword args and the canvas `embed`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Body {
    /// The task's positional arguments.
    pub args: Vec<Value>,
    /// The task's keyword arguments.
    pub kwargs: Map<String, Value>,
    /// What runs after it (`null` on the wire decodes as empty).
    pub embed: Embed,
}

/// Callbacks, errbacks and the rest of a chain travelling with a task.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Embed {
    /// Sent on with the task's result when it succeeds (`link`).
    #[serde(default)]
    pub callbacks: Option<Vec<Signature>>,
    /// Sent when it fails (`link_error`).
    #[serde(default)]
    pub errbacks: Option<Vec<Signature>>,
    /// The remaining chain steps, **reversed**: the next step is the last element.
    #[serde(default)]
    pub chain: Option<Vec<Signature>>,
    /// The body of the chord whose header this task is in, as sent: the member that completes
    /// the chord publishes it (the worker's `delivery::chord`).
    #[serde(default)]
    pub chord: Option<Value>,
}

/// A Celery signature (`task.s(...)`) as it travels inside `embed`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Signature {
    /// The task's name.
    pub task: String,
    /// Its positional arguments (a callback gets the parent's result in front of them).
    #[serde(default)]
    pub args: Vec<Value>,
    /// Its keyword arguments.
    #[serde(default)]
    pub kwargs: Map<String, Value>,
    /// Its execution options (`queue`, `priority`, `countdown`, `task_id`, ...).
    #[serde(default)]
    pub options: Map<String, Value>,
    /// `chain`, `group`, `chord` for a canvas primitive; `None` for a plain task.
    #[serde(default)]
    pub subtask_type: Option<String>,
    /// Whether it takes no parent result (`task.si(...)`).
    #[serde(default)]
    pub immutable: bool,
    /// Any other field, kept so the signature is sent on as it came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Body {
    /// Decodes `[args, kwargs, embed]`, refusing more than [`MAX_CANVAS`] signatures in any
    /// list of `embed`.
    pub fn from_json(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (args, kwargs, embed) =
            match super::from_json_bytes::<Parts>(bytes).map_err(DecodeError::BodyJson)? {
                Parts::Read {
                    args,
                    kwargs,
                    embed,
                } => (args, kwargs, embed.unwrap_or_default()),
                Parts::Shape => return Err(DecodeError::BodyShape),
            };
        // One message must not fan out into an unbounded number of messages (each a full
        // envelope in the worker's memory and on the queue, past any backpressure).
        for (what, list) in [
            ("callbacks", &embed.callbacks),
            ("errbacks", &embed.errbacks),
            ("chain", &embed.chain),
        ] {
            if list.as_ref().is_some_and(|l| l.len() > MAX_CANVAS) {
                return Err(DecodeError::TooMany(what, MAX_CANVAS));
            }
        }
        Ok(Body {
            args,
            kwargs,
            embed,
        })
    }

    /// `[args, kwargs, embed]` as serde writes the tuple (written by hand: `json.rs`; an
    /// embed with signatures in it goes through serde).
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(256);
        out.push('[');
        json::array(&mut out, &self.args);
        out.push(',');
        json::object(&mut out, &self.kwargs);
        out.push(',');
        if self.embed == Embed::default() {
            out.push_str(r#"{"callbacks":null,"errbacks":null,"chain":null,"chord":null}"#);
        } else {
            json::serde(&mut out, &self.embed);
        }
        out.push(']');
        out
    }
}

/// `[args, kwargs, embed]` as read from the text: the embed decoded straight into an [`Embed`]
/// (building it as a map first, then decoding that, was a tenth of a body's cost), or `Shape`
/// for a body of another shape (not an array of three, args not an array, kwargs not an object).
enum Parts {
    Read {
        args: Vec<Value>,
        kwargs: Map<String, Value>,
        embed: Option<Embed>,
    },
    Shape,
}

impl<'de> Deserialize<'de> for Parts {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(PartsVisitor)
    }
}

struct PartsVisitor;

impl<'de> Visitor<'de> for PartsVisitor {
    type Value = Parts;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a task body, [args, kwargs, embed]")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Parts, A::Error> {
        let args = seq.next_element::<Value>()?;
        let kwargs = seq.next_element::<Value>()?;
        let parts = match (args, kwargs) {
            (Some(Value::Array(args)), Some(Value::Object(kwargs))) => {
                match seq.next_element::<Option<Embed>>()? {
                    Some(embed) => Parts::Read {
                        args,
                        kwargs,
                        embed,
                    },
                    None => Parts::Shape,
                }
            }
            _ => Parts::Shape,
        };
        // Whatever is left is read (the text must still be valid JSON) and makes it misshapen.
        let mut more = false;
        while seq.next_element::<IgnoredAny>()?.is_some() {
            more = true;
        }
        Ok(if more { Parts::Shape } else { parts })
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Parts, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Parts::Shape)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Parts, E> {
        Ok(Parts::Shape)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Parts, E> {
        Ok(Parts::Shape)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Parts, E> {
        Ok(Parts::Shape)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Parts, E> {
        Ok(Parts::Shape)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Parts, E> {
        Ok(Parts::Shape)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Parts, E> {
        Ok(Parts::Shape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the body decoded to before the embed was read straight from the text: the whole
    /// body as a value, its shape checked, then the embed decoded from its value.
    fn through_a_value(bytes: &[u8]) -> Result<Body, &'static str> {
        let value: Value = serde_json::from_slice(bytes).map_err(|_| "json")?;
        let Value::Array(parts) = value else {
            return Err("shape");
        };
        let [args, kwargs, embed] = <[Value; 3]>::try_from(parts).map_err(|_| "shape")?;
        let (Value::Array(args), Value::Object(kwargs)) = (args, kwargs) else {
            return Err("shape");
        };
        let embed = match embed {
            Value::Null => Embed::default(),
            other => serde_json::from_value(other).map_err(|_| "json")?,
        };
        Ok(Body {
            args,
            kwargs,
            embed,
        })
    }

    #[test]
    fn a_body_decodes_as_it_did_through_a_value_hostile_shapes_included() {
        let chain = r#"{"chain": [{"task": "t", "args": [1], "kwargs": {}, "options": {"queue": "q"}, "subtask_type": null, "immutable": false, "x": 1}], "callbacks": null, "errbacks": null, "chord": null, "other": 2}"#;
        let bodies = [
            r#"[[], {"a": 1}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]"#.to_owned(),
            r#"[[1, "x", null], {}, null]"#.to_owned(),
            format!(r#"[[], {{}}, {chain}]"#),
            r#"[[], {}, {}]"#.to_owned(),
            // Misshapen: each is refused as a shape, or as JSON, as before.
            r#"[[], {}]"#.to_owned(),
            r#"[[], {}, null, 4]"#.to_owned(),
            r#"[[], {}, null, [1, {"a": 2}]]"#.to_owned(),
            r#"[{}, {}, null]"#.to_owned(),
            r#"[[], [], null]"#.to_owned(),
            r#"[[], [], 5]"#.to_owned(),
            r#"[[], {}, 5]"#.to_owned(),
            r#"[[], {}, {"chain": 3}]"#.to_owned(),
            r#"[[], {}, {"chain": [{"args": []}]}]"#.to_owned(),
            r#"{"args": []}"#.to_owned(),
            r#""[[], {}, null]""#.to_owned(),
            "[]".to_owned(),
            "null".to_owned(),
            "true".to_owned(),
            "-1".to_owned(),
            "1.5".to_owned(),
            "[[], {}, null".to_owned(),
            "[[], {}, null]]".to_owned(),
            "".to_owned(),
        ];
        for body in bodies {
            let now = match Body::from_json(body.as_bytes()) {
                Ok(b) => Ok(b),
                Err(DecodeError::BodyShape) => Err("shape"),
                Err(DecodeError::BodyJson(_)) => Err("json"),
                Err(other) => panic!("{body}: {other}"),
            };
            assert_eq!(now, through_a_value(body.as_bytes()), "{body}");
        }
    }
}
