//! Why what a task sends on was refused, and the exception its task then ends with.

use celery_redis::protocol::body::MAX_CANVAS;
use celery_redis::result::ExceptionInfo;

/// How deep groups and chains may nest in what one task sends on.
pub const MAX_DEPTH: usize = 16;

/// Why what a task sends on was refused (nothing of it is sent).
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// More than [`MAX_CANVAS`] messages to publish.
    #[error("the canvas this task sends on expands to more than {MAX_CANVAS} messages")]
    TooLarge,
    /// More than [`MAX_CANVAS`] chain steps carried by its messages, all together.
    #[error("the canvas this task sends on carries more than {MAX_CANVAS} chain steps in all")]
    TooManyCarried,
    /// Groups and chains nested deeper than [`MAX_DEPTH`].
    #[error("the canvas this task sends on nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// A signature of this kind (`group`, `chain`, ...) does not read (what is wrong).
    #[error("a {0} signature is malformed: {1}")]
    Malformed(&'static str, String),
    /// A chord where the Rust worker does not apply one (in a group or a chord's header).
    #[error("a chord in a group or in a chord's header (or a chain there ending in a group), sent on by a task, is not applied by the Rust worker")]
    Chord,
}

impl Refused {
    /// The exception stored for the task that sent it: `NotImplementedError` for a chord (as
    /// for a chord's header member), `ValueError` for a canvas out of bounds or malformed.
    pub fn exception(&self) -> ExceptionInfo {
        let exc_type = match self {
            Refused::Chord => "NotImplementedError",
            _ => "ValueError",
        };
        ExceptionInfo::new("builtins", exc_type, self.to_string())
    }
}
