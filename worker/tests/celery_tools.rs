//! Python Celery's *tools* against the Rust worker: the `celery inspect` / `celery control` CLI,
//! `AsyncResult.revoke()`, `celery events --dump` and an EventReceiver, and Flower, each against a
//! private redis-server, in a fleet of the Rust worker and (where it says so) a Python worker.
//! The Python side is `tests/interop/tools.py` (scenarios printing a JSON report) and the real
//! CLI run with cwd `tests/interop`. Every test is ignored by the plain test command (it needs
//! Python): `CELERY_PYTHON=<venv>/bin/python cargo test -p worker --test celery_tools -- --ignored`;
//! the Flower tests also need `FLOWER_PYTHON` (a venv with flower, requirements-flower.txt) and
//! say so and pass without it (CI sets it).

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::{free_port, Binaries, Proc, TestRedis};

const WAIT: Duration = Duration::from_secs(60);
const REGISTERED: [&str; 2] = ["process_order", "send_notification"];
/// What Celery's `Request.info()` has: each entry of `inspect active`, `reserved` and the
/// `request` of `scheduled`.
const REQUEST_KEYS: [&str; 10] = [
    "id",
    "name",
    "args",
    "kwargs",
    "type",
    "hostname",
    "time_start",
    "acknowledged",
    "delivery_info",
    "worker_pid",
];

fn python() -> PathBuf {
    std::env::var_os("CELERY_PYTHON")
        .map(PathBuf::from)
        .expect("set CELERY_PYTHON to a python that has celery[redis] (see README)")
}

/// The python of the Flower venv; `None` (the test says it is skipped) when unset.
fn flower_python() -> Option<PathBuf> {
    let py = std::env::var_os("FLOWER_PYTHON").map(PathBuf::from);
    if py.is_none() {
        eprintln!("FLOWER_PYTHON is unset: skipping this Flower test (CI sets it)");
    }
    py
}

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

fn python_command(py: &Path, redis: &TestRedis) -> Command {
    let mut cmd = Command::new(py);
    cmd.current_dir(interop_dir())
        .env("REDIS_URL", redis.url())
        .env("PYTHONDONTWRITEBYTECODE", "1");
    cmd
}

