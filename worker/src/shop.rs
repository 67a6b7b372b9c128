//! The shop's tasks on this worker binary: `process_order` and `send_notification` (written in
//! `shop::tasks` with the task API) registered, one line each, with the dependencies they
//! borrow (the webhook client, set up from the shop's own `WEBHOOK_*` settings, and the
//! retention of their keys; the broker's connection is put in by the worker for every task).

use celery_redis::task::Tasks;
use envconf::{ConfigError, Source};
use shop::inventory::Inventory;
use shop::tasks::{ProcessOrderTask, Retention, SendNotificationTask};
use shop::webhook::config::WebhookConfig;
use shop::webhook::Webhooks;

use crate::config::WorkerConfig;

/// Why the shop's tasks could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ShopError {
    /// A webhook setting the client cannot use (the program stops naming the variable).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The webhooks' HTTP client cannot be built (its TLS setup).
    #[error("cannot build the webhook client: {0}")]
    Client(#[from] reqwest::Error),
}

/// The tasks this binary runs, with their dependencies: the webhook settings read from `src`
/// (bounded by the worker's concurrency), the retention from `cfg`.
pub fn tasks(src: &dyn Source, cfg: &WorkerConfig) -> Result<Tasks, ShopError> {
    let webhook = WebhookConfig::from_source(src, cfg.concurrency)?;
    let webhooks = Webhooks::new(webhook.policy, webhook.timeout, webhook.concurrency)?;
    Ok(Tasks::new()
        .task::<ProcessOrderTask>()
        .task::<SendNotificationTask>()
        .dep(Retention(cfg.redis.retention))
        .dep(Inventory::default())
        .dep(webhooks))
}
