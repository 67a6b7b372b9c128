//! The body of a task message, `[args, kwargs, embed]`, and the canvas signatures (callbacks,
//! errbacks, chain steps) that travel in `embed`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::DecodeError;

/// Most callbacks, errbacks or chain steps one message may carry.
pub const MAX_CANVAS: usize = 1000;

/// The decoded body: positional args, keyword args and the canvas `embed`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Body {
    pub args: Vec<Value>,
    pub kwargs: Map<String, Value>,
    pub embed: Embed,
}

/// Callbacks, errbacks and the rest of a chain travelling with a task.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Embed {
    #[serde(default)]
    pub callbacks: Option<Vec<Signature>>,
    #[serde(default)]
    pub errbacks: Option<Vec<Signature>>,
    /// The remaining chain steps, **reversed**: the next step is the last element.
    #[serde(default)]
    pub chain: Option<Vec<Signature>>,
    #[serde(default)]
    pub chord: Option<Value>,
}

/// A Celery signature (`task.s(...)`) as it travels inside `embed`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Signature {
    pub task: String,
    #[serde(default)]
    pub args: Vec<Value>,
    #[serde(default)]
    pub kwargs: Map<String, Value>,
    #[serde(default)]
    pub options: Map<String, Value>,
    #[serde(default)]
    pub subtask_type: Option<String>,
    #[serde(default)]
    pub immutable: bool,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Body {
    pub fn from_json(bytes: &[u8]) -> Result<Self, DecodeError> {
        let value: Value = serde_json::from_slice(bytes).map_err(DecodeError::BodyJson)?;
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

    /// `[args, kwargs, embed]`, serialized in place (a tuple is a JSON array).
    pub fn to_json(&self) -> String {
        serde_json::to_string(&(&self.args, &self.kwargs, &self.embed)).unwrap_or_default()
    }
}