/// A unique Celery node name `<tag>-<8 hex>@tests`.
fn node(tag: &str) -> String {
    format!(
        "{tag}-{}@tests",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

fn last_json(what: &str, stdout: &str) -> Value {
    let last = stdout.lines().rfind(|l| !l.trim().is_empty());
    let last = last.unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{what} printed {last:?}: {e}"))
}

/// Runs a tools.py scenario and returns its JSON report.
fn tool(py: &Path, redis: &TestRedis, args: &[&str]) -> Value {
    let out = python_command(py, redis)
        .arg("tools.py")
        .args(args)
        .output()
        .expect("run tools.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "tools.py {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    last_json(&format!("tools.py {args:?}"), &stdout)
}

/// What one run of the `celery` CLI did.
struct Cli {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `python -m celery -A fleet ARGS` (the real CLI) in tests/interop.
fn celery(py: &Path, redis: &TestRedis, args: &[&str]) -> Cli {
    let out = python_command(py, redis)
        .args(["-m", "celery", "-A", "fleet"])
        .args(args)
        .output()
        .expect("run the celery CLI");
    Cli {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `celery inspect ARGS -j`: the replies by node (the CLI exits 0 only when a node replied).
fn inspect(py: &Path, redis: &TestRedis, args: &[&str]) -> Value {
    let mut argv = vec!["inspect"];
    argv.extend_from_slice(args);
    argv.push("-j");
    let cli = celery(py, redis, &argv);
    assert_eq!(
        cli.code,
        Some(0),
        "celery {argv:?}:\n{}\n{}",
        cli.stdout,
        cli.stderr
    );
    last_json(&format!("celery {argv:?}"), &cli.stdout)
}

/// Polls `probe` every 100 ms until it returns `Some`, or panics naming `what` after `limit`.
fn until<T>(what: &str, limit: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The Rust worker (`testkit`'s), ready once it logs `consuming queue` (consuming and on the
/// pidbox).
fn rust_worker(redis: &TestRedis, name: Option<&str>, extra: &[(&str, &str)]) -> Proc {
    let mut env = vec![("WEBHOOK_ALLOW", "127.0.0.1".to_owned())];
    if let Some(name) = name {
        env.push(("WORKER_NAME", name.to_owned()));
    }
    env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    Binaries::at(&redis.url(), env!("CARGO_BIN_EXE_worker"))
        .worker(&env)
        .proc
}

/// A Python worker as a Python fleet runs one: heartbeat, mingle and gossip on (it reads the
/// Rust worker's events and asks it `hello` at start), plus `extra` arguments (`-E`, `-Q`).
fn python_worker(py: &Path, redis: &TestRedis, name: &str, extra: &[&str]) -> Proc {
    let mut cmd = python_command(py, redis);
    cmd.args([
        "-m", "celery", "-A", "fleet", "worker", "-l", "info", "-c", "2",
    ])
    .args(["-n", name])
    .args(extra);
    Proc::spawn_command(cmd, "fleet worker ready").0
}

/// Waits for a child to exit by itself.
fn exited(proc: &mut Proc, limit: Duration) -> ExitStatus {
    until("the worker to exit", limit, || {
        proc.child.try_wait().expect("wait for the worker")
    })
}

async fn stock(redis: &TestRedis, sku: &str) -> i64 {
    shop::inventory::get_stock(&redis.manager().await, sku)
        .await
        .unwrap()
}

async fn set_stock(redis: &TestRedis, sku: &str, n: i64) {
    shop::inventory::set_stock(&redis.manager().await, sku, n)
        .await
        .unwrap();
}

async fn llen(redis: &TestRedis, key: &str) -> i64 {
    let mut conn = redis.manager().await;
    redis::cmd("LLEN")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap()
}

/// A webhook receiver that holds every request open until [`HeldHook::release`]: a
/// `send_notification` to it stays running on the worker.
struct HeldHook {
    url: String,
    arrivals: mpsc::Receiver<()>,
    hits: Arc<Mutex<usize>>,
    gate: Arc<(Mutex<bool>, Condvar)>,
}

impl HeldHook {
    fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let (tx, arrivals) = mpsc::channel();
        let hits = Arc::new(Mutex::new(0));
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let (hits2, gate2) = (hits.clone(), gate.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                let (tx, hits, gate) = (tx.clone(), hits2.clone(), gate2.clone());
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream);
                    let mut length = 0;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let lower = line.to_ascii_lowercase();
                        if let Some(v) = lower.strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let mut body = vec![0; length];
                    let _ = reader.read_exact(&mut body);
                    *hits.lock().unwrap() += 1;
                    let _ = tx.send(());
                    let (open, cv) = &*gate;
                    let guard = open.lock().unwrap();
                    let _unused = cv.wait_while(guard, |open| !*open).unwrap();
                    let _ = reader.get_mut().write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    );
                });
            }
        });
        HeldHook {
            url,
            arrivals,
            hits,
            gate,
        }
    }

    /// Waits for the next request to arrive (the task is then running).
    fn arrived(&self) {
        self.arrivals
            .recv_timeout(WAIT)
            .expect("the webhook request in time");
    }

    fn hits(&self) -> usize {
        *self.hits.lock().unwrap()
    }

    fn release(&self) {
        let (open, cv) = &*self.gate;
        *open.lock().unwrap() = true;
        cv.notify_all();
    }
}

/// A tools.py scenario running beside the test: its stderr lines are kept to be awaited, its
/// stdout (the report) read when it ends; killed with its children when dropped.
struct Background {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    stdout: Option<std::thread::JoinHandle<String>>,
}

impl Background {
    fn start(py: &Path, redis: &TestRedis, args: &[&str]) -> Self {
        use std::os::unix::process::CommandExt;
        let mut child = python_command(py, redis)
            .arg("tools.py")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("start tools.py");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (err, kept) = (child.stderr.take().unwrap(), lines.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                kept.lock().unwrap().push(line);
            }
        });
        let mut out = child.stdout.take().unwrap();
        let stdout = Some(std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        }));
        Background {
            child,
            lines,
            stdout,
        }
    }

    /// Waits until some stderr line so far contains `needle`.
    fn line(&self, needle: &str) {
        until(&format!("tools.py to print {needle:?}"), WAIT, || {
            let lines = self.lines.lock().unwrap();
            lines.iter().any(|l| l.contains(needle)).then_some(())
        })
    }

    /// Waits for the scenario to end by itself and returns its report.
    fn report(mut self) -> Value {
        let status = until("tools.py to finish", Duration::from_secs(180), || {
            self.child.try_wait().unwrap()
        });
        let stdout = self.stdout.take().unwrap().join().unwrap();
        let stderr = self.lines.lock().unwrap().join("\n");
        assert!(status.success(), "tools.py failed:\n{stdout}\n{stderr}");
        last_json("tools.py", &stdout)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("the host name")
        .trim()
        .to_owned()
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|v| {
            v.as_str()
                .unwrap_or_else(|| panic!("not an id: {v}"))
                .to_owned()
        })
        .collect()
}

/// A mixed fleet: the Rust worker (queue `rust`, so which worker runs a task is never left to
/// chance) and a Python worker (queue `celery`), with their node names.
struct Fleet {
    rust: Proc,
    rust_name: String,
    _python: Proc,
    py_name: String,
}

fn fleet(py: &Path, redis: &TestRedis, rust_env: &[(&str, &str)], py_args: &[&str]) -> Fleet {
    let rust_name = node("rust");
    let mut env = vec![("CELERY_QUEUE", "rust")];
    env.extend_from_slice(rust_env);
    let rust = rust_worker(redis, Some(&rust_name), &env);
    let py_name = node("py");
    let python = python_worker(py, redis, &py_name, py_args);
    Fleet {
        rust,
        rust_name,
        _python: python,
        py_name,
    }
}

/// Replies as one object by node, whether printed as one object or as a list of them.
fn merged(replies: Value) -> Value {
    match replies {
        Value::Array(list) => Value::Object(
            list.into_iter()
                .flat_map(|r| r.as_object().cloned().unwrap_or_default())
                .collect(),
        ),
        other => other,
    }
}

/// Keys of a JSON object, sorted.
fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect();
    k.sort();
    k
}

