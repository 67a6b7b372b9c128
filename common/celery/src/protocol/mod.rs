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
