//! Why a Redis list entry is not a task this worker can run.

/// Why a list entry is not a task this worker can run. Every variant is a poison message.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The entry is not a JSON object of kombu's envelope shape.
    #[error("envelope is not a kombu JSON envelope: {0}")]
    Envelope(#[source] serde_json::Error),
    /// The body's serializer is not JSON (pickle and the rest are refused on purpose).
    #[error("content-type {} is not accepted (only application/json)", shown(.0))]
    ContentType(Option<String>),
    /// The body is encoded otherwise than `base64` or plain.
    #[error("body_encoding {0:?} is not supported")]
    BodyEncoding(String),
    /// The body is not valid base64.
    #[error("body is not valid base64: {0}")]
    Base64(#[source] base64::DecodeError),
    /// The body is compressed otherwise than with zlib.
    #[error("compression {0:?} is not supported")]
    Compression(String),
    /// The zlib body could not be inflated.
    #[error("body could not be decompressed: {0}")]
    Decompress(#[source] std::io::Error),
    /// The body (or a part of it) is not the JSON it must be.
    #[error("body is not JSON: {0}")]
    BodyJson(#[source] serde_json::Error),
    /// The body is not `[args, kwargs, embed]` with a list and an object.
    #[error("body must be a 3-element array [args, kwargs, embed]")]
    BodyShape,
    /// A list of `embed` (named) holds more signatures than the limit.
    #[error("embed has more than {1} {0}")]
    TooMany(&'static str, usize),
    /// A part (named) is larger than the limit in bytes.
    #[error("{0} is larger than {1} bytes")]
    TooLarge(&'static str, usize),
    /// A part (named) holds more JSON values than the limit.
    #[error("{0} holds more than {1} JSON values")]
    TooManyValues(&'static str, usize),
    /// A required header (named) is missing or empty.
    #[error("header {0} is missing or empty")]
    MissingHeader(&'static str),
}

impl DecodeError {
    /// Whether the entry was refused for what it would cost to decode (its bytes or values):
    /// its dead letter keeps a bounded prefix of it, not the whole text.
    pub fn is_over_budget(&self) -> bool {
        matches!(
            self,
            DecodeError::TooLarge(..) | DecodeError::TooManyValues(..)
        )
    }
}

/// A content type as a person reads it: quoted, or `none` when the message has none.
fn shown(content_type: &Option<String>) -> String {
    content_type
        .as_deref()
        .map_or_else(|| "none".to_owned(), |t| format!("'{t}'"))
}
