//! Celery's result backend: [`meta`] is what is stored for a task, [`backend`] reads and writes
//! it on Redis.

pub mod backend;
pub mod meta;

pub use backend::{Encoded, ResultBackend, ResultError};
pub use meta::{ExceptionInfo, Extended, ResultMeta, TaskState};
