//! Binding and serving with bounds: a client has `request_timeout` to send a request's headers
//! (on a new or an idle keep-alive connection alike: slowloris and idle connections are closed)
//! and its body; at most `max_connections` connections are served at once (more are closed at
//! accept); a shutdown stops accepting, lets the requests in flight finish within
//! `shutdown_timeout`, then closes what is left. Port 0 picks a free port; bind errors are
//! reported, not panics. Each request runs in the W3C trace context its `traceparent` carries
//! (a new root trace when absent or invalid), with its trace id in every log line.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use celery_redis::shutdown::Shutdown;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use observe::trace::{TraceContext, TRACEPARENT, TRACESTATE};
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
    let service = TowerToHyperService::new(warp::service(routes));
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
            .serve_connection(TokioIo::new(stream), Traced(service.clone()));
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

/// A service run per request inside the request's trace context ([`observe::trace::scope`])
/// and a log scope with its trace id: a child of a valid `traceparent`, else a new root.
#[derive(Clone)]
struct Traced<S>(S);

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, B> hyper::service::Service<hyper::Request<B>> for Traced<S>
where
    S: hyper::service::Service<hyper::Request<B>> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn call(&self, req: hyper::Request<B>) -> Self::Future {
        // W3C: more than one `traceparent` is invalid; several `tracestate`s are one list.
        let mut parents = req.headers().get_all(TRACEPARENT).iter();
        let parent = match (parents.next(), parents.next()) {
            (Some(v), None) => v.to_str().ok(),
            _ => None,
        };
        let states: Vec<&str> = req
            .headers()
            .get_all(TRACESTATE)
            .iter()
            // A value that is not visible ASCII makes the whole list invalid (dropped).
            .map(|v| v.to_str().unwrap_or("\n"))
            .collect();
        let state = (!states.is_empty()).then(|| states.join(","));
        let trace = TraceContext::continue_or_root(parent, state.as_deref());
        let fields = observe::log::Fields {
            trace_id: Some(trace.trace_id()),
            ..Default::default()
        };
        let service = self.0.clone();
        // The call itself runs inside the scope: warp routes the request when it is called.
        Box::pin(observe::trace::scope(
            Some(trace),
            observe::log::scope(fields, async move { service.call(req).await }),
        ))
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    /// The body of a `GET /` sent with `headers` (HTTP/1.1 by hand: no client crate here).
    async fn get(addr: SocketAddr, headers: &[(&str, &str)]) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut req = "GET / HTTP/1.1\r\nhost: t\r\nconnection: close\r\n".to_owned();
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut resp = String::new();
        stream.read_to_string(&mut resp).await.unwrap();
        resp.split_once("\r\n\r\n").unwrap().1.to_owned()
    }

    #[tokio::test]
    async fn each_request_runs_in_the_trace_its_traceparent_carries_or_a_new_one() {
        let routes = warp::any().map(|| match observe::trace::current() {
            Some(t) => format!("{} {}", t.traceparent(), t.tracestate().unwrap_or("-")),
            None => "none".to_owned(),
        });
        let listener = bind(([127, 0, 0, 1], 0).into()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (trigger, stop) = celery_redis::shutdown::channel();
        let server = tokio::spawn(serve(listener, routes, Limits::default(), stop));

        let states = [("tracestate", "a=1"), ("tracestate", "b=2")];
        let body = get(addr, &[("traceparent", PARENT), states[0], states[1]]).await;
        let (parent, state) = body.split_once(' ').unwrap();
        assert!(
            parent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{body}"
        );
        assert!(!parent.contains("00f067aa0ba902b7"), "a new span: {body}");
        assert_eq!(state, "a=1,b=2");

        let invalid = [
            vec![("traceparent", PARENT), ("traceparent", PARENT)],
            vec![(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            )],
            vec![("tracestate", "a=1")],
            vec![],
        ];
        for headers in invalid {
            let body = get(addr, &headers).await;
            let (parent, state) = body.split_once(' ').unwrap();
            assert!(
                !parent.contains("4bf92f3577b34da6a3ce929d0e0e4736"),
                "{body}"
            );
            assert_eq!(parent.len(), 55, "{body}");
            assert_eq!(state, "-");
        }
        trigger.fire();
        server.await.unwrap();
    }
}
