//! Starting a worker process: its metrics listener bound (a bad `WORKER_METRICS_BIND` is a
//! configuration error), the worker built under its node name, what its configuration points
//! at checked, then run until `stop`.

use celery_redis::shutdown::Shutdown;

use crate::config::WorkerConfig;
use crate::worker::{Worker, WorkerError};

/// Builds a worker with a fresh node name, checks what its configuration points at, and runs
/// it until `stop` fires.
pub async fn run(cfg: WorkerConfig, stop: Shutdown) -> Result<(), WorkerError> {
    let node = cfg.node.clone();
    let bind = cfg.metrics_bind;
    let worker = Worker::build(cfg, node)?;
    worker.check().await?;
    let metrics = tokio::net::TcpListener::bind(bind).await.map_err(|e| {
        celery_redis::config::ConfigError {
            var: "WORKER_METRICS_BIND",
            reason: format!("cannot listen on {bind}: {e}"),
        }
    })?;
    log::info!("metrics and health listening on {}", metrics.local_addr()?);
    worker.run_serving(stop, Some(metrics)).await;
    Ok(())
}
