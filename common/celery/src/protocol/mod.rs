//! The wire format: Celery protocol v2 as kombu puts it on Redis. This module only turns bytes
//! into typed messages and back; where they go on Redis is [`crate::broker`]'s business.
//!
//! - [`envelope`] — the kombu envelope with its headers and properties, and [`Message::decode`].
//! - [`error`] — why an entry is not a runnable task (every variant is a poison message).
//! - [`body`] — the `[args, kwargs, embed]` body and the canvas signatures inside it.
//! - [`limits`] — what one message may cost: bytes, inflated body, JSON values, deliveries.
//! - `b64` — base64 as kombu encodes bodies, vectorised.
//! - `json` — JSON written by hand where serde's per-byte escaping cost the most.
//! - [`fanout`] — the envelope of broadcast traffic (events, remote control), any JSON body.
//! - [`pyrepr`] — Python's `repr()` of JSON values, as task events carry them.
//! - [`outgoing`] — [`TaskMessage`], a task to publish, shaped exactly as Python Celery 5.x does.

pub(crate) mod b64;
pub mod body;
pub mod envelope;
pub mod error;
pub mod fanout;
pub(crate) mod json;
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

/// Whether `text` can stand in a JSON string as it is: no quote, backslash or control byte.
pub(crate) fn needs_no_escape(text: &str) -> bool {
    first_byte(text.as_bytes(), |b| (b == b'"') | (b == b'\\') | (b < 0x20)).is_none()
}

/// The first byte of `bytes` that is `wanted`: 16 bytes are tested at a time without a branch,
/// which the compiler vectorises, then the one found is located. The last (or only) bytes are
/// tested the same way, padded to 16 with copies of their first byte (which cannot hide an
/// earlier match): most strings written per task are shorter than 16 bytes or end in a
/// remainder, and testing those a byte at a time cost as much as the rest. `wanted` must be
/// bitwise (`|`, not `||`): a short-circuit is a branch per byte and nothing is vectorised
/// (9 instructions a byte instead of ~1.2, measured).
pub(crate) fn first_byte(bytes: &[u8], wanted: impl Fn(u8) -> bool) -> Option<usize> {
    let any = |chunk: &[u8; 16]| chunk.iter().fold(0u8, |any, &b| any | u8::from(wanted(b))) != 0;
    let mut chunks = bytes.chunks_exact(16);
    let mut at = 0;
    for chunk in &mut chunks {
        if let Ok(chunk) = <&[u8; 16]>::try_from(chunk) {
            if any(chunk) {
                break;
            }
        }
        at += 16;
    }
    let rest = bytes.get(at..)?;
    if rest.len() < 16 {
        let &first = rest.first()?;
        let mut padded = [first; 16];
        padded.get_mut(..rest.len())?.copy_from_slice(rest);
        if !any(&padded) {
            return None;
        }
    }
    rest.iter().position(|&b| wanted(b)).map(|i| at + i)
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_first_byte_is_found_in_any_chunk_and_in_the_remainder() {
        for len in (0..=40).chain([47, 48, 63]) {
            let plain = "a".repeat(len);
            assert!(super::needs_no_escape(&plain), "{len}");
            for at in 0..len {
                let mut text = plain.clone().into_bytes();
                text[at] = b'"';
                let text = String::from_utf8(text).unwrap();
                assert_eq!(super::first_byte(text.as_bytes(), |b| b == b'"'), Some(at));
                assert!(!super::needs_no_escape(&text), "{len} {at}");
            }
        }
        assert!(super::needs_no_escape("ünï/+= \u{7f}"));
        assert!(!super::needs_no_escape(&format!("{}\u{1}", "x".repeat(20))));
    }
}
