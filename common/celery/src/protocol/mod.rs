//! The wire format: Celery protocol v2 as kombu puts it on Redis. This module only turns bytes
//! into typed messages and back; where they go on Redis is [`crate::broker`]'s business.
//!
//! - [`envelope`] — the kombu envelope with its headers and properties, and [`Message::decode`].
//! - [`error`] — why an entry is not a runnable task (every variant is a poison message).
//! - [`body`] — the `[args, kwargs, embed]` body and the canvas signatures inside it.
//! - [`limits`] — what one message may cost: bytes, inflated body, JSON values, deliveries.
//! - [`fanout`] — the envelope of broadcast traffic (events, remote control), any JSON body.
//! - [`pyrepr`] — Python's `repr()` of JSON values, as task events carry them.
//! - [`outgoing`] — [`TaskMessage`], a task to publish, shaped exactly as Python Celery 5.x does.

pub mod body;
pub mod envelope;
pub mod error;
pub mod fanout;
pub mod limits;
pub mod outgoing;
pub mod pyrepr;

pub use body::{Body, Embed, Signature};
pub use envelope::{
    DeliveryInfo, Envelope, Headers, Message, Properties, COMPRESSION_ZLIB, CONTENT_TYPE_JSON,
};
pub use error::DecodeError;
pub use fanout::Fanout;
pub use limits::{Limits, MAX_DELIVERIES, MAX_MESSAGE_BYTES};
pub use outgoing::TaskMessage;

/// The JSON text of a message whose first field is `"body"`: `rest` is the message serialized
/// with an empty body, and `write_body` appends the body's text, which must need no JSON escape
/// (base64 never does). serde_json escapes a string by testing each byte; the body is most of a
/// message's bytes, and was the biggest cost of writing one.
pub(crate) fn body_first(rest: &str, write_body: impl FnOnce(&mut String)) -> Option<String> {
    let tail = rest.strip_prefix(r#"{"body":"""#)?;
    let mut out = String::with_capacity(rest.len().saturating_add(2048));
    out.push_str(r#"{"body":""#);
    write_body(&mut out);
    out.push('"');
    out.push_str(tail);
    Some(out)
}

/// Whether `text` can stand in a JSON string as it is: no quote, backslash or control byte
/// (16 bytes tested at a time, without a branch).
pub(crate) fn needs_no_escape(text: &str) -> bool {
    // Bitwise, not `&&`: a short-circuit is a branch per byte, and nothing is vectorised.
    let escaped = |b: u8| u8::from((b == b'"') | (b == b'\\') | (b < 0x20));
    let mut chunks = text.as_bytes().chunks_exact(16);
    let plain = chunks
        .by_ref()
        .all(|chunk| chunk.iter().fold(0, |any, &b| any | escaped(b)) == 0);
    plain && chunks.remainder().iter().all(|&b| escaped(b) == 0)
}

/// Parses JSON bytes as serde_json would from a slice, with the UTF-8 checked once for the
/// whole text instead of once per string inside it (a task envelope holds dozens): a tenth of
/// the worker's decoding. Invalid UTF-8 is left to the slice parser, for its error.
pub(crate) fn from_json_bytes<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
) -> serde_json::Result<T> {
    match std::str::from_utf8(bytes) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(bytes),
    }
}
