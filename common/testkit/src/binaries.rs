//! [`Binaries`]: the project's three binaries (worker, service-order, service-notification)
//! started as processes on port 0 against one Redis URL (a [`crate::Stack`]'s private Redis, or
//! any other, e.g. a `sentinel://` URL), with typed helpers (post an order, admin, metrics).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::process::{listening_addrs, sibling_binary, Proc};

/// Environment pairs for a binary (later pairs override earlier ones and the defaults).
pub type Env<'a> = &'a [(&'a str, String)];

/// The paths of the three binaries, the Redis URL they are started on, and an HTTP client.
#[derive(Clone)]
pub struct Binaries {
    /// The `REDIS_URL` every started binary gets (its `env` may override it).
    pub url: String,
    /// The client the typed helpers (post an order, read a status) use.
    pub http: reqwest::Client,
    worker_bin: PathBuf,
    /// A program and its arguments that each binary is started under (empty: none).
    prefix: Vec<String>,
}

/// One started binary and the address it listens on (the worker's metrics address), read from
/// the process's own sockets, not from a log line.
pub struct Running {
    /// The child process (killed when dropped).
    pub proc: Proc,
    /// The address it listens on.
    pub addr: SocketAddr,
    /// `http://<addr>`
    pub url: String,
}

/// One of the project's three binaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binary {
    /// `worker`: runs the tasks; listens for `/metrics`.
    Worker,
    /// `service-order`: the order API.
    Order,
    /// `service-notification`: the notification API.
    Notification,
}

impl Binary {
    /// The file name, the variable naming its listening address, and the line it logs once
    /// it serves (a worker: once it consumes its queues, its metrics listener bound before).
    fn parts(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Binary::Worker => ("worker", "WORKER_METRICS_BIND", "consuming queue"),
            Binary::Order => ("service-order", "ORDER_BIND", "listening on"),
            Binary::Notification => ("service-notification", "NOTIFICATION_BIND", "listening on"),
        }
    }
}

/// A `202 Accepted` reply to `POST /orders`, typed.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The order's id (the one posted, or the one generated).
    pub order_id: String,
    /// Its `process_order` task's id.
    pub task_id: String,
    /// Where its status is read (`/orders/{id}`).
    pub status_url: String,
}

impl Binaries {
    /// The binaries on `url`; `worker_bin` is the test's `env!("CARGO_BIN_EXE_worker")`, next
    /// to which the services are found.
    pub fn at(url: &str, worker_bin: &str) -> Self {
        Binaries {
            url: url.to_owned(),
            http: reqwest::Client::new(),
            worker_bin: PathBuf::from(worker_bin),
            prefix: Vec::new(),
        }
    }

    /// The same binaries, each started under `prefix` (a program and its arguments that then
    /// runs the binary in its own process, e.g. `["prlimit", "--as=268435456", "--"]`): the
    /// started process is the binary's own as long as the prefix program execs it.
    pub fn under(&self, prefix: &[&str]) -> Self {
        Binaries {
            prefix: prefix.iter().map(|a| (*a).to_owned()).collect(),
            ..self.clone()
        }
    }

