//! The variables of queues: the default queue (`CELERY_QUEUE`, Celery's `task_default_queue`)
//! and the route table (`TASK_ROUTES`, Celery's `task_routes`).

use crate::keys;
use crate::routes::Routes;
use envconf::{raw, ConfigError, Source};

/// `CELERY_QUEUE` (default `celery`): a usable queue name.
pub(super) fn default_queue(src: &dyn Source) -> Result<String, ConfigError> {
    let queue = raw(src, "CELERY_QUEUE")?.unwrap_or_else(|| "celery".into());
    if !keys::is_queue_name(&queue) {
        return Err(ConfigError {
            var: "CELERY_QUEUE",
            reason: "must be 1-128 characters of letters, digits, '.', '_', ':' or '-', and not one of kombu's, Celery's or this project's own keys".into(),
        });
    }
    Ok(queue)
}

/// `TASK_ROUTES` (default: every task to `default`), checked whole.
pub(super) fn task_routes(src: &dyn Source, default: &str) -> Result<Routes, ConfigError> {
    match raw(src, "TASK_ROUTES")? {
        None => Ok(Routes::to(default)),
        Some(spec) => Routes::parse(&spec, default).map_err(|reason| ConfigError {
            var: "TASK_ROUTES",
            reason,
        }),
    }
}
