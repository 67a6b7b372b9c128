//! The kombu envelope (one JSON object per Redis list entry) with Celery's headers and kombu's
//! properties, and the decoding of a list entry into a runnable [`Message`].

use std::borrow::Cow;
use std::io::Read;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::body::Body;
use super::error::DecodeError;
use super::limits::Limits;
use crate::clock;

/// The only serializer this fleet speaks; pickle and friends are refused on purpose.
pub const CONTENT_TYPE_JSON: &str = "application/json";
/// kombu's name for zlib compression in the `compression` header.
pub const COMPRESSION_ZLIB: &str = "application/x-gzip";

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

/// A task message read off a queue: the envelope as it was, and its decoded body.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub envelope: Envelope,
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
            Some("base64") => B64
                .decode(self.body.trim())
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
        let envelope = Envelope::from_json(raw)?;
        if envelope.headers.task.is_empty() {
            return Err(DecodeError::MissingHeader("task"));
        }
        if envelope.headers.id.is_empty() {
            return Err(DecodeError::MissingHeader("id"));
        }
        let body = envelope.decode_body_within(limits)?;
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
