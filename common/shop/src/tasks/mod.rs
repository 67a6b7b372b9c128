//! The shop's tasks, written with the task API (`celery_redis::task`) like any user's task and
//! registered by the worker binary: [`ProcessOrderTask`] and [`SendNotificationTask`]. They
//! borrow the broker's database connection (`celery_redis::conn::Conn`, which the worker
//! puts in), [`Retention`] and, for webhooks, [`crate::webhook::Webhooks`].

use std::time::Duration;

use celery_redis::task::TaskError;

use crate::validation::ValidationErrors;

pub mod process_order;
pub mod send_notification;

pub use process_order::ProcessOrderTask;
pub use send_notification::SendNotificationTask;

/// How long the shop's per-task keys (reservations, delivery records) live.
#[derive(Debug, Clone, Copy)]
pub struct Retention(pub Duration);

impl From<ValidationErrors> for TaskError {
    /// Invalid arguments are a `ValueError`, so Python callers can `except ValueError`.
    fn from(e: ValidationErrors) -> Self {
        TaskError::builtin("ValueError", e.to_string())
    }
}
