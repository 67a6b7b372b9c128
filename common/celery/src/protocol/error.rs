//! Why a Redis list entry is not a task this worker can run.

/// Why a list entry is not a task this worker can run. Every variant is a poison message.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("envelope is not a kombu JSON envelope: {0}")]
    Envelope(#[source] serde_json::Error),
    #[error("content-type {} is not accepted (only application/json)", shown(.0))]
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
    #[error("embed has more than {1} {0}")]
    TooMany(&'static str, usize),
    #[error("{0} is larger than {1} bytes")]
    TooLarge(&'static str, usize),
    #[error("{0} holds more than {1} JSON values")]
    TooManyValues(&'static str, usize),
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
