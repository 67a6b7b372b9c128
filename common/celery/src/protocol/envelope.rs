//! The kombu envelope (one JSON object per Redis list entry) with Celery's headers and kombu's
//! properties, and the decoding of a list entry into a runnable [`Message`].

use std::borrow::Cow;
use std::io::Read;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::body::Body;
use super::error::DecodeError;
use super::json::{self, Object};
use super::limits::Limits;
use crate::clock;

pub(super) mod write;

/// The only serializer this fleet speaks; pickle and friends are refused on purpose.
pub const CONTENT_TYPE_JSON: &str = "application/json";
/// kombu's name for zlib compression in the `compression` header.
pub const COMPRESSION_ZLIB: &str = "application/x-gzip";

/// The kombu envelope: one JSON object per Redis list entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Envelope {
    /// The serialized `[args, kwargs, embed]`, encoded as `properties.body_encoding` says.
    pub body: String,
    /// The body's character set (`utf-8`).
    #[serde(rename = "content-encoding", default)]
    pub content_encoding: Option<String>,
    /// The body's serializer; only [`CONTENT_TYPE_JSON`] is run.
    #[serde(rename = "content-type", default)]
    pub content_type: Option<String>,
    /// Celery's task headers.
    pub headers: Headers,
    /// kombu's message properties.
    pub properties: Properties,
}

/// Celery's task headers; the 19 standard keys in Python's order, then anything else kept as is.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Headers {
    /// The producer's language (`py`).
    #[serde(default)]
    pub lang: Option<String>,
    /// The task's registered name.
    pub task: String,
    /// The task's id; its result is stored under it.
    pub id: String,
    /// A name shown in logs and events in place of `task`.
    #[serde(default)]
    pub shadow: Option<String>,
    /// ISO 8601 time before which the task must not run.
    #[serde(default)]
    pub eta: Option<String>,
    /// ISO 8601 time after which the task is revoked instead of run.
    #[serde(default)]
    pub expires: Option<String>,
    /// The id of the group the task is in.
    #[serde(default)]
    pub group: Option<String>,
    /// The task's position in that group.
    #[serde(default)]
    pub group_index: Option<i64>,
    /// Python accepts `null` on receipt; we read it as 0 and always send an integer.
    #[serde(default, deserialize_with = "null_as_default")]
    pub retries: i64,
    /// `[hard, soft]` seconds (the code's order, not the protocol document's).
    #[serde(default, deserialize_with = "null_as_default")]
    pub timelimit: [Option<f64>; 2],
    /// The id of the first task of its workflow.
    #[serde(default)]
    pub root_id: Option<String>,
    /// The id of the task that sent it.
    #[serde(default)]
    pub parent_id: Option<String>,
    /// Python's `repr()` of the positional arguments, for logs and events.
    #[serde(default)]
    pub argsrepr: Option<String>,
    /// Python's `repr()` of the keyword arguments, for logs and events.
    #[serde(default)]
    pub kwargsrepr: Option<String>,
    /// The sender's node name.
    #[serde(default)]
    pub origin: Option<String>,
    /// `send_task` sends `null` here (captured); read as false.
    #[serde(default, deserialize_with = "null_as_default")]
    pub ignore_result: bool,
    /// How many times the task was replaced (`Task.replace`).
    #[serde(default, deserialize_with = "null_as_default")]
    pub replaced_task_nesting: i64,
    /// The names of its stamps (Celery 5.3's stamping).
    #[serde(default)]
    pub stamped_headers: Option<Value>,
    /// Its stamps, by name.
    #[serde(default = "empty_object")]
    pub stamps: Value,
    /// `compression`, `redelivered`, custom headers: carried through untouched.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// AMQP-like properties plus kombu's bookkeeping.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Properties {
    /// The task's id again (Celery sets both).
    #[serde(default)]
    pub correlation_id: Option<String>,
    /// The producer's reply queue (Celery's `rpc://` backend), carried through.
    #[serde(default)]
    pub reply_to: Option<String>,
    /// AMQP's delivery mode: 2 persistent, 1 transient.
    #[serde(default)]
    pub delivery_mode: Option<i64>,
    /// Where it was published.
    #[serde(default)]
    pub delivery_info: Option<DeliveryInfo>,
    /// Its priority, 0-9; it picks the list of the queue (see [`crate::keys::Layout::step`]).
    #[serde(default)]
    pub priority: Option<i64>,
    /// How `body` is encoded in the envelope: `base64`, or none (plain text).
    #[serde(default)]
    pub body_encoding: Option<String>,
    /// kombu's delivery tag, the message's field in `unacked` while it is held.
    #[serde(default)]
    pub delivery_tag: Option<String>,
    /// Any other property, carried through untouched.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Where a message was published; kombu's Redis transport needs both fields.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeliveryInfo {
    /// The exchange it was published to (empty: the default exchange).
    #[serde(default)]
    pub exchange: String,
    /// Its routing key: the queue's name, under the default exchange.
    #[serde(default)]
    pub routing_key: String,
    /// kombu's `redelivered` and anything else, carried through.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A task message read off a queue: the envelope as it was, and its decoded body.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The envelope, headers and properties as read.
    pub envelope: Envelope,
    /// Its decoded body.
    pub body: Body,
}

