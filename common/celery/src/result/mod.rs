//! Celery's result backend: [`meta`] is what is stored for a task, [`backend`] reads and writes
//! it on Redis, [`chord`] is the chord join of a header member.

pub mod backend;
pub mod chord;
pub mod meta;

pub use backend::{Encoded, ResultBackend, ResultError};
pub use chord::{ChordEnd, ChordKeys, ChordMember, Join};
pub use meta::{ExceptionInfo, Extended, ResultMeta, TaskState};