// ---------------------------------------------------------------------------------------------
// celery inspect / control

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs CELERY_PYTHON, a python with celery[redis]; CI runs it for Celery 5.4 and 5.7"]
async fn inspect_ping_reaches_the_rust_worker_beside_a_python_one() {
    let py = python();
    let redis = TestRedis::start();
    // `%h` is Celery's host-name placeholder in node names.
    let tag = format!("rust-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let rust_name = format!("{tag}@{}", host_name());
    let _rust = rust_worker(&redis, Some(&format!("{tag}@%h")), &[]);
    let py_name = node("py");
    let _python = python_worker(&py, &redis, &py_name, &[]);

    let all = inspect(&py, &redis, &["ping", "-t", "2"]);
    assert_eq!(all[&rust_name], json!({"ok": "pong"}), "{all}");
    assert_eq!(all[&py_name], json!({"ok": "pong"}), "{all}");
    assert_eq!(keys(&all).len(), 2, "{all}");

    let one = inspect(&py, &redis, &["ping", "-d", &rust_name]);
    assert_eq!(one, json!({ &rust_name: {"ok": "pong"} }));
    let other = inspect(&py, &redis, &["ping", "-d", &py_name]);
    assert_eq!(keys(&other), vec![py_name.clone()], "{other}");

    let status = celery(&py, &redis, &["status", "-j", "-t", "2"]);
    assert_eq!(status.code, Some(0), "{}", status.stderr);
    assert!(status.stdout.contains(&rust_name), "{}", status.stdout);
    assert!(
        status.stdout.contains("2 nodes online"),
        "{}",
        status.stdout
    );

    // Node-name patterns (only the Python API sends them): a broadcast collected for the whole
    // timeout, so a node answering outside the pattern would show.
    let rust_only = tool(&py, &redis, &["inspect-pattern", &format!("{tag}@*")]);
    assert_eq!(rust_only["ping"], json!({ &rust_name: {"ok": "pong"} }));
    let py_only = tool(&py, &redis, &["inspect-pattern", "py-*"]);
    assert_eq!(keys(&py_only["ping"]), vec![py_name], "{py_only}");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs CELERY_PYTHON, a python with celery[redis]; CI runs it for Celery 5.4 and 5.7"]
async fn inspect_stats_registered_active_queues_conf_and_clock_of_the_rust_worker() {
    let py = python();
    let redis = TestRedis::start();
    set_stock(&redis, "A", 100).await;
    let f = fleet(&py, &redis, &[], &[]);
    let (rust, python) = (f.rust_name.as_str(), f.py_name.as_str());
    let done = tool(
        &py,
        &redis,
        &["send-order", "st-1", "--queue", "rust", "--wait"],
    );
    assert_eq!(done["outcome"]["state"], "SUCCESS", "{done}");

    let stats = inspect(&py, &redis, &["stats", "-t", "2"]);
    assert!(stats[python].is_object(), "{stats}");
    let s = &stats[rust];
    // The order also chains its confirmation (send_notification), which may still be on its way.
    assert_eq!(s["total"]["process_order"], 1, "stats: {s}");
    let counts = s["total"]
        .as_object()
        .unwrap_or_else(|| panic!("stats: {s}"));
    assert!(counts.values().all(Value::is_u64), "stats: {s}");
    assert!(s["broker"].is_object(), "Flower iterates stats.broker: {s}");
    assert_eq!(s["pid"], json!(f.rust.child.id()), "stats: {s}");
    let clock = s["clock"]
        .as_str()
        .unwrap_or_else(|| panic!("clock is a string: {s}"));
    assert!(clock.parse::<u64>().is_ok(), "clock {clock:?}");
    assert!(s["uptime"].is_number(), "stats: {s}");
    assert!(s["pool"].is_object(), "Flower iterates stats.pool: {s}");
    for optional in ["prefetch_count", "rusage"] {
        if let Some(v) = s.get(optional) {
            assert!(v.is_number() || v.is_object(), "{optional}: {v}");
        }
    }

    let registered = inspect(&py, &redis, &["registered", "-t", "2"]);
    assert_eq!(registered[rust], json!(REGISTERED), "{registered}");
    assert!(registered[python].is_array(), "{registered}");

    let queues = inspect(&py, &redis, &["active_queues", "-t", "2"]);
    let mine = queues[rust]
        .as_array()
        .unwrap_or_else(|| panic!("{queues}"));
    assert_eq!(mine.len(), 1, "{queues}");
    let q = &mine[0];
    assert_eq!(q["name"], "rust", "{q}");
    assert_eq!(q["routing_key"], "rust", "{q}");
    assert!(q["exchange"]["name"].is_string(), "{q}");
    assert!(q["exchange"]["type"].is_string(), "{q}");
    // Flower's worker page reads each of these with [] (a missing one is a 500).
    let flower_reads = [
        "name",
        "exclusive",
        "durable",
        "routing_key",
        "no_ack",
        "alias",
        "queue_arguments",
        "binding_arguments",
        "auto_delete",
    ];
    for key in flower_reads {
        assert!(
            q.get(key).is_some(),
            "active_queues entry has no {key}: {q}"
        );
    }
    let theirs = &queues[python][0];
    let missing: Vec<String> = keys(theirs)
        .into_iter()
        .filter(|k| q.get(k).is_none())
        .collect();
    assert!(missing.is_empty(), "keys Python has, Rust not: {missing:?}");

    let conf = inspect(&py, &redis, &["conf", "-d", rust]);
    assert!(conf[rust].is_object(), "{conf}");
    let clock = inspect(&py, &redis, &["clock", "-d", rust]);
    assert!(clock[rust]["clock"].as_u64().unwrap_or(0) > 0, "{clock}");

    let unknown = uuid::Uuid::new_v4().to_string();
    let query = inspect(&py, &redis, &["query_task", &unknown, "-t", "2"]);
    assert_eq!(query[rust], json!({}), "unknown ids are left out: {query}");
    assert_eq!(query[python], json!({}), "{query}");

    for (command, word) in [("enable_events", "enabled"), ("disable_events", "disabled")] {
        let cli = celery(&py, &redis, &["control", command, "-d", rust, "-j"]);
        assert_eq!(cli.code, Some(0), "{}\n{}", cli.stdout, cli.stderr);
        // Celery 5.4 prints the replies as a list of one-node objects, 5.7 as one object.
        let reply = merged(last_json(command, &cli.stdout));
        let ok = reply[rust]["ok"].as_str().unwrap_or_default();
        assert!(
            ok.starts_with("task events") && ok.contains(word),
            "{reply}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs CELERY_PYTHON, a python with celery[redis]; CI runs it for Celery 5.4 and 5.7"]
async fn control_rate_limit_and_time_limit_answer_as_a_python_worker_does() {
    let py = python();
    let redis = TestRedis::start();
    let f = fleet(&py, &redis, &[], &[]);
    let (rust, python) = (f.rust_name.as_str(), f.py_name.as_str());
    let commands: [&[&str]; 8] = [
        &["rate_limit", "process_order", "1/m"],
        &["rate_limit", "process_order", "0"],
        &["rate_limit", "process_order", "abc"],
        &["rate_limit", "process_order", "10/x"],
        &["rate_limit", "no_such_task", "1/m"],
        &["time_limit", "process_order", "10", "20"],
        &["time_limit", "process_order", "10"],
        &["time_limit", "no_such_task", "10"],
    ];
    for command in commands {
        let mut argv = vec!["control"];
        argv.extend_from_slice(command);
        argv.extend_from_slice(&["-j", "-t", "2"]);
        let cli = celery(&py, &redis, &argv);
        let reply = merged(last_json(&format!("celery {argv:?}"), &cli.stdout));
        assert!(
            reply[rust].is_object(),
            "{command:?}: {reply}\n{}",
            cli.stderr
        );
        assert_eq!(reply[rust], reply[python], "{command:?}: {reply}");
        if command == ["rate_limit", "process_order", "1/m"] {
            assert_eq!(
                reply[rust],
                json!({"ok": "new rate limit set successfully"})
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs CELERY_PYTHON, a python with celery[redis]; CI runs it for Celery 5.4 and 5.7"]
async fn inspect_active_and_query_task_show_a_task_running_on_the_rust_worker() {
    let py = python();
    let redis = TestRedis::start();
    let f = fleet(&py, &redis, &[], &[]);
    let (rust, python) = (f.rust_name.as_str(), f.py_name.as_str());
    let hook = HeldHook::start();
    let sent = tool(
        &py,
        &redis,
        &[
            "send-note",
            "held-active",
            "--url",
            &hook.url,
            "--queue",
            "rust",
        ],
    );
    let id = sent["id"].as_str().unwrap().to_owned();
    hook.arrived();

    let active = inspect(&py, &redis, &["active", "-t", "2"]);
    assert_eq!(active[python], json!([]), "{active}");
    let list = active[rust]
        .as_array()
        .unwrap_or_else(|| panic!("{active}"));
    assert_eq!(list.len(), 1, "{active}");
    let t = &list[0];
    assert_eq!(t["id"], id.as_str(), "{t}");
    assert_eq!(t["name"], "send_notification", "{t}");
    assert_eq!(t["kwargs"]["notification_id"], "held-active", "{t}");
    assert!(t["args"].is_array(), "{t}");
    assert_eq!(t["hostname"], rust, "{t}");
    assert!(t["time_start"].as_f64().unwrap_or(0.0) > 1.0e9, "{t}");
    assert!(t["acknowledged"].is_boolean(), "{t}");
    assert!(t["worker_pid"].is_u64(), "{t}");
    assert_eq!(t["delivery_info"]["routing_key"], "rust", "{t}");
    for key in REQUEST_KEYS {
        assert!(t.get(key).is_some(), "active entry has no {key}: {t}");
    }
    for key in ["exchange", "priority", "redelivered"] {
        assert!(
            t["delivery_info"].get(key).is_some(),
            "no delivery_info.{key}: {t}"
        );
    }

    let query = inspect(&py, &redis, &["query_task", &id, "-t", "2"]);
    assert_eq!(query[rust][&id][0], "active", "{query}");
    assert_eq!(query[rust][&id][1]["id"], id.as_str(), "{query}");
    assert_eq!(query[python], json!({}), "{query}");

    hook.release();
    let done = tool(&py, &redis, &["wait", &id]);
    assert_eq!(done[&id]["state"], "SUCCESS", "{done}");
    until("the Rust worker's active list to empty", WAIT, || {
        let now = inspect(&py, &redis, &["active", "-d", rust]);
        (now[rust] == json!([])).then_some(())
    });
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs CELERY_PYTHON, a python with celery[redis]; CI runs it for Celery 5.4 and 5.7"]
async fn inspect_scheduled_reserved_and_revoked_with_a_countdown_task_on_the_rust_worker() {
    let py = python();
    let redis = TestRedis::start();
    set_stock(&redis, "S", 10).await;
    let f = fleet(&py, &redis, &[], &[]);
    let (rust, python) = (f.rust_name.as_str(), f.py_name.as_str());
    let sent = tool(
        &py,
        &redis,
        &[
            "send-order",
            "sched-1",
            "--sku",
            "S",
            "--queue",
            "rust",
            "--countdown",
            "300",
        ],
    );
    let id = sent["id"].as_str().unwrap().to_owned();
    let started = time::OffsetDateTime::now_utc();

    let scheduled = until("the Rust worker to list the countdown task", WAIT, || {
        let r = inspect(&py, &redis, &["scheduled", "-d", rust]);
        (r[rust].as_array().is_some_and(|l| !l.is_empty())).then_some(r)
    });
    let list = scheduled[rust].as_array().unwrap();
    assert_eq!(list.len(), 1, "{scheduled}");
    let entry = &list[0];
    assert!(entry["priority"].is_i64(), "{entry}");
    assert_eq!(entry["request"]["id"], id.as_str(), "{entry}");
    assert_eq!(entry["request"]["name"], "process_order", "{entry}");
    assert_eq!(entry["request"]["kwargs"]["order_id"], "sched-1", "{entry}");
    for key in REQUEST_KEYS {
        assert!(
            entry["request"].get(key).is_some(),
            "no request.{key}: {entry}"
        );
    }
    let eta = entry["eta"].as_str().unwrap_or_else(|| panic!("{entry}"));
    let eta =
        time::OffsetDateTime::parse(eta, &time::format_description::well_known::Iso8601::DEFAULT)
            .unwrap_or_else(|e| panic!("eta {eta:?} is not ISO 8601: {e}"));
    let ahead = (eta - started).whole_seconds();
    assert!((280..=302).contains(&ahead), "eta {ahead}s ahead, not 300");

    let reserved = inspect(&py, &redis, &["reserved", "-t", "2"]);
    assert_eq!(reserved[rust], json!([]), "{reserved}");
    assert_eq!(reserved[python], json!([]), "{reserved}");
    let query = inspect(&py, &redis, &["query_task", &id, "-t", "2"]);
    assert_eq!(query[rust][&id][0], "scheduled", "{query}");
    assert_eq!(query[rust][&id][1]["id"], id.as_str(), "{query}");

    tool(&py, &redis, &["revoke", &id]);
    until("both workers to list the revoked id", WAIT, || {
        let r = inspect(&py, &redis, &["revoked", "-t", "2"]);
        let both = [rust, python]
            .iter()
            .all(|n| r[*n].is_array() && ids(&r[*n]).contains(&id));
        both.then_some(())
    });
    let state = tool(&py, &redis, &["wait-states", "REVOKED", &id]);
    assert_eq!(state[&id], "REVOKED", "{state}");
    assert_eq!(stock(&redis, "S").await, 10);
}

// ---------------------------------------------------------------------------------------------
// revoke

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs CELERY_PYTHON, a python with celery[redis]; CI runs it for Celery 5.4 and 5.7"]
async fn a_countdown_task_revoked_before_its_eta_never_runs_on_the_rust_worker() {
    let py = python();
    let redis = TestRedis::start();
    set_stock(&redis, "E", 5).await;
    let name = node("rust");
    let _worker = rust_worker(&redis, Some(&name), &[("WORKER_CONCURRENCY", "1")]);
    let sent = tool(
        &py,
        &redis,
        &[
            "send-order",
            "early-1",
            "--sku",
            "E",
            "--qty",
            "2",
            "--countdown",
            "5",
        ],
    );
    let id = sent["id"].as_str().unwrap().to_owned();
    until("the worker to park the countdown task", WAIT, || {
        let r = inspect(&py, &redis, &["scheduled", "-d", &name]);
        r[&name].to_string().contains(&id).then_some(())
    });
    tool(&py, &redis, &["revoke", &id]);
    // Due after the revoked one: once it ran, the revoked one's eta had long passed.
    let sentinel = tool(
        &py,
        &redis,
        &[
            "send-order",
            "early-2",
            "--sku",
            "E",
            "--countdown",
            "7",
            "--wait",
        ],
    );
    assert_eq!(sentinel["outcome"]["state"], "SUCCESS", "{sentinel}");
    assert_eq!(stock(&redis, "E").await, 4, "only the sentinel took stock");
    let state = tool(&py, &redis, &["states", &id]);
    assert_eq!(state[&id], "REVOKED", "{state}");
    let scheduled = inspect(&py, &redis, &["scheduled", "-d", &name]);
    assert_eq!(scheduled[&name], json!([]), "{scheduled}");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs CELERY_PYTHON, a python with celery[redis]; CI runs it for Celery 5.4 and 5.7"]
async fn revoke_terminate_stops_a_task_running_on_the_rust_worker() {
    let py = python();
    let redis = TestRedis::start();
    let name = node("rust");
    let _worker = rust_worker(&redis, Some(&name), &[("WEBHOOK_TIMEOUT_MS", "600000")]);
    let hook = HeldHook::start();
    let sent = tool(&py, &redis, &["send-note", "term-1", "--url", &hook.url]);
    let id = sent["id"].as_str().unwrap().to_owned();
    hook.arrived();

    tool(&py, &redis, &["revoke", &id, "--terminate"]);
    let state = tool(&py, &redis, &["wait-states", "REVOKED", &id]);
    assert_eq!(state[&id], "REVOKED", "{state}");
    // Stopped: no longer active while the webhook still holds its request.
    until("the terminated task to leave the active list", WAIT, || {
        let r = inspect(&py, &redis, &["active", "-d", &name]);
        (r[&name] == json!([])).then_some(())
    });
    hook.release();
    let after = tool(&py, &redis, &["send-note", "term-after", "--wait"]);
    assert_eq!(
        after["outcome"]["state"], "SUCCESS",
        "the worker goes on: {after}"
    );
    let state = tool(&py, &redis, &["states", &id]);
    assert_eq!(state[&id], "REVOKED", "not overwritten: {state}");
    assert_eq!(hook.hits(), 1, "a terminated task is not retried");
    let revoked = inspect(&py, &redis, &["revoked", "-d", &name]);
    assert!(ids(&revoked[&name]).contains(&id), "{revoked}");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs CELERY_PYTHON, a python with celery[redis]; CI runs it for Celery 5.4 and 5.7"]
async fn a_revoke_outlives_a_rust_worker_restart() {
    let py = python();
    let redis = TestRedis::start();
    set_stock(&redis, "R", 10).await;
    // Default node names: a restarted worker has a new one, as in a real deployment.
    let first = rust_worker(&redis, None, &[]);
    let id = uuid::Uuid::new_v4().to_string();
    tool(&py, &redis, &["revoke", &id]);
    until("the worker to list the revoked id", WAIT, || {
        let r = inspect(&py, &redis, &["revoked"]);
        r.to_string().contains(&id).then_some(())
    });
    assert!(first.terminate().success());

    tool(
        &py,
        &redis,
        &[
            "send-order",
            "restart-revoked",
            "--sku",
            "R",
            "--qty",
            "3",
            "--task-id",
            &id,
        ],
    );
    let sentinel = tool(
        &py,
        &redis,
        &["send-order", "restart-sentinel", "--sku", "R"],
    );
    let _second = rust_worker(&redis, None, &[("WORKER_CONCURRENCY", "1")]);
    let sid = sentinel["id"].as_str().unwrap();
    let done = tool(&py, &redis, &["wait", sid]);
    assert_eq!(done[sid]["state"], "SUCCESS", "{done}");
    assert_eq!(llen(&redis, "celery").await, 0);
    assert_eq!(stock(&redis, "R").await, 9, "only the sentinel took stock");
    let state = tool(&py, &redis, &["states", &id]);
    assert_eq!(state[&id], "REVOKED", "{state}");
    let revoked = inspect(&py, &redis, &["revoked"]);
    assert!(
        revoked.to_string().contains(&id),
        "the new worker lists the remembered id: {revoked}"
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs CELERY_PYTHON, a python with celery[redis]; CI runs it for Celery 5.4 and 5.7"]
async fn a_python_and_a_rust_worker_both_honour_a_revoke_from_a_python_client() {
    let py = python();
    let redis = TestRedis::start();
    set_stock(&redis, "A", 100).await;
    let f = fleet(
        &py,
        &redis,
        &[("WORKER_SEND_TASK_EVENTS", "true")],
        &["-E", "-Q", "celery"],
    );
    let (rust, python) = (f.rust_name.as_str(), f.py_name.as_str());
    let r = tool(&py, &redis, &["revoke-both", "5", "rust", "celery"]);
    assert_eq!(r["receiver_errors"], json!([]), "{r}");
    let replies = r["replies"].as_array().unwrap();
    let mut repliers: Vec<String> = replies.iter().flat_map(keys).collect();
    repliers.sort();
    let mut both = vec![rust.to_owned(), python.to_owned()];
    both.sort();
    assert_eq!(repliers, both, "revoke(reply=True): {replies:?}");
    for reply in replies {
        for v in reply.as_object().unwrap().values() {
            assert!(v["ok"].is_string(), "{reply}");
        }
    }
    for (side, who) in [("rust", rust), ("python", python)] {
        for id in ids(&r["ids"][side]) {
            assert_eq!(r["refused_by"][&id], json!([who]), "{id}: {r}");
            assert_eq!(r["states"][&id], "REVOKED", "{id}: {r}");
        }
    }
    assert_eq!(r["ran"], json!([]), "{r}");
    assert_eq!(r["sentinels"]["rust"]["state"], "SUCCESS", "{r}");
    assert_eq!(r["sentinels"]["python"]["state"], "SUCCESS", "{r}");
    assert_eq!(
        stock(&redis, "A").await,
        99,
        "only the Rust sentinel took stock"
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs CELERY_PYTHON, a python with celery[redis]; CI runs it for Celery 5.4 and 5.7"]
async fn a_python_worker_learns_revoked_ids_from_the_rust_worker_at_mingle() {
    let py = python();
    let redis = TestRedis::start();
    let rust = node("rust");
    let _worker = rust_worker(&redis, Some(&rust), &[]);
    let id = uuid::Uuid::new_v4().to_string();
    let r = tool(&py, &redis, &["revoke", &id, "--control"]);
    assert!(r["replies"][0][&rust]["ok"].is_string(), "{r}");
    // Started now, it asks the fleet `hello` and merges the revoked ids of the replies.
    let py_name = node("py");
    let _python = python_worker(&py, &redis, &py_name, &[]);
    let revoked = inspect(&py, &redis, &["revoked", "-d", &py_name]);
    assert!(
        ids(&revoked[&py_name]).contains(&id),
        "the Python worker did not learn the id from the Rust worker's hello reply: {revoked}"
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs CELERY_PYTHON, a python with celery[redis]; CI runs it for Celery 5.4 and 5.7"]
async fn control_shutdown_stops_the_rust_worker_gracefully_after_its_running_task() {
    let py = python();
    let redis = TestRedis::start();
    let mut f = fleet(&py, &redis, &[("WORKER_SHUTDOWN_TIMEOUT_SECS", "120")], &[]);
    let (rust, python) = (f.rust_name.clone(), f.py_name.clone());
    let hook = HeldHook::start();
    let sent = tool(
        &py,
        &redis,
        &[
            "send-note",
            "in-flight",
            "--url",
            &hook.url,
            "--queue",
            "rust",
        ],
    );
    let id = sent["id"].as_str().unwrap().to_owned();
    hook.arrived();

    let cli = celery(&py, &redis, &["control", "shutdown", "-d", &rust]);
    assert_eq!(
        cli.code,
        Some(69),
        "as with Python:\n{}\n{}",
        cli.stdout,
        cli.stderr
    );
    assert!(cli.stderr.contains("No nodes replied"), "{}", cli.stderr);
    assert!(
        f.rust.child.try_wait().unwrap().is_none(),
        "the worker waits for its running task"
    );
    let later = tool(
        &py,
        &redis,
        &["send-note", "after-shutdown", "--queue", "rust"],
    );
    hook.release();
    let status = exited(&mut f.rust, WAIT);
    assert!(status.success(), "graceful exit: {status:?}");
    let done = tool(&py, &redis, &["states", &id]);
    assert_eq!(done[&id], "SUCCESS", "the task in flight finished: {done}");

    let ping = inspect(&py, &redis, &["ping", "-t", "2"]);
    assert_eq!(keys(&ping), vec![python], "only the Python worker is left");
    // Nothing lost: what was sent meanwhile is still there for the next worker.
    let _next = rust_worker(&redis, None, &[("CELERY_QUEUE", "rust")]);
    let lid = later["id"].as_str().unwrap();
    let done = tool(&py, &redis, &["wait", lid]);
    assert_eq!(done[lid]["state"], "SUCCESS", "{done}");
}

// ---------------------------------------------------------------------------------------------
// events

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs CELERY_PYTHON, a python with celery[redis]; CI runs it for Celery 5.4 and 5.7"]
async fn celery_events_and_an_event_receiver_read_every_event_of_the_rust_worker() {
    let py = python();
    let redis = TestRedis::start();
    set_stock(&redis, "A", 100).await;
    let name = node("rust");
    let listener = Background::start(&py, &redis, &["events", &name]);
    listener.line("tools: listening");
    let worker = rust_worker(&redis, Some(&name), &[("WORKER_SEND_TASK_EVENTS", "true")]);
    listener.line("event worker-online");
    let ok = tool(&py, &redis, &["send-order", "ev-ok", "--wait"]);
    let failed = tool(
        &py,
        &redis,
        &["send-order", "ev-bad", "--qty", "0", "--wait"],
    );
    let note = tool(&py, &redis, &["send-note", "ev-note", "--wait"]);
    let revoked = tool(
        &py,
        &redis,
        &["send-order", "ev-revoked", "--countdown", "2"],
    );
    let id = |r: &Value| r["id"].as_str().unwrap().to_owned();
    let (ok, failed, note, revoked) = (id(&ok), id(&failed), id(&note), id(&revoked));
    tool(&py, &redis, &["revoke", &revoked]);
    listener.line("event task-revoked");
    listener.line("event worker-heartbeat");
    assert!(worker.terminate().success());
    let r = listener.report();

    assert_eq!(r["offline_seen"], true, "{r}");
    assert_eq!(r["receiver_errors"], json!([]), "{r}");
    assert_eq!(r["problems"], json!([]), "{r}");
    let types = ids(&r["types"]);
    assert_eq!(
        types.first().map(String::as_str),
        Some("worker-online"),
        "{types:?}"
    );
    assert_eq!(
        types.last().map(String::as_str),
        Some("worker-offline"),
        "{types:?}"
    );
    let sequence = |id: &str| ids(&r["tasks"][id]);
    assert_eq!(
        sequence(&ok),
        ["task-received", "task-started", "task-succeeded"],
        "{r}"
    );
    assert_eq!(
        sequence(&failed),
        ["task-received", "task-started", "task-failed"],
        "{r}"
    );
    assert_eq!(
        sequence(&note),
        ["task-received", "task-started", "task-succeeded"],
        "{r}"
    );
    let gone = sequence(&revoked);
    assert_eq!(gone.last().map(String::as_str), Some("task-revoked"), "{r}");
    assert!(!gone.iter().any(|t| t == "task-started"), "{r}");
    // What Celery's State (Flower's model) makes of them.
    let states = &r["task_states"];
    assert_eq!(states[&ok], "SUCCESS", "{r}");
    assert_eq!(states[&failed], "FAILURE", "{r}");
    assert_eq!(states[&note], "SUCCESS", "{r}");
    assert_eq!(states[&revoked], "REVOKED", "{r}");
    assert_eq!(r["task_names"][&ok], "process_order", "{r}");
    assert_eq!(r["task_names"][&note], "send_notification", "{r}");
    assert!(
        r["task_results"][&ok]
            .as_str()
            .unwrap_or_default()
            .contains("'confirmed'"),
        "{r}"
    );
    assert!(
        r["task_exceptions"][&failed]
            .as_str()
            .unwrap_or_default()
            .contains("ValueError"),
        "{r}"
    );
    let freqs = r["heartbeat_freqs"].as_array().unwrap();
    assert!(
        freqs.len() == 1 && freqs[0].as_f64() == Some(2.0),
        "heartbeats every 2 s: {r}"
    );
    for entry in r["alive"].as_array().unwrap() {
        let alive = entry[0] != "worker-offline";
        assert_eq!(entry[1], alive, "Celery's State after {entry}: {r}");
    }
    let dump = ids(&r["dump"]).join("\n");
    for kind in [
        "started:",
        "heartbeat:",
        "task received:",
        "task started:",
        "task succeeded:",
        "task failed:",
        "task revoked:",
        "shutdown:",
    ] {
        assert!(
            dump.contains(kind),
            "celery events --dump printed no {kind}\n{dump}"
        );
    }
    assert!(
        !r["dump_stderr"].as_str().unwrap().contains("Traceback"),
        "{}",
        r["dump_stderr"]
    );
}

// ---------------------------------------------------------------------------------------------
// Flower

struct Flower {
    _proc: Proc,
    base: String,
    http: reqwest::Client,
}

fn flower(py: &Path, redis: &TestRedis) -> Flower {
    let port = free_port();
    let mut cmd = python_command(py, redis);
    cmd.args(["-m", "celery", "-A", "fleet", "flower"])
        .arg(format!("--port={port}"))
        .arg("--address=127.0.0.1")
        .env("FLOWER_UNAUTHENTICATED_API", "true");
    let proc = Proc::spawn_command(cmd, "Visit me at").0;
    Flower {
        _proc: proc,
        base: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::new(),
    }
}

impl Flower {
    async fn get(&self, path: &str) -> (u16, String) {
        let res = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = res.status().as_u16();
        (status, res.text().await.unwrap())
    }

    async fn json(&self, path: &str) -> Value {
        let (status, body) = self.get(path).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    /// Polls `path` until `check` accepts the JSON, or panics after `limit` with the last one.
    async fn until(&self, path: &str, limit: Duration, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let v = self.json(path).await;
            if check(&v) {
                return v;
            }
            assert!(Instant::now() < deadline, "GET {path} never matched: {v}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs FLOWER_PYTHON, a python with requirements-flower.txt; CI runs it with Celery 5.7"]
async fn flower_shows_the_rust_worker_with_its_stats_online_then_offline() {
    let Some(py) = flower_python() else { return };
    let redis = TestRedis::start();
    let name = node("rust");
    let worker = rust_worker(&redis, Some(&name), &[]);
    let pid = worker.child.id();
    let fl = flower(&py, &redis);

    let workers = fl
        .until("/api/workers?refresh=1", WAIT, |v| {
            v[&name]["stats"].is_object()
        })
        .await;
    let w = &workers[&name];
    assert!(w["stats"]["total"].is_object(), "{w}");
    assert!(w["stats"]["broker"].is_object(), "{w}");
    assert_eq!(w["stats"]["pid"], json!(pid), "{w}");
    assert_eq!(w["registered"], json!(REGISTERED), "{w}");
    assert_eq!(w["active_queues"][0]["name"], "celery", "{w}");
    assert!(w["conf"].is_object(), "{w}");

    // Named, Flower asks eight things at once, the task lists too.
    let one = fl
        .json(&format!("/api/workers?refresh=1&workername={name}"))
        .await;
    for list in ["active", "reserved", "scheduled", "revoked"] {
        assert_eq!(one[&name][list], json!([]), "{list}: {one}");
    }
    // The worker page renders stats, queues, counters and the running and scheduled tasks (a
    // missing key is a 500 there).
    let hook = HeldHook::start();
    let held = tool(&py, &redis, &["send-note", "fl-held", "--url", &hook.url]);
    hook.arrived();
    let later = tool(
        &py,
        &redis,
        &["send-note", "fl-later", "--countdown", "300"],
    );
    let (held, later) = (held["id"].as_str().unwrap(), later["id"].as_str().unwrap());
    let named = format!("/api/workers?refresh=1&workername={name}");
    fl.until(&named, WAIT, |v| {
        v[&name]["active"].to_string().contains(held)
            && v[&name]["scheduled"].to_string().contains(later)
    })
    .await;
    let (status, page) = fl.get(&format!("/worker/{name}")).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains(held) && page.contains(later), "{page}");
    hook.release();
    let done = tool(&py, &redis, &["wait", held]);
    assert_eq!(done[held]["state"], "SUCCESS", "{done}");

    fl.until("/api/workers?status=1", WAIT, |v| v[&name] == true)
        .await;
    assert!(worker.terminate().success());
    fl.until("/api/workers?status=1", Duration::from_secs(15), |v| {
        v[&name] == false
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs FLOWER_PYTHON, a python with requirements-flower.txt; CI runs it with Celery 5.7"]
async fn flower_lists_the_tasks_the_rust_worker_ran_with_their_final_states() {
    let Some(py) = flower_python() else { return };
    let redis = TestRedis::start();
    set_stock(&redis, "A", 100).await;
    let name = node("rust");
    // Task events off: Flower's own enable_events casts (every 5 s) must switch them on.
    let _worker = rust_worker(&redis, Some(&name), &[]);
    let fl = flower(&py, &redis);
    fl.until("/api/workers?status=1", WAIT, |v| v[&name] == true)
        .await;
    let deadline = Instant::now() + WAIT;
    for n in 0.. {
        let probe = tool(&py, &redis, &["send-note", &format!("probe-{n}"), "--wait"]);
        let id = probe["id"].as_str().unwrap().to_owned();
        let seen = Instant::now() + Duration::from_secs(2);
        let mut found = false;
        while !found && Instant::now() < seen {
            found = fl.json("/api/tasks").await.get(&id).is_some();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if found {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Flower's enable_events never switched the worker's task events on"
        );
    }

    let ok = tool(&py, &redis, &["send-order", "fl-ok", "--wait"]);
    let bad = tool(
        &py,
        &redis,
        &["send-order", "fl-bad", "--qty", "0", "--wait"],
    );
    let note = tool(&py, &redis, &["send-note", "fl-note", "--wait"]);
    let expect: Vec<(String, &str, &str)> = [
        (ok, "SUCCESS", "process_order"),
        (bad, "FAILURE", "process_order"),
        (note, "SUCCESS", "send_notification"),
    ]
    .into_iter()
    .map(|(r, s, n)| (r["id"].as_str().unwrap().to_owned(), s, n))
    .collect();
    let tasks = fl
        .until("/api/tasks", WAIT, |v| {
            expect.iter().all(|(id, state, _)| v[id]["state"] == *state)
        })
        .await;
    for (id, _, task) in &expect {
        assert_eq!(tasks[id]["name"], *task, "{}", tasks[id]);
        assert_eq!(tasks[id]["worker"], name.as_str(), "{}", tasks[id]);
    }
    let info = fl.json(&format!("/api/task/info/{}", expect[1].0)).await;
    assert!(
        info["exception"]
            .as_str()
            .unwrap_or_default()
            .contains("ValueError"),
        "{info}"
    );
    let info = fl.json(&format!("/api/task/info/{}", expect[0].0)).await;
    assert!(
        info["result"]
            .as_str()
            .unwrap_or_default()
            .contains("confirmed"),
        "{info}"
    );
    assert!(info["runtime"].is_number(), "{info}");
}
