//! Header values that are not text (bytes past ASCII, as HTTP allows on the wire) in
//! `Authorization` and `Content-Type`, sent over real sockets to both service binaries: every
//! route answers a 4xx in the JSON error shape (400 where the header is read), never a 500,
//! and nothing is logged at ERROR.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use testkit::{listening_addr, sibling_binary, TestRedis};

const TOKEN: &str = "a-token-of-the-test-0123456789";
const WAIT: Duration = Duration::from_secs(30);

/// A service binary with its stderr collected line by line.
struct Service {
    child: Child,
    _dir: testkit::TempDir,
    addr: SocketAddr,
    lines: mpsc::Receiver<String>,
}

impl Service {
    fn start(name: &str, redis: &TestRedis) -> Self {
        let dir = testkit::temp_dir("headers");
        let mut child = Command::new(sibling_binary(
            env!("CARGO_BIN_EXE_service-notification"),
            name,
        ))
        .env_clear()
        .env("REDIS_URL", redis.url())
        .env("ORDER_BIND", "127.0.0.1:0")
        .env("NOTIFICATION_BIND", "127.0.0.1:0")
        .env("API_TOKENS", TOKEN)
        .env("RUST_LOG", "info")
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the service");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let addr = loop {
            let line = lines
                .recv_timeout(WAIT)
                .expect("the service logs its address");
            if line.contains("listening on ") {
                break listening_addr(&line);
            }
        };
        Service {
            child,
            _dir: dir,
            addr,
            lines,
        }
    }

    /// Stops the service and returns everything it logged after it started listening.
    fn stop(mut self) -> Vec<String> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        self.lines.try_iter().collect()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends one request as raw bytes and returns the status and the JSON body.
fn exchange(addr: SocketAddr, head: &[u8], body: &str) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut request = head.to_vec();
    request.extend_from_slice(
        format!(
            "Host: test\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    stream.write_all(&request).unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).unwrap();
    let text = String::from_utf8_lossy(&reply);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let json = text
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    (status, json)
}

/// A request line and both headers, the one named `bad` with bytes past ASCII in its value.
fn head(method: &str, path: &str, bad: &str) -> Vec<u8> {
    let mut auth = format!("Bearer {TOKEN}").into_bytes();
    let mut content_type = b"application/json".to_vec();
    match bad {
        "authorization" => auth = b"Bearer \xe2\x82\xac\xff-token".to_vec(),
        _ => content_type.extend_from_slice(b"; charset=\xff\xfe"),
    }
    let mut head = format!("{method} {path} HTTP/1.1\r\nAuthorization: ").into_bytes();
    head.extend_from_slice(&auth);
    head.extend_from_slice(b"\r\nContent-Type: ");
    head.extend_from_slice(&content_type);
    head.extend_from_slice(b"\r\n");
    head
}

/// Method, path, body.
type Request = (&'static str, &'static str, &'static str);

fn assert_invalid_header(status: u16, body: &Value, header: &str, what: &str) {
    assert_eq!(status, 400, "{what}: {body}");
    assert_eq!(body["error"]["code"], "invalid_header", "{what}: {body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(header), "{what}: {body}");
}

#[test]
fn undecodable_authorization_and_content_type_are_400_on_every_route_and_no_error_is_logged() {
    let redis = TestRedis::start();
    let routes: [(&str, &[Request]); 2] = [
        (
            "service-notification",
            &[
                (
                    "POST",
                    "/notifications",
                    r#"{"recipient":"a@example.com","channel":"log","subject":"s","body":"b"}"#,
                ),
                ("GET", "/notifications/n-1", ""),
                ("GET", "/notifications?recipient=a@example.com", ""),
                ("DELETE", "/notifications", ""),
                ("GET", "/metrics", ""),
                ("GET", "/no-such-route", ""),
            ],
        ),
        (
            "service-order",
            &[
                (
                    "POST",
                    "/orders",
                    r#"{"customer":{"id":"c","email":"a@example.com"},"items":[{"sku":"s","quantity":1,"unit_price_cents":1}]}"#,
                ),
                ("GET", "/orders/o-1", ""),
                ("PUT", "/inventory/sku-1", r#"{"available":3}"#),
                ("GET", "/inventory/sku-1", ""),
                ("GET", "/metrics", ""),
            ],
        ),
    ];
    for (name, routes) in routes {
        let service = Service::start(name, &redis);
        for &(method, path, body) in routes {
            let what = format!("{name} {method} {path}");
            let (status, reply) =
                exchange(service.addr, &head(method, path, "authorization"), body);
            assert_invalid_header(status, &reply, "Authorization", &what);
            // Content-Type is read by the routes that take a body; the others do not look.
            let (status, reply) = exchange(service.addr, &head(method, path, "content-type"), body);
            if method == "POST" || method == "PUT" {
                assert_invalid_header(status, &reply, "Content-Type", &what);
            } else {
                assert!((200..500).contains(&status), "{what}: {status} {reply}");
            }
        }
        // The open routes do not read Authorization at all.
        let (status, _) = exchange(service.addr, &head("GET", "/healthz", "authorization"), "");
        assert_eq!(status, 200, "{name}");
        let logged = service.stop();
        assert!(
            !logged.iter().any(|l| l.contains("ERROR")),
            "{name} logged: {logged:#?}"
        );
    }
}