pub(super) fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

pub(super) fn empty_object() -> Value {
    Value::Object(Map::new())
}

impl Envelope {
    /// Parses the JSON of a list entry (no body decoding).
    pub fn from_json(raw: &[u8]) -> Result<Self, DecodeError> {
        super::from_json_bytes(raw).map_err(DecodeError::Envelope)
    }

    /// The envelope as kombu puts it on a list: serde's text (its derive is the reference the
    /// tests hold this to), written by hand for speed (`json.rs`).
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(self.body.len().saturating_add(1024));
        let mut o = Object::new(&mut out);
        json::string(o.key("body"), &self.body);
        json::opt_string(o.key("content-encoding"), self.content_encoding.as_deref());
        json::opt_string(o.key("content-type"), self.content_type.as_deref());
        self.headers.fields().write(o.key("headers"));
        self.properties.fields().write(o.key("properties"));
        o.end();
        out
    }

    /// kombu's delivery tag, when it has one (a message without one is dead-lettered).
    pub fn delivery_tag(&self) -> Option<&str> {
        self.properties.delivery_tag.as_deref()
    }

    /// Its priority, 0 when unset.
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

    /// Decodes the body within the default [`Limits`].
    pub fn decode_body(&self) -> Result<Body, DecodeError> {
        self.decode_body_within(&Limits::default())
    }

    /// Decodes the body: base64 (or raw text), optional zlib, then `[args, kwargs, embed]`;
    /// refused when, decoded or inflated, it is over the byte limit or holds too many values.
    pub fn decode_body_within(&self, limits: &Limits) -> Result<Body, DecodeError> {
        if self.content_type.as_deref() != Some(CONTENT_TYPE_JSON) {
            return Err(DecodeError::ContentType(self.content_type.clone()));
        }
        let bytes: Cow<[u8]> = match self.properties.body_encoding.as_deref() {
            Some("base64") => super::b64::decode(self.body.trim())
                .map_err(DecodeError::Base64)?
                .into(),
            None => self.body.as_bytes().into(),
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
                // Inflate at most one byte past the limit: a small bomb must not take the
                // worker's memory.
                let mut out = Vec::new();
                let most = u64::try_from(limits.max_bytes).unwrap_or(u64::MAX);
                flate2::read::ZlibDecoder::new(bytes.as_ref())
                    .take(most.saturating_add(1))
                    .read_to_end(&mut out)
                    .map_err(DecodeError::Decompress)?;
                if out.len() > limits.max_bytes {
                    return Err(DecodeError::TooLarge("decompressed body", limits.max_bytes));
                }
                out.into()
            }
            Some(other) => return Err(DecodeError::Compression(other.to_owned())),
        };
        limits.check(&bytes, "body")?;
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
    /// Decodes one Redis list entry within the default [`Limits`].
    pub fn decode(raw: &[u8]) -> Result<Self, DecodeError> {
        Self::decode_within(raw, &Limits::default())
    }

    /// Decodes one Redis list entry into a runnable message, or says why it is poison. The
    /// entry and its body are each checked against `limits` before anything is built from them,
    /// so what it decodes into is bounded too.
    pub fn decode_within(raw: &[u8], limits: &Limits) -> Result<Self, DecodeError> {
        limits.check(raw, "message")?;
        Self::from_envelope(Envelope::from_json(raw)?, limits)
    }

    /// [`Message::decode_within`] for an entry already read as text (a claim reads each so):
    /// its UTF-8 is not checked a second time.
    pub fn decode_text_within(raw: &str, limits: &Limits) -> Result<Self, DecodeError> {
        limits.check(raw.as_bytes(), "message")?;
        let envelope = serde_json::from_str(raw).map_err(DecodeError::Envelope)?;
        Self::from_envelope(envelope, limits)
    }

    fn from_envelope(envelope: Envelope, limits: &Limits) -> Result<Self, DecodeError> {
        if envelope.headers.task.is_empty() {
            return Err(DecodeError::MissingHeader("task"));
        }
        if envelope.headers.id.is_empty() {
            return Err(DecodeError::MissingHeader("id"));
        }
        let body = envelope.decode_body_within(limits)?;
        Ok(Message { envelope, body })
    }

    /// The task's name (`headers.task`, never empty).
    pub fn task(&self) -> &str {
        &self.envelope.headers.task
    }

    /// The task's id (`headers.id`, never empty).
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

    /// `expires` as an instant; an unparseable value counts as none (the task is not expired).
    pub fn expires(&self) -> Option<OffsetDateTime> {
        self.envelope
            .headers
            .expires
            .as_deref()
            .and_then(clock::parse_celery_iso)
    }
}
