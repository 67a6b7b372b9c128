//! Binding and serving with bounds: a client has `request_timeout` to send a request's headers
//! (on a new or an idle keep-alive connection alike: slowloris and idle connections are closed)
//! and its body; at most `max_connections` connections are served at once (more are closed at
//! accept); a shutdown stops accepting, lets the requests in flight finish within
//! `shutdown_timeout`, then closes what is left. Port 0 picks a free port; bind errors are
//! reported, not panics.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use celery_redis::shutdown::Shutdown;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::sync::Semaphore;
use warp::{Filter, Reply};

/// The bounds of one server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// To send a request's headers (also the longest idle keep-alive) and, separately, its body.
    pub request_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// How long requests in flight may finish after a shutdown began.
    pub shutdown_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            request_timeout: Duration::from_secs(10),
            max_connections: 1024,
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

/// Binds the listening socket.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

/// Serves `routes` (already `.recover`ed) within `limits` until `shutdown` fires, then lets the
/// requests in flight finish for at most `limits.shutdown_timeout`.
pub async fn serve<F>(
    listener: tokio::net::TcpListener,
    routes: F,
    limits: Limits,
    mut shutdown: Shutdown,
) where
    F: Filter<Error = Infallible> + Clone + Send + Sync + 'static,
    F::Extract: Reply,
{
    let service = warp::service(routes);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.wait() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, say: keep serving the connections there are.
                log::warn!("accept failed: {e}");
                tokio::select! {
                    _ = shutdown.wait() => break,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                }
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            log::warn!(
                "{} connections open: closing a new one",
                limits.max_connections
            );
            drop(stream);
            continue;
        };
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.request_timeout)
            .keep_alive(true)
            .serve_connection(
                TokioIo::new(stream),
                TowerToHyperService::new(service.clone()),
            );
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // A client that stops mid-request or times out is no error of ours.
            let _ = conn.await;
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        log::warn!(
            "requests still in flight after {:?}; closing them",
            limits.shutdown_timeout
        );
    }
}

/// Binds `addr`, logs `<name> listening on <addr>` (tests wait for that line), and serves.
pub async fn run<F>(
    name: &str,
    addr: SocketAddr,
    routes: F,
    limits: Limits,
    shutdown: Shutdown,
) -> std::io::Result<()>
where
    F: Filter<Error = Infallible> + Clone + Send + Sync + 'static,
    F::Extract: Reply,
{
    let listener = bind(addr).await?;
    log::info!("{name} listening on {}", listener.local_addr()?);
    serve(listener, routes, limits, shutdown).await;
    log::info!("{name} stopped");
    Ok(())
}
