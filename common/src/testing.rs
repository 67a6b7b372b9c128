//! Test support: a private `redis-server` (from PATH) on a free port, and child processes whose
//! output can be awaited line by line. Enabled by the `test-support` feature.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use redis::aio::ConnectionManager;

/// How long a child may take to print the line a test waits for.
pub const STARTUP: Duration = Duration::from_secs(30);

/// A `redis-server` of this test alone, stopped when dropped.
pub struct TestRedis {
    child: Child,
    port: u16,
    extra: Vec<String>,
    dir: TempDir,
}

impl TestRedis {
    /// Starts `redis-server` on a free port and returns once it accepts connections (it says so
    /// on stdout; nothing here sleeps).
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Same, with extra `redis-server` arguments (e.g. `["--appendonly", "yes"]`; later
    /// arguments override the defaults).
    pub fn start_with(extra: &[&str]) -> Self {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port();
            let dir = TempDir::new("redis");
            match spawn_redis(port, dir.path(), &extra) {
                Ok(child) => {
                    return TestRedis {
                        child,
                        port,
                        extra,
                        dir,
                    }
                }
                Err(e) => last_error = e,
            }
        }
        panic!("redis-server did not start: {last_error}");
    }

    /// Stops the server gracefully (SIGTERM: it writes its AOF) and starts it again on the same
    /// port with the same data directory; returns once it accepts connections again.
    pub fn restart(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        self.child = spawn_redis(self.port, self.dir.path(), &self.extra)
            .unwrap_or_else(|e| panic!("redis-server did not restart: {e}"));
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The redis-server's process id (to read its CPU time or memory from /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// A URL for another database of the same server.
    pub fn url_db(&self, db: u8) -> String {
        format!("redis://127.0.0.1:{}/{db}", self.port)
    }

    pub fn client(&self) -> redis::Client {
        crate::connection::client(&self.url()).expect("valid url")
    }

    pub async fn manager(&self) -> ConnectionManager {
        ConnectionManager::new(self.client())
            .await
            .expect("connect to test redis")
    }
}

fn spawn_redis(port: u16, dir: &Path, extra: &[String]) -> Result<Child, String> {
    let mut child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(["--dir", &dir.to_string_lossy(), "--logfile", ""])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server must be on PATH for the tests");
    let stdout = child.stdout.take().expect("piped stdout");
    match wait_for_line(stdout, "Ready to accept connections", STARTUP) {
        Ok(()) => Ok(child),
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(e)
        }
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Reads lines (on a helper thread) until one contains `needle`; the rest of the output is
/// drained so the child never blocks on a full pipe.
pub fn wait_for_line(
    out: impl std::io::Read + Send + 'static,
    needle: &str,
    limit: Duration,
) -> Result<(), String> {
    lines_until(out, needle, limit).map(drop)
}

/// Like [`wait_for_line`], returning the matching line.
pub fn lines_until(
    out: impl std::io::Read + Send + 'static,
    needle: &str,
    limit: Duration,
) -> Result<String, String> {
    let (tx, rx) = mpsc::channel();
    let needle = needle.to_owned();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if std::env::var_os("TEST_ECHO_CHILDREN").is_some() {
                eprintln!("child> {line}");
            }
            if line.contains(&needle) {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(line);
                }
            }
        }
    });
    rx.recv_timeout(limit)
        .map_err(|_| "the expected line did not appear (process exited or timed out)".to_owned())
}

/// A child process (one of the project's binaries) killed when dropped.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    /// Starts `binary` with `env` (and nothing from `.env`) and waits until its log has a line
    /// containing `ready_line`; returns that line too.
    pub fn spawn(
        binary: &Path,
        args: &[&str],
        env: &[(&str, String)],
        ready_line: &str,
    ) -> (Self, String) {
        let mut cmd = Command::new(binary);
        cmd.args(args)
            .env_clear()
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .current_dir(std::env::temp_dir());
        Self::spawn_command(cmd, ready_line)
    }

    /// Starts a prepared command in its own process group (so [`Proc::kill_group`] reaches its
    /// children too) and waits for `ready_line` on its stderr.
    pub fn spawn_command(mut cmd: Command, ready_line: &str) -> (Self, String) {
        use std::os::unix::process::CommandExt;
        cmd.stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0);
        let program = Path::new(cmd.get_program()).to_path_buf();
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let stderr = child.stderr.take().expect("piped stderr");
        let name = program
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match lines_until(stderr, ready_line, STARTUP) {
            Ok(line) => (Proc { child, name }, line),
            Err(e) => {
                let _ = child.kill();
                panic!("{name} did not log {ready_line:?}: {e}");
            }
        }
    }

    /// SIGKILLs the whole process group (a Celery prefork worker and its children) at once.
    pub fn kill_group(mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM (via `kill`, no extra crates) and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().expect("wait for child")
    }
}

