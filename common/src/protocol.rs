//! Celery protocol v2 as kombu puts it on Redis: the envelope with its headers and properties
//! (the wire format), and the `[args, kwargs, embed]` body it carries.
//!
//! This module only turns bytes into typed messages and back; what a task *means* lives in
//! [`crate::tasks`], where it goes on Redis in [`crate::queue`].

use std::io::Read;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::clock;

/// The only serializer this fleet speaks; pickle and friends are refused on purpose.
pub const CONTENT_TYPE_JSON: &str = "application/json";
/// kombu's name for zlib compression in the `compression` header.
pub const COMPRESSION_ZLIB: &str = "application/x-gzip";
/// Python's `argsrepr`/`kwargsrepr` are cut at this many characters.
const REPR_MAX: usize = 1024;

/// Why a list entry is not a task this worker can run. Every variant is a poison message.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("envelope is not a kombu JSON envelope: {0}")]
    Envelope(#[source] serde_json::Error),
    #[error("content-type {0:?} is not accepted (only application/json)")]
    ContentType(Option<String>),
    #[error("body_encoding {0:?} is not supported")]
    BodyEncoding(String),
    #[error("body is not valid base64: {0}")]
    Base64(#[source] base64::DecodeError),
    #[error("compression {0:?} is not supported")]
    Compression(String),
    #[error("body could not be decompressed: {0}")]
    Decompress(#[source] std::io::Error),
    #[error("body is not JSON: {0}")]
    BodyJson(#[source] serde_json::Error),
    #[error("body must be a 3-element array [args, kwargs, embed]")]
    BodyShape,
    #[error("header {0} is missing or empty")]
    MissingHeader(&'static str),
}

/// The kombu envelope: one JSON object per Redis list entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Envelope {
    pub body: String,
    #[serde(rename = "content-encoding", default)]
    pub content_encoding: Option<String>,
    #[serde(rename = "content-type", default)]
    pub content_type: Option<String>,
    pub headers: Headers,
    pub properties: Properties,
}

/// Celery's task headers; the 19 standard keys in Python's order, then anything else kept as is.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Headers {
    #[serde(default)]
    pub lang: Option<String>,
    pub task: String,
    pub id: String,
    #[serde(default)]
    pub shadow: Option<String>,
    #[serde(default)]
    pub eta: Option<String>,
    #[serde(default)]
    pub expires: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub group_index: Option<i64>,
    /// Python accepts `null` on receipt; we read it as 0 and always send an integer.
    #[serde(default, deserialize_with = "null_as_default")]
    pub retries: i64,
    /// `[hard, soft]` seconds (the code's order, not the protocol document's).
    #[serde(default, deserialize_with = "null_as_default")]
    pub timelimit: [Option<f64>; 2],
    #[serde(default)]
    pub root_id: Option<String>,
    #[serde(default)]
    pub parent_id: Option<String>,
    #[serde(default)]
    pub argsrepr: Option<String>,
    #[serde(default)]
    pub kwargsrepr: Option<String>,
    #[serde(default)]
    pub origin: Option<String>,
    /// `send_task` sends `null` here (captured); read as false.
    #[serde(default, deserialize_with = "null_as_default")]
    pub ignore_result: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    pub replaced_task_nesting: i64,
    #[serde(default)]
    pub stamped_headers: Option<Value>,
    #[serde(default = "empty_object")]
    pub stamps: Value,
    /// `compression`, `redelivered`, custom headers: carried through untouched.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// AMQP-like properties plus kombu's bookkeeping.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Properties {
    #[serde(default)]
    pub correlation_id: Option<String>,
    #[serde(default)]
    pub reply_to: Option<String>,
    #[serde(default)]
    pub delivery_mode: Option<i64>,
    #[serde(default)]
    pub delivery_info: Option<DeliveryInfo>,
    #[serde(default)]
    pub priority: Option<i64>,
    #[serde(default)]
    pub body_encoding: Option<String>,
    #[serde(default)]
    pub delivery_tag: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Where a message was published; kombu's Redis transport needs both fields.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeliveryInfo {
    #[serde(default)]
    pub exchange: String,
    #[serde(default)]
    pub routing_key: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

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

/// A task message read off a queue: the envelope as it was, and its decoded body.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub envelope: Envelope,
    pub body: Body,
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn empty_object() -> Value {
    Value::Object(Map::new())
}

impl Envelope {
    /// Parses the JSON of a list entry (no body decoding).
    pub fn from_json(raw: &[u8]) -> Result<Self, DecodeError> {
        serde_json::from_slice(raw).map_err(DecodeError::Envelope)
    }

    pub fn to_json(&self) -> String {
        // Serializing plain data into a String cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn delivery_tag(&self) -> Option<&str> {
        self.properties.delivery_tag.as_deref()
    }

    pub fn priority(&self) -> i64 {
        self.properties.priority.unwrap_or(0)
    }

    /// The queue a message belongs to: the routing key of the anonymous exchange.
    pub fn routing_key(&self) -> Option<&str> {
        self.properties
            .delivery_info
            .as_ref()
            .map(|d| d.routing_key.as_str())
            .filter(|rk| !rk.is_empty())
    }

    /// Decodes the body: base64 (or raw text), optional zlib, then `[args, kwargs, embed]`.
    pub fn decode_body(&self) -> Result<Body, DecodeError> {
        if self.content_type.as_deref() != Some(CONTENT_TYPE_JSON) {
            return Err(DecodeError::ContentType(self.content_type.clone()));
        }
        let bytes = match self.properties.body_encoding.as_deref() {
            Some("base64") => B64.decode(self.body.trim()).map_err(DecodeError::Base64)?,
            None => self.body.clone().into_bytes(),
            Some(other) => return Err(DecodeError::BodyEncoding(other.to_owned())),
        };
        let bytes = match self
            .headers
            .extra
            .get("compression")
            .and_then(Value::as_str)
        {
            None => bytes,
            Some(COMPRESSION_ZLIB) => {
                let mut out = Vec::new();
                flate2::read::ZlibDecoder::new(bytes.as_slice())
                    .read_to_end(&mut out)
                    .map_err(DecodeError::Decompress)?;
                out
            }
            Some(other) => return Err(DecodeError::Compression(other.to_owned())),
        };
        Body::from_json(&bytes)
    }

    /// Sets kombu's `redelivered` flags, as a restore does.
    pub fn mark_redelivered(&mut self) {
        self.headers
            .extra
            .insert("redelivered".into(), Value::Bool(true));
        if let Some(info) = self.properties.delivery_info.as_mut() {
            info.extra.insert("redelivered".into(), Value::Bool(true));
        }
    }
}

impl Message {
    /// Decodes one Redis list entry into a runnable message, or says why it is poison.
    pub fn decode(raw: &[u8]) -> Result<Self, DecodeError> {
        let envelope = Envelope::from_json(raw)?;
        if envelope.headers.task.is_empty() {
            return Err(DecodeError::MissingHeader("task"));
        }
        if envelope.headers.id.is_empty() {
            return Err(DecodeError::MissingHeader("id"));
        }
        let body = envelope.decode_body()?;
        Ok(Message { envelope, body })
    }

    pub fn task(&self) -> &str {
        &self.envelope.headers.task
    }

    pub fn id(&self) -> &str {
        &self.envelope.headers.id
    }

    /// `eta` as an instant; an unparseable value counts as "now" rather than never running.
    pub fn eta(&self) -> Option<OffsetDateTime> {
        self.envelope
            .headers
            .eta
            .as_deref()
            .and_then(clock::parse_celery_iso)
    }

    pub fn expires(&self) -> Option<OffsetDateTime> {
        self.envelope
            .headers
            .expires
            .as_deref()
            .and_then(clock::parse_celery_iso)
    }
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
        let embed = match embed {
            Value::Null => Embed::default(),
            other => serde_json::from_value(other).map_err(DecodeError::BodyJson)?,
        };
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

/// A task to publish, with the `apply_async` options this fleet uses.
#[derive(Debug, Clone)]
pub struct TaskMessage {
    pub task: String,
    pub id: String,
    pub queue: String,
    pub body: Body,
    pub priority: i64,
    pub eta: Option<OffsetDateTime>,
    pub expires: Option<OffsetDateTime>,
    pub parent_id: Option<String>,
    pub root_id: Option<String>,
    pub group: Option<String>,
    pub group_index: Option<i64>,
    pub retries: i64,
    pub ignore_result: bool,
    /// Hard time limit in seconds (`time_limit`).
    pub time_limit: Option<f64>,
}

impl TaskMessage {
    /// A task sent from outside any task: a new id that is also its root.
    pub fn new(task: &str, queue: &str, kwargs: Map<String, Value>) -> Self {
        TaskMessage {
            task: task.to_owned(),
            id: Uuid::new_v4().to_string(),
            queue: queue.to_owned(),
            body: Body {
                args: Vec::new(),
                kwargs,
                embed: Embed::default(),
            },
            priority: 0,
            eta: None,
            expires: None,
            parent_id: None,
            root_id: None,
            group: None,
            group_index: None,
            retries: 0,
            ignore_result: false,
            time_limit: None,
        }
    }

    /// Makes this message a child of a running task (a callback or chain step), as Celery does.
    pub fn child_of(mut self, parent_id: &str, root_id: &str) -> Self {
        self.parent_id = Some(parent_id.to_owned());
        self.root_id = Some(root_id.to_owned());
        self
    }

    /// Builds the kombu envelope exactly as Python Celery 5.x shapes it.
    pub fn to_envelope(&self) -> Envelope {
        let body = self.body.to_json();
        let args_repr = serde_json::to_string(&self.body.args).unwrap_or_default();
        let kwargs_repr = serde_json::to_string(&self.body.kwargs).unwrap_or_default();
        let mut prop_extra = Map::new();
        if let Some(expires) = self.expires {
            let ms = (expires - OffsetDateTime::now_utc())
                .whole_milliseconds()
                .max(0);
            prop_extra.insert("expiration".into(), Value::String(ms.to_string()));
        }
        Envelope {
            body: B64.encode(body.as_bytes()),
            content_encoding: Some("utf-8".into()),
            content_type: Some(CONTENT_TYPE_JSON.into()),
            headers: Headers {
                // Informational; Python workers run messages with any value (captured test A01).
                lang: Some("rust".into()),
                task: self.task.clone(),
                id: self.id.clone(),
                shadow: None,
                eta: self.eta.map(clock::to_celery_iso),
                expires: self.expires.map(clock::to_celery_iso),
                group: self.group.clone(),
                group_index: self.group_index,
                retries: self.retries,
                timelimit: [self.time_limit, None],
                root_id: Some(self.root_id.clone().unwrap_or_else(|| self.id.clone())),
                parent_id: self.parent_id.clone(),
                argsrepr: Some(truncate(args_repr)),
                kwargsrepr: Some(truncate(kwargs_repr)),
                origin: Some(crate::config::node_name()),
                ignore_result: self.ignore_result,
                replaced_task_nesting: 0,
                stamped_headers: None,
                stamps: empty_object(),
                extra: Map::new(),
            },
            properties: Properties {
                correlation_id: Some(self.id.clone()),
                reply_to: Some(String::new()),
                delivery_mode: Some(2),
                delivery_info: Some(DeliveryInfo {
                    exchange: String::new(),
                    routing_key: self.queue.clone(),
                    extra: Map::new(),
                }),
                priority: Some(self.priority.clamp(0, 9)),
                body_encoding: Some("base64".into()),
                delivery_tag: Some(Uuid::new_v4().to_string()),
                extra: prop_extra,
            },
        }
    }
}

fn truncate(mut s: String) -> String {
    if s.len() > REPR_MAX {
        let mut cut = REPR_MAX;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn roundtrip(msg: &TaskMessage) -> Message {
        Message::decode(msg.to_envelope().to_json().as_bytes()).expect("decodes")
    }

    #[test]
    fn produced_message_decodes_to_the_same_task() {
        let kwargs = json!({"order_id": "o-1", "items": []});
        let msg = TaskMessage::new(
            "process_order",
            "celery",
            kwargs.as_object().cloned().unwrap(),
        );
        let back = roundtrip(&msg);
        assert_eq!(back.task(), "process_order");
        assert_eq!(back.id(), msg.id);
        assert_eq!(back.body.kwargs, msg.body.kwargs);
        assert_eq!(
            back.envelope.headers.root_id.as_deref(),
            Some(msg.id.as_str())
        );
        assert_eq!(back.envelope.routing_key(), Some("celery"));
    }

    #[test]
    fn two_element_body_is_refused() {
        let mut env = TaskMessage::new("t", "celery", Map::new()).to_envelope();
        env.body = B64.encode(b"[[], {}]");
        assert!(matches!(env.decode_body(), Err(DecodeError::BodyShape)));
    }

    #[test]
    fn other_content_types_are_refused() {
        let mut env = TaskMessage::new("t", "celery", Map::new()).to_envelope();
        env.content_type = Some("application/x-python-serialize".into());
        assert!(matches!(
            env.decode_body(),
            Err(DecodeError::ContentType(_))
        ));
        env.content_type = None;
        assert!(matches!(
            env.decode_body(),
            Err(DecodeError::ContentType(None))
        ));
    }

    #[test]
    fn raw_body_without_body_encoding_is_accepted() {
        let mut env = TaskMessage::new("t", "celery", Map::new()).to_envelope();
        env.properties.body_encoding = None;
        env.body = r#"[[1], {"a": 2}, {}]"#.into();
        let body = env.decode_body().unwrap();
        assert_eq!(body.args, vec![json!(1)]);
        assert_eq!(body.kwargs.get("a"), Some(&json!(2)));
    }

    #[test]
    fn unknown_compression_is_refused() {
        let mut env = TaskMessage::new("t", "celery", Map::new()).to_envelope();
        env.headers
            .extra
            .insert("compression".into(), json!("application/x-brotli"));
        assert!(matches!(
            env.decode_body(),
            Err(DecodeError::Compression(_))
        ));
    }

    #[test]
    fn redelivered_flags_are_set_where_kombu_sets_them() {
        let mut env = TaskMessage::new("t", "celery", Map::new()).to_envelope();
        env.mark_redelivered();
        let v: Value = serde_json::from_str(&env.to_json()).unwrap();
        assert_eq!(v["headers"]["redelivered"], json!(true));
        assert_eq!(v["properties"]["delivery_info"]["redelivered"], json!(true));
    }
}
