//! The shop's tasks on this worker binary: `process_order` and `send_notification` (written in
//! `shop::tasks` with the task API) registered, one line each, with the dependencies they
//! borrow (the webhook client, the retention of their keys; the broker's connection is put in
//! by the worker for every task).

use celery_redis::task::Tasks;
use shop::tasks::{ProcessOrderTask, Retention, SendNotificationTask};
use shop::webhook::Webhooks;

use crate::config::WorkerConfig;

/// The tasks this binary runs, with their dependencies, from `cfg`.
pub fn tasks(cfg: &WorkerConfig) -> Result<Tasks, reqwest::Error> {
    let webhooks = Webhooks::new(
        cfg.webhook_policy.clone(),
        cfg.webhook_timeout,
        cfg.webhook_concurrency,
    )?;
    Ok(Tasks::new()
        .task::<ProcessOrderTask>()
        .task::<SendNotificationTask>()
        .dep(Retention(cfg.redis.retention))
        .dep(webhooks))
}
