//! Binding and serving: port 0 picks a free port, bind errors are reported (not panics), and a
//! shutdown lets the requests in flight finish.

use std::convert::Infallible;
use std::net::SocketAddr;

use celery_redis::shutdown::Shutdown;
use warp::{Filter, Reply};

/// Binds the listening socket.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

/// Serves `routes` (already `.recover`ed) until `shutdown` fires, then finishes the requests
/// in flight.
pub async fn serve<F>(listener: tokio::net::TcpListener, routes: F, mut shutdown: Shutdown)
where
    F: Filter<Error = Infallible> + Clone + Send + Sync + 'static,
    F::Extract: Reply,
{
    warp::serve(routes)
        .incoming(listener)
        .graceful(async move { shutdown.wait().await })
        .run()
        .await;
}

/// Binds `addr`, logs `<name> listening on <addr>` (tests wait for that line), and serves.
pub async fn run<F>(
    name: &str,
    addr: SocketAddr,
    routes: F,
    shutdown: Shutdown,
) -> std::io::Result<()>
where
    F: Filter<Error = Infallible> + Clone + Send + Sync + 'static,
    F::Extract: Reply,
{
    let listener = bind(addr).await?;
    log::info!("{name} listening on {}", listener.local_addr()?);
    serve(listener, routes, shutdown).await;
    log::info!("{name} stopped");
    Ok(())
}
