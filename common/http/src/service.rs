//! A service's start-up: the state every handler shares, and `main`'s body (configuration, the
//! `healthcheck` subcommand, serving until SIGTERM/SIGINT).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use celery_redis::broker::Broker;
use celery_redis::conn::Conn;
use celery_redis::conn::{bounded, retry_once, Waits};
use celery_redis::result::ResultBackend;
use celery_redis::shutdown::Shutdown;
use celery_redis::stores::Stores;
use envconf::{ConfigError, ProcessEnv};
use warp::{Filter, Reply};

use crate::auth::Auth;
use crate::config::ServiceConfig;
use crate::error::ApiError;

/// What every handler of a service shares.
#[derive(Clone)]
pub struct AppState {
    /// Publishes the service's tasks (with its routes, key layout and `MAX_QUEUE_DEPTH`).
    pub broker: Broker,
    /// The broker's database.
    pub redis: Conn,
    /// The result backend: the tasks' states and results.
    pub results: ResultBackend,
    /// Upper bound on any one Redis call made for a request.
    pub timeout: Duration,
    /// Who may call the API (health routes excepted).
    pub auth: Arc<Auth>,
    /// Both connections, for start-up checks.
    pub stores: Stores,
    /// The longest a client may take to send a request body.
    pub body_timeout: Duration,
    /// This process's metrics (`GET /metrics`).
    pub metrics: observe::metrics::Metrics,
    /// This process's node name (`origin` of what it publishes; `hostname` in metrics).
    pub origin: String,
}

impl AppState {
    /// Connects (lazily) to Redis; `origin` is this process's node name.
    pub fn connect(cfg: &ServiceConfig, origin: &str) -> redis::RedisResult<Self> {
        let waits = Waits {
            response: Some(cfg.redis.timeout),
            connect_retries: 0,
        };
        let stores = Stores::connect(&cfg.redis, waits)?;
        Ok(AppState {
            broker: Broker::new(stores.redis.clone(), cfg.redis.queue.clone(), origin)
                .with_layout(cfg.redis.layout.clone())
                .with_routes(cfg.redis.routes.clone())
                .with_max_depth(cfg.max_queue_depth)
                .with_retention(cfg.redis.retention),
            redis: stores.redis.clone(),
            results: stores.results.clone(),
            timeout: cfg.redis.timeout,
            auth: Arc::new(cfg.auth.clone()),
            body_timeout: cfg.limits.request_timeout,
            stores,
            metrics: observe::metrics::Metrics::new(),
            origin: origin.to_owned(),
        })
    }

    /// Runs an idempotent Redis call for a request: once more on a fresh connection when the
    /// first found it dead, bounded by `timeout` in all; a failure is a 503.
    pub async fn call<T, F, Fut>(&self, call: F) -> Result<T, ApiError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        bounded(self.timeout, retry_once(call))
            .await
            .map_err(ApiError::from)
    }
}

/// Why a service stopped before serving, or while serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Redis' connections cannot be made from its configuration (they are lazy: not for a
    /// Redis that is down).
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The service's address cannot be listened on.
    #[error("cannot listen: {0}")]
    Io(#[from] std::io::Error),
    /// A variable has a value the service cannot use, or the Redis it names is refused at
    /// start-up (`Stores::check`: eviction policy, database, sentinels).
    #[error("{0}")]
    Config(#[from] ConfigError),
}

/// Identifies a service: its name in logs and the variable holding its address.
#[derive(Debug, Clone, Copy)]
pub struct ServiceSpec {
    /// The service's name in its log lines (`service-order`).
    pub name: &'static str,
    /// The variable holding the address it listens on (`ORDER_BIND`).
    pub bind_var: &'static str,
    /// The address when that variable is unset.
    pub default_bind: SocketAddr,
}

/// Connects and serves `routes(state)` (the whole route table: it answers every request,
/// rejections included) until `shutdown` fires, accounting every exchange in the metrics.
pub async fn run<F, R, T>(
    spec: ServiceSpec,
    cfg: ServiceConfig,
    routes: R,
    shutdown: Shutdown,
) -> Result<(), ServeError>
where
    R: FnOnce(AppState) -> F,
    F: Filter<Extract = (T,), Error = Infallible> + Clone + Send + Sync + 'static,
    T: Reply + Send + 'static,
{
    let state = AppState::connect(&cfg, &celery_redis::node::unique())?;
    state.stores.check(&cfg.redis).await?;
    let metrics = state.metrics.clone();
    // Boxed: the route table's future lives on the heap (unboxed, its nesting overflowed the
    // stack of a debug build).
    let served = routes(state)
        .map(|r: T| r.into_response())
        // Every exchange is accounted, whichever route (or none) answered it.
        .with(warp::log::custom(move |info| {
            crate::metrics::record(&metrics, &info)
        }))
        .boxed()
        // The route table recovers every rejection itself; this only satisfies the type.
        .recover(crate::rejection::recover);
    crate::serve::run(spec.name, cfg.bind, served, cfg.limits, shutdown).await?;
    Ok(())
}

/// The whole `main` of a service: `.env` and logging, configuration (a bad variable, or an
/// address it cannot listen on, exits with status 2 and a line naming the variable), the
/// `healthcheck` subcommand, then [`run`] until a signal.
pub async fn main<F, R, T>(spec: ServiceSpec, routes: R) -> Result<(), ServeError>
where
    R: FnOnce(AppState) -> F,
    F: Filter<Extract = (T,), Error = Infallible> + Clone + Send + Sync + 'static,
    T: Reply + Send + 'static,
{
    envconf::init();
    let cfg = ServiceConfig::from_source(&ProcessEnv, spec.bind_var, spec.default_bind)
        .unwrap_or_else(|e| envconf::fail(&e));
    if std::env::args().nth(1).as_deref() == Some("healthcheck") {
        std::process::exit(crate::health::check(cfg.bind).await);
    }
    let bind = cfg.bind;
    match run(spec, cfg, routes, celery_redis::shutdown::on_signals()).await {
        Err(ServeError::Config(e)) => envconf::fail(&e),
        Err(ServeError::Io(e)) => envconf::fail(&ConfigError {
            var: spec.bind_var,
            reason: format!("cannot listen on {bind}: {e}"),
        }),
        other => other,
    }
}