impl Drop for Proc {
    /// Kills the process and anything it started (its process group).
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The path of a sibling binary of this workspace, next to `anchor` (a `CARGO_BIN_EXE_*`).
pub fn sibling_binary(anchor: &str, name: &str) -> std::path::PathBuf {
    let path = Path::new(anchor).with_file_name(name);
    assert!(
        path.exists(),
        "{} is not built: run the whole workspace's tests (cargo test --workspace), or build its binaries first (cargo build --release --workspace before cargo bench)",
        path.display()
    );
    path
}

/// The socket address in a "listening on 127.0.0.1:PORT" log line.
pub fn listening_addr(line: &str) -> std::net::SocketAddr {
    line.rsplit("listening on ")
        .next()
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
}

/// A temporary directory removed when dropped.
pub struct TempDir(std::path::PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> Self {
        let path = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A service configuration pointing at `redis_url`, with a short Redis timeout so tests of an
/// unreachable Redis finish quickly.
pub fn service_config(redis_url: &str) -> crate::config::ServiceConfig {
    let url = redis_url.to_owned();
    let src = move |var: &str| match var {
        "REDIS_URL" => Some(url.clone()),
        "REDIS_TIMEOUT_MS" => Some("500".to_owned()),
        _ => None,
    };
    crate::config::ServiceConfig::from_source(&src, "UNUSED_BIND", ([127, 0, 0, 1], 0).into())
        .expect("valid test configuration")
}

/// A Redis URL where nothing listens.
pub fn unreachable_redis_url() -> String {
    format!("redis://127.0.0.1:{}/0", free_port())
}

/// One request a [`WebhookReceiver`] got.
#[derive(Debug, Clone)]
pub struct Hit {
    pub idempotency_key: Option<String>,
    pub body: serde_json::Value,
}

/// A local HTTP server standing in for a webhook: answers the scripted statuses in order (then
/// 200) and reports every request on a channel the test awaits.
pub struct WebhookReceiver {
    pub url: String,
    pub hits: tokio::sync::mpsc::UnboundedReceiver<Hit>,
    _stop: crate::shutdown::Trigger,
}

impl WebhookReceiver {
    pub async fn start(statuses: Vec<u16>) -> Self {
        use std::sync::{Arc, Mutex};
        use warp::Filter;
        let (tx, hits) = tokio::sync::mpsc::unbounded_channel();
        let script = Arc::new(Mutex::new(statuses.into_iter()));
        let route = warp::post()
            .and(warp::path!("hook"))
            .and(warp::header::optional::<String>("idempotency-key"))
            .and(warp::body::json())
            .map(move |key: Option<String>, body: serde_json::Value| {
                let _ = tx.send(Hit {
                    idempotency_key: key,
                    body,
                });
                let status = script.lock().ok().and_then(|mut s| s.next()).unwrap_or(200);
                let status =
                    warp::http::StatusCode::from_u16(status).unwrap_or(warp::http::StatusCode::OK);
                warp::reply::with_status("ok", status)
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let (trigger, shutdown) = crate::shutdown::channel();
        let routes = route.recover(crate::web::recover);
        tokio::spawn(crate::web::serve(listener, routes, shutdown));
        WebhookReceiver {
            url,
            hits,
            _stop: trigger,
        }
    }

    /// The next request, waiting up to [`STARTUP`].
    pub async fn next(&mut self) -> Hit {
        tokio::time::timeout(STARTUP, self.hits.recv())
            .await
            .expect("a webhook request in time")
            .expect("receiver running")
    }
}

/// Sends one request through `routes` with `warp::test` (no socket); returns the status and the
/// JSON body (`Null` when the body is not JSON).
pub async fn call<F>(
    routes: &F,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, serde_json::Value)
where
    F: warp::Filter + 'static,
    F::Extract: warp::Reply + Send,
{
    let mut req = warp::test::request().method(method).path(path);
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b);
    }
    let resp = req.reply(routes).await;
    let json = serde_json::from_slice(resp.body()).unwrap_or(serde_json::Value::Null);
    (resp.status().as_u16(), json)
}

/// The messages waiting in the `celery` list, decoded (oldest last).
pub async fn queued(redis: &TestRedis) -> Vec<crate::protocol::Message> {
    use redis::AsyncCommands;
    let raw: Vec<String> = redis
        .manager()
        .await
        .lrange("celery", 0, -1)
        .await
        .expect("read the queue");
    raw.iter()
        .map(|r| crate::protocol::Message::decode(r.as_bytes()).expect("a decodable message"))
        .collect()
}
