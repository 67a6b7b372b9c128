//! The body of a task message, `[args, kwargs, embed]`, and the canvas signatures (callbacks,
//! errbacks, chain steps) that travel in `embed`.

use serde::{Deserialize, Serialize};
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
        let value: Value = super::from_json_bytes(bytes).map_err(DecodeError::BodyJson)?;
        let Value::Array(mut parts) = value else {
            return Err(DecodeError::BodyShape);
        };
        if parts.len() != 3 {
            return Err(DecodeError::BodyShape);
        }
        let embed = parts.pop().unwrap_or(Value::Null);
        let kwargs = parts.pop().unwrap_or(Value::Null);
        let args = parts.pop().unwrap_or(Value::Null);
        let (Value::Array(args), Value::Object(kwargs)) = (args, kwargs) else {
            return Err(DecodeError::BodyShape);
        };
        let embed: Embed = match embed {
            Value::Null => Embed::default(),
            other => serde_json::from_value(other).map_err(DecodeError::BodyJson)?,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Python's rules, which the map gives: a repeated field keeps its last value (as
    /// `json.loads` does), and every part of the text is checked, unknown fields too. (A
    /// decoder straight into `Embed` refused the first and skipped the second unchecked.)
    #[test]
    fn a_repeated_embed_field_keeps_its_last_value_and_unknown_fields_are_still_checked() {
        let body = br#"[[], {}, {"chain": null, "chain": [{"task": "a", "task": "b"}]}]"#;
        let chain = Body::from_json(body).unwrap().embed.chain.unwrap();
        assert_eq!(chain[0].task, "b");
        for bad in [
            br#"[[], {}, {"x": "\ud800"}]"#.as_slice(),
            br#"[[], {}, {"x": 1e400}]"#.as_slice(),
            b"[[], {}, {\"x\": \"\xff\"}]".as_slice(),
        ] {
            assert!(
                matches!(Body::from_json(bad), Err(DecodeError::BodyJson(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
