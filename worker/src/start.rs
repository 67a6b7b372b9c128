//! Starting a worker process: its metrics listener bound (an address set in
//! `WORKER_METRICS_BIND` that cannot be had is a configuration error; the default, when taken,
//! gives way to a free port for a worker with a `WORKER_NAME`), the worker built under its node name, what its configuration points
//! at checked, then run until `stop`.

use celery_redis::shutdown::Shutdown;
use celery_redis::task::Tasks;

use crate::config::WorkerConfig;
use crate::worker::{Worker, WorkerError};

/// Builds a worker running `tasks`, checks what its configuration points at, and runs it
/// until `stop` fires.
pub async fn run(cfg: WorkerConfig, tasks: Tasks, stop: Shutdown) -> Result<(), WorkerError> {
    let node = cfg.node.clone();
    let (bind, set_bind, named) = (cfg.metrics_bind, cfg.metrics_bind_set, cfg.named);
    for line in crate::banner::lines(&cfg, &node, &tasks.names()) {
        log::info!("{line}");
    }
    let worker = Worker::build(cfg, tasks, node)?;
    worker.check().await?;
    let refused = |e: std::io::Error| envconf::ConfigError {
        var: "WORKER_METRICS_BIND",
        reason: format!("cannot listen on {bind}: {e}"),
    };
    let metrics = match tokio::net::TcpListener::bind(bind).await {
        Ok(listener) => listener,
        // The default port taken by another worker of this host (Celery users run several, each
        // named with -n): a named worker takes a free port on the same address, said in the
        // log; its health check pings it by name. An unnamed one refuses: its health check,
        // which finds its worker by this address, would vouch for the other.
        Err(e) if !set_bind && named && e.kind() == std::io::ErrorKind::AddrInUse => {
            let free = std::net::SocketAddr::new(bind.ip(), 0);
            let listener = tokio::net::TcpListener::bind(free).await.map_err(refused)?;
            log::warn!(
                "{bind} is taken (another worker on this host?): metrics and health on {} instead; set WORKER_METRICS_BIND (and WORKER_NAME) per worker to choose",
                listener.local_addr()?
            );
            listener
        }
        Err(e) if !set_bind && e.kind() == std::io::ErrorKind::AddrInUse => {
            return Err(envconf::ConfigError {
                var: "WORKER_METRICS_BIND",
                reason: format!("{bind} is taken (another worker on this host?): give each worker of a host a WORKER_NAME (then a free port is taken) or a WORKER_METRICS_BIND of its own"),
            }
            .into())
        }
        Err(e) => return Err(refused(e).into()),
    };
    log::info!("metrics and health listening on {}", metrics.local_addr()?);
    worker.run_serving(stop, Some(metrics)).await;
    Ok(())
}
