//! The HTTP server's bounds against real sockets: slow or idle clients are cut off, the
//! connection cap holds, a body that never completes is refused, and a shutdown is bounded.

use std::time::Duration;

use celery_redis::shutdown;
use http_kit::serve::{serve, Limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use warp::Filter;

const WAIT: Duration = Duration::from_secs(30);

async fn start(
    limits: Limits,
) -> (
    std::net::SocketAddr,
    shutdown::Trigger,
    tokio::task::JoinHandle<()>,
) {
    let body = warp::post()
        .and(http_kit::body::json_object(limits.request_timeout))
        .map(|_| "ok");
    let routes = warp::get()
        .map(|| "ok")
        .or(body)
        .recover(http_kit::rejection::recover);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (trigger, stop) = shutdown::channel();
    let server = tokio::spawn(serve(listener, routes, limits, stop));
    (addr, trigger, server)
}

/// Reads until the server closes the connection; returns what it sent.
async fn until_closed(stream: &mut TcpStream) -> String {
    let mut all = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut all))
        .await
        .expect("the server closed the connection")
        .ok();
    String::from_utf8_lossy(&all).into_owned()
}

fn short(max_connections: usize) -> Limits {
    Limits {
        request_timeout: Duration::from_millis(300),
        max_connections,
        shutdown_timeout: Duration::from_millis(300),
    }
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let (addr, _trigger, _server) = start(short(10)).await;
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    until_closed(&mut slow).await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let (addr, _trigger, _server) = start(short(10)).await;
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let got = until_closed(&mut idle).await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_at_once_and_served_again_later() {
    let limits = Limits {
        request_timeout: Duration::from_secs(600),
        ..short(2)
    };
    let (addr, _trigger, _server) = start(limits).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 12];
        s.read_exact(&mut buf).await.unwrap();
        held.push(s);
    }
    let mut third = TcpStream::connect(addr).await.unwrap();
    assert_eq!(
        until_closed(&mut third).await,
        "",
        "closed without an answer"
    );
    drop(held);
    // A slot is free again once a held connection is gone.
    let mut later = None;
    for _ in 0..100 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let got = until_closed(&mut s).await;
        if got.starts_with("HTTP/1.1 200") {
            later = Some(got);
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(later.is_some(), "served again");
}

#[tokio::test]
async fn a_body_that_never_completes_gets_408() {
    let (addr, _trigger, _server) = start(short(10)).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"a\"",
    )
    .await
    .unwrap();
    let got = until_closed(&mut s).await;
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
}

#[tokio::test]
async fn a_shutdown_waits_for_a_stuck_request_no_longer_than_its_bound() {
    let limits = Limits {
        request_timeout: Duration::from_secs(600),
        ..short(10)
    };
    let (addr, trigger, server) = start(limits).await;
    let mut stuck = TcpStream::connect(addr).await.unwrap();
    stuck
        .write_all(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
        )
        .await
        .unwrap();
    // The request has reached the handler once a second connection is answered.
    let mut probe = TcpStream::connect(addr).await.unwrap();
    probe
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    until_closed(&mut probe).await;
    trigger.fire();
    tokio::time::timeout(WAIT, server)
        .await
        .expect("the server stopped despite the stuck client")
        .unwrap();
}
