//! The kombu envelope of broadcast traffic: events on `celeryev` and remote-control requests and
//! replies on `celery.pidbox` / `reply.celery.pidbox`. Same shape as a task message, but the
//! body is any JSON value and the headers are the exchange's own (`hostname`; `clock`,
//! `expires`; `ticket`, `clock`). Where the messages go is [`crate::control`]'s business.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::envelope::write::PropertyFields;
use super::envelope::{Properties, CONTENT_TYPE_JSON};
use super::error::DecodeError;
use super::json::{self, Object};

/// Largest broadcast payload decoded (a control request is a few hundred bytes).
pub const MAX_FANOUT_BYTES: usize = 1024 * 1024;

/// kombu's delivery mode of transient messages (events, replies).
pub const TRANSIENT: i64 = 1;
/// kombu's delivery mode of messages published by exchange name (control requests).
pub const PERSISTENT: i64 = 2;

#[derive(Debug, Serialize, Deserialize)]
struct Wire {
    body: String,
    #[serde(rename = "content-encoding", default)]
    content_encoding: Option<String>,
    #[serde(rename = "content-type", default)]
    content_type: Option<String>,
    #[serde(default)]
    headers: Option<Map<String, Value>>,
    properties: Properties,
}

/// A decoded broadcast message: its headers and its JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Fanout {
    /// The message's headers (e.g. a control request's `clock`), empty when it has none.
    pub headers: Map<String, Value>,
    /// The decoded body: an event, a control request or a reply.
    pub body: Value,
}

impl Fanout {
    /// Decodes a payload; anything but base64 (or plain) JSON is refused, pickle included.
    pub fn decode(raw: &[u8]) -> Result<Self, DecodeError> {
        if raw.len() > MAX_FANOUT_BYTES {
            return Err(DecodeError::TooLarge("broadcast message", MAX_FANOUT_BYTES));
        }
        let wire: Wire = super::from_json_bytes(raw).map_err(DecodeError::Envelope)?;
        if wire.content_type.as_deref() != Some(CONTENT_TYPE_JSON) {
            return Err(DecodeError::ContentType(wire.content_type));
        }
        let headers = wire.headers.unwrap_or_default();
        if let Some(c) = headers.get("compression") {
            return Err(DecodeError::Compression(c.to_string()));
        }
        let bytes = match wire.properties.body_encoding.as_deref() {
            Some("base64") => super::b64::decode(wire.body.trim()).map_err(DecodeError::Base64)?,
            None => wire.body.into_bytes(),
            Some(other) => return Err(DecodeError::BodyEncoding(other.to_owned())),
        };
        let body = super::from_json_bytes(&bytes).map_err(DecodeError::BodyJson)?;
        Ok(Fanout { headers, body })
    }

    /// Encodes `body` as kombu does: base64 JSON, a fresh delivery tag, priority 0.
    pub fn encode(
        body: &Value,
        headers: Map<String, Value>,
        delivery_mode: i64,
        exchange: &str,
        routing_key: &str,
    ) -> String {
        Self::encode_json(
            &body.to_string(),
            headers,
            delivery_mode,
            exchange,
            routing_key,
        )
    }

    /// [`Fanout::encode`] of a body already serialized (`json`: JSON text), as events are.
    pub fn encode_json(
        json: &str,
        headers: Map<String, Value>,
        delivery_mode: i64,
        exchange: &str,
        routing_key: &str,
    ) -> String {
        // The shape of `Wire` as serde writes it, by hand (`json.rs`); base64 is 4 bytes for
        // every 3.
        let body_len = json.len().div_ceil(3).saturating_mul(4);
        let mut out = String::with_capacity(body_len.saturating_add(512));
        let mut o = Object::new(&mut out);
        super::b64::json_string(json.as_bytes(), o.key("body"));
        json::string(o.key("content-encoding"), "utf-8");
        json::string(o.key("content-type"), CONTENT_TYPE_JSON);
        json::object(o.key("headers"), &headers);
        let mut tag = uuid::Uuid::encode_buffer();
        let no_fields = Map::new();
        PropertyFields {
            correlation_id: None,
            reply_to: None,
            delivery_mode: Some(delivery_mode),
            delivery_info: Some((exchange, routing_key, no_fields.iter())),
            priority: Some(0),
            body_encoding: Some("base64"),
            delivery_tag: Some(uuid::Uuid::new_v4().hyphenated().encode_lower(&mut tag)),
            extra: no_fields.iter(),
        }
        .write(o.key("properties"));
        o.end();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD as B64;
    use base64::Engine as _;
    use serde_json::json;

    #[test]
    fn round_trips_and_refuses_pickle() {
        let raw = Fanout::encode(
            &json!({"method": "ping"}),
            Map::from_iter([("clock".to_owned(), json!(3))]),
            PERSISTENT,
            "celery.pidbox",
            "",
        );
        let f = Fanout::decode(raw.as_bytes()).unwrap();
        assert_eq!(f.body["method"], "ping");
        assert_eq!(f.headers["clock"], 3);
        let pickled = raw.replace(CONTENT_TYPE_JSON, "application/x-python-serialize");
        assert!(matches!(
            Fanout::decode(pickled.as_bytes()),
            Err(DecodeError::ContentType(_))
        ));
    }

    #[test]
    fn the_body_is_put_in_as_serde_would_write_it() {
        let json = r#"[{"type":"task-started","uuid":"ü\"x"}]"#;
        let raw = Fanout::encode_json(json, Map::new(), TRANSIENT, "celeryev", "task.multi");
        let wire: Wire = serde_json::from_str(&raw).unwrap();
        assert_eq!(wire.body, B64.encode(json));
        assert_eq!(serde_json::to_string(&wire).unwrap(), raw);
        assert!(raw.starts_with(r#"{"body":""#));
        assert_eq!(
            Fanout::decode(raw.as_bytes()).unwrap().body[0]["uuid"],
            "ü\"x"
        );
    }
}