    /// The command that starts `binary` on this Redis: nothing of this process's environment,
    /// `RUST_LOG=info`, its address on a free port, then `env` (which overrides all of these).
    /// Under the [`Binaries::under`] prefix if there is one. For a test that runs it its own
    /// way (e.g. keeping every log line).
    pub fn command(&self, binary: Binary, env: Env) -> Command {
        let (name, bind_var, _) = binary.parts();
        let path = match binary {
            Binary::Worker => self.worker_bin.clone(),
            _ => sibling_binary(&self.worker_bin.to_string_lossy(), name),
        };
        let mut cmd = match self.prefix.split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(path);
                cmd
            }
            None => Command::new(path),
        };
        cmd.env_clear()
            .env("RUST_LOG", "info")
            .env("REDIS_URL", &self.url)
            .env(bind_var, "127.0.0.1:0")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .current_dir(std::env::temp_dir());
        cmd
    }

    /// Starts `binary` with `env`; returns once it serves (its log says so, at `info` for its
    /// own crate: a `RUST_LOG` in `env` must keep that line).
    pub fn start(&self, binary: Binary, env: Env) -> Running {
        let (proc, _) = Proc::spawn_command(self.command(binary, env), binary.parts().2);
        Running::new(proc)
    }

    /// Starts a worker on this Redis (metrics on a free port unless `env` says otherwise);
    /// returns once it consumes its queues.
    pub fn worker(&self, env: Env) -> Running {
        self.start(Binary::Worker, env)
    }

    /// Starts service-order on a free port; returns once it listens.
    pub fn order(&self, env: Env) -> Running {
        self.start(Binary::Order, env)
    }

    /// Starts service-notification on a free port; returns once it listens.
    pub fn notification(&self, env: Env) -> Running {
        self.start(Binary::Notification, env)
    }

    /// Sends a request to `service`; returns the status and the JSON body (`Null` if none).
    pub async fn call(
        &self,
        service: &Running,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", service.url));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("the request reaches the service");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// `POST /orders` on `order`; the reply typed when it is a 202, else the status and body.
    pub async fn post_order(&self, order: &Running, body: Value) -> Result<Accepted, (u16, Value)> {
        let (status, reply) = self
            .call(order, reqwest::Method::POST, "/orders", Some(body))
            .await;
        let field = |name: &str| reply[name].as_str().map(str::to_owned);
        match (
            status,
            field("order_id"),
            field("task_id"),
            field("status_url"),
        ) {
            (202, Some(order_id), Some(task_id), Some(status_url)) => Ok(Accepted {
                order_id,
                task_id,
                status_url,
            }),
            _ => Err((status, reply)),
        }
    }

    /// `GET /metrics` of `service` (a worker's metrics address or a service), as text.
    pub async fn metrics(&self, service: &Running) -> String {
        let resp = self
            .http
            .get(format!("{}/metrics", service.url))
            .send()
            .await
            .expect("the metrics endpoint answers");
        assert!(resp.status().is_success(), "{}", resp.status());
        resp.text().await.expect("metrics text")
    }

    /// Runs `worker <args>` (an admin command) against this Redis; asserts it succeeded and
    /// returns its stdout.
    pub fn admin(&self, args: &[&str]) -> String {
        let (code, stdout, stderr) = self.run(args, &[]);
        assert_eq!(code, Some(0), "worker {args:?}: {stderr}");
        stdout
    }

    /// `worker healthcheck` against this Redis with `env`: exit code, stdout, stderr.
    pub fn healthcheck(&self, env: Env) -> (Option<i32>, String, String) {
        self.run(&["healthcheck"], env)
    }

    /// `worker <args>` against this Redis with `env` too: exit code, stdout, stderr.
    pub fn run(&self, args: &[&str], env: Env) -> (Option<i32>, String, String) {
        let mut all = vec![("REDIS_URL", self.url.clone())];
        all.extend(env.iter().cloned());
        run_worker(&self.worker_bin.to_string_lossy(), args, &all)
    }
}

/// Runs `worker <args>` with only `env` (no Redis of a stack): exit code, stdout, stderr.
pub fn run_worker(worker_bin: &str, args: &[&str], env: Env) -> (Option<i32>, String, String) {
    let out = Command::new(worker_bin)
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap_or_else(|e| panic!("cannot run worker {args:?}: {e}"));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

impl Running {
    /// `proc`'s one listening TCP socket, read from `/proc` (it is ready: it said so).
    fn new(proc: Proc) -> Self {
        let addrs = listening_addrs(proc.child.id());
        let [addr] = addrs[..] else {
            panic!("{} listens on {addrs:?}, not on one address", proc.name)
        };
        Running {
            proc,
            addr,
            url: format!("http://{addr}"),
        }
    }

    /// Whether the process still runs (it neither exited nor was killed).
    pub fn is_running(&mut self) -> bool {
        matches!(self.proc.child.try_wait(), Ok(None))
    }

    /// SIGTERM; asserts a clean exit.
    pub fn stop(self) {
        let name = self.proc.name.clone();
        assert!(
            self.proc.terminate().success(),
            "{name} exits cleanly on SIGTERM"
        );
    }

    /// SIGKILL (with its process group).
    pub fn kill(self) {
        self.proc.kill_group();
    }
}
