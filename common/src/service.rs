//! Start-up plumbing of an HTTP service: the state every handler shares, and `main`'s body
//! (configuration, the `healthcheck` subcommand, serving until SIGTERM/SIGINT).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use redis::aio::ConnectionManager;
use warp::{Filter, Reply};

use crate::config::{ProcessEnv, ServiceConfig};
use crate::connection::Stores;
use crate::queue::Broker;
use crate::result::ResultBackend;
use crate::shutdown::Shutdown;

/// What every handler of a service shares.
#[derive(Clone)]
pub struct AppState {
    pub broker: Broker,
    /// The broker's database.
    pub redis: ConnectionManager,
    pub results: ResultBackend,
    /// Upper bound on any one Redis call made for a request.
    pub timeout: Duration,
}

impl AppState {
    pub fn connect(cfg: &ServiceConfig) -> redis::RedisResult<Self> {
        let stores = Stores::connect(&cfg.redis, Some(cfg.redis.timeout))?;
        Ok(AppState {
            broker: Broker::new(stores.redis.clone(), cfg.redis.queue.clone())
                .with_max_depth(cfg.max_queue_depth),
            redis: stores.redis,
            results: stores.results,
            timeout: cfg.redis.timeout,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("cannot listen: {0}")]
    Io(#[from] std::io::Error),
}

/// Identifies a service: its name in logs and the variable holding its address.
#[derive(Debug, Clone, Copy)]
pub struct ServiceSpec {
    pub name: &'static str,
    pub bind_var: &'static str,
    pub default_bind: SocketAddr,
}

/// Connects and serves `routes(state)` until `shutdown` fires.
pub async fn run<F, R>(
    spec: ServiceSpec,
    cfg: ServiceConfig,
    routes: R,
    shutdown: Shutdown,
) -> Result<(), ServeError>
where
    R: FnOnce(AppState) -> F,
    F: Filter<Error = Infallible> + Clone + Send + Sync + 'static,
    F::Extract: Reply,
{
    let state = AppState::connect(&cfg)?;
    crate::web::run(spec.name, cfg.bind, routes(state), shutdown).await?;
    Ok(())
}

/// The whole `main` of a service: `.env` and logging, `healthcheck` subcommand, configuration
/// (a bad variable exits with status 2 and a log line naming it), then [`run`] until a signal.
pub async fn main<F, R>(spec: ServiceSpec, routes: R) -> Result<(), ServeError>
where
    R: FnOnce(AppState) -> F,
    F: Filter<Error = Infallible> + Clone + Send + Sync + 'static,
    F::Extract: Reply,
{
    crate::config::init();
    if std::env::args().nth(1).as_deref() == Some("healthcheck") {
        std::process::exit(
            crate::web::healthcheck_cli(&ProcessEnv, spec.bind_var, spec.default_bind).await,
        );
    }
    let cfg = match ServiceConfig::from_source(&ProcessEnv, spec.bind_var, spec.default_bind) {
        Ok(cfg) => cfg,
        Err(e) => {
            log::error!("{e}");
            std::process::exit(2);
        }
    };
    run(spec, cfg, routes, crate::shutdown::on_signals()).await
}
