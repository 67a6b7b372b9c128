//! `cargo bench -p worker --bench stack`: the stack measured against Python Celery in one run,
//! on the same machine and the same (private) redis-server. Not a test: it prints one table.
//!
//! 1. enqueue rate through the `celery_redis` producer API, one at a time and in pipelined batches;
//! 2. drain rate: N `process_order` tasks queued, then a worker at concurrency 1, 8 and 64 (the
//!    highest again with task events on, with the notifications routed to a second queue, and
//!    with a replica and `REDIS_WAIT_REPLICAS=1`);
//! 3. round trip submit -> result through the result backend's pub/sub, p50/p99/max;
//! 4. `POST /orders` throughput, latency and Redis CPU per request at 1, 16 and 64 connections
//!    (own tokio client);
//! 5. peak RSS of the worker and of each service under that load;
//! 6. workloads 1-3 run by Python Celery 5.7 in a venv it creates, its drain in four worker
//!    configurations (prefork 2 and 4, threads 8, two processes of threads 2), the best compared;
//! 7. the floor (`floor.rs`): the plain commands of the drain's orders sent pipelined, no Lua.
//!
//! Knobs: BENCH_DRAIN_TASKS (default 20000), BENCH_REPS (3), BENCH_HTTP_SECS (5), and
//! BENCH_ONLY, a comma-separated subset of `enqueue,drain,floor,roundtrip,http,celery` (default: all),
//! for profiling one workload at a time; BENCH_CONCURRENCY, the worker concurrencies the drain
//! runs at (default `1,8,64`); BENCH_COMMANDSTATS=1 prints Redis's per-command counts and
//! times per order for each drain and floor run; `=scripts` adds each script's calls and time
//! (from a slow log of every command, which costs Redis CPU of its own: not for CPU figures).
//! BENCH_WORKER runs another build's worker binary (an A/B under one bench build; its services
//! are looked for beside it), BENCH_WORKER_UNDER a program and arguments it is started under
//! (`instructions.sh` beside this file runs it under cachegrind).
//!
//! Each cost row is also printed against `baseline.json` (beside this file): the cost per order
//! of a recorded commit on the development machine, so a cost that creeps in over many changes
//! shows, not only one against the commit before it; and when the floor ran too, the drain's
//! cost against this run's floor beside the baseline's, a ratio that carries from one host to
//! another where µs do not (`stack/baseline.rs`). Update it when a change moves the cost on
//! purpose (docs/performance.md says how it was measured).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use celery_redis::broker::Broker;
use celery_redis::protocol::TaskMessage;
use futures_util::StreamExt;
use serde_json::{json, Map, Value};
use testkit::{Proc, Stack, TestRedis};
use tokio::sync::mpsc;

#[path = "stack/baseline.rs"]
mod baseline;
#[path = "stack/floor.rs"]
mod floor;
#[path = "stack/stats.rs"]
mod stats;

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Whether BENCH_ONLY (default: everything) selects `section`.
fn selected(section: &str) -> bool {
    std::env::var("BENCH_ONLY")
        .map(|v| v.split(',').any(|s| s.trim() == section))
        .unwrap_or(true)
}

/// Median and range of repeated measurements.
#[derive(Default)]
struct Stat(Vec<f64>);

impl Stat {
    fn median(&self) -> f64 {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }
    fn show(&self, unit: &str) -> String {
        self.show_with(unit, 0)
    }
    fn show_with(&self, unit: &str, decimals: usize) -> String {
        if self.0.is_empty() {
            return "-".into();
        }
        let min = self.0.iter().copied().fold(f64::INFINITY, f64::min);
        let max = self.0.iter().copied().fold(0.0, f64::max);
        format!(
            "{:.decimals$} {unit} ({:.decimals$}-{:.decimals$})",
            self.median(),
            min,
            max
        )
    }
}

/// Latency percentiles in ms, one value per repetition each.
#[derive(Default)]
struct Latency {
    p50: Stat,
    p99: Stat,
    max: Stat,
}

impl Latency {
    /// Adds one repetition's samples.
    fn push(&mut self, mut samples: Vec<f64>) {
        samples.sort_by(f64::total_cmp);
        let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
        self.p50.0.push(at(0.5));
        self.p99.0.push(at(0.99));
        self.max.0.push(samples[samples.len() - 1]);
    }
    fn show(&self) -> String {
        format!(
            "p50 {}, p99 {}, max {}",
            self.p50.show_with("ms", 2),
            self.p99.show_with("ms", 2),
            self.max.show_with("ms", 2)
        )
    }
}

fn order_kwargs(i: usize) -> Map<String, Value> {
    json!({"order_id": format!("b-{i}"), "customer": {"id": "c", "email": "c@example.com"},
           "items": [{"sku": "A", "quantity": 1, "unit_price_cents": 100}]})
    .as_object()
    .cloned()
    .unwrap()
}

fn orders(n: usize) -> Vec<TaskMessage> {
    (0..n)
        .map(|i| TaskMessage::new("process_order", "celery", order_kwargs(i)))
        .collect()
}

/// The drain's orders: each order's id is its task's id.
fn drain_orders(n: usize) -> Vec<TaskMessage> {
    orders(n)
        .into_iter()
        .map(|mut m| {
            m.body.kwargs.insert("order_id".into(), json!(m.id.clone()));
            m
        })
        .collect()
}

async fn flush(conn: &mut celery_redis::conn::Conn) {
    redis::cmd("FLUSHALL")
        .query_async::<()>(conn)
        .await
        .unwrap();
}

/// Peak resident set size (VmHWM) of a process, in MB.
fn peak_rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))?
                .split_whitespace()
                .nth(1)?
                .parse::<f64>()
                .ok()
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// CPU time (user + system) a process has used so far, in seconds. /proc reports it in
/// USER_HZ ticks, which Linux fixes at 100 per second for user space.
fn cpu_seconds(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // Fields after the command name (which may contain spaces) start at state (3rd).
            let rest = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
            Some(ticks / 100.0)
        })
        .unwrap_or(f64::NAN)
}

/// CPU time (user + system) the Redis server has used so far, in seconds, from its `INFO cpu`
/// (getrusage: finer than the 10 ms ticks of /proc).
async fn redis_cpu_seconds(conn: &mut celery_redis::conn::Conn) -> f64 {
    let info: String = redis::cmd("INFO")
        .arg("cpu")
        .query_async(conn)
        .await
        .unwrap();
    info.lines()
        .filter_map(|l| {
            let (k, v) = l.trim().split_once(':')?;
            matches!(k, "used_cpu_sys" | "used_cpu_user")
                .then(|| v.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

/// Commands the Redis server has executed, those called from scripts included.
async fn redis_commands(conn: &mut celery_redis::conn::Conn) -> f64 {
    testkit::info_number(conn, "stats", "total_commands_processed").await as f64
}

/// Ready states published on `celery-task-meta-*`, as (task id, arrival time), while it lives:
/// dropping it ends its subscription (a subscriber left behind would receive, and make Redis
/// write to it, every later publish: each costs Redis CPU that is no order's).
struct Results {
    rx: mpsc::UnboundedReceiver<(String, Instant)>,
    task: tokio::task::JoinHandle<()>,
}

impl Results {
    async fn recv(&mut self) -> Option<(String, Instant)> {
        self.rx.recv().await
    }
}

impl Drop for Results {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn results_listener(client: redis::Client) -> Results {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.psubscribe("celery-task-meta-*").await.unwrap();
    let task = tokio::spawn(async move {
        let mut stream = pubsub.on_message();
        while let Some(msg) = stream.next().await {
            #[derive(serde::Deserialize)]
            struct Meta<'a> {
                status: &'a str,
                task_id: String,
            }
            let Ok(m) = serde_json::from_slice::<Meta>(msg.get_payload_bytes()) else {
                continue;
            };
            if matches!(m.status, "SUCCESS" | "FAILURE" | "REVOKED") {
                let _ = tx.send((m.task_id, Instant::now()));
            }
        }
    });
    Results { rx, task }
}

fn worker(stack: &Stack, concurrency: usize) -> Proc {
    worker_with(stack, concurrency, Extra::Nothing)
}

/// What a drain runs with besides its concurrency.
#[derive(Clone, Copy, PartialEq)]
enum Extra {
    Nothing,
    /// Celery's task events on (as `celery worker -E`).
    TaskEvents,
    /// The chained notifications routed to a second queue, which the same worker consumes.
    TwoQueues,
    /// A replica attached and `REDIS_WAIT_REPLICAS=1`: each write waits for its copy.
    WaitReplica,
}

/// A worker at `concurrency`, with `extra`.
fn worker_with(stack: &Stack, concurrency: usize, extra: Extra) -> Proc {
    let mut env = vec![
        ("WORKER_CONCURRENCY", concurrency.to_string()),
        (
            "WORKER_SEND_TASK_EVENTS",
            (extra == Extra::TaskEvents).to_string(),
        ),
        ("RUST_LOG", "warn,worker::worker=info".into()),
    ];
    if extra == Extra::WaitReplica {
        env.push(("REDIS_WAIT_REPLICAS", "1".into()));
    }
    if extra == Extra::TwoQueues {
        env.push(("TASK_ROUTES", "send_notification=notifications".into()));
        env.push(("WORKER_QUEUES", "celery,notifications".into()));
    }
    stack.worker(&env).proc
}

/// A replica of `primary`, returned once it is in sync (its link up).
async fn replica_of(primary: &TestRedis) -> TestRedis {
    let port = primary.port().to_string();
    let replica = TestRedis::start_with(&["--replicaof", "127.0.0.1", &port]);
    let mut conn = replica.manager().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut conn)
            .await
            .unwrap();
        if info.lines().any(|l| l.trim() == "master_link_status:up") {
            return replica;
        }
        assert!(
            Instant::now() < deadline,
            "the replica never synced: {info}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A drain's name in the table.
fn label((conc, extra): &(usize, Extra)) -> String {
    format!(
        "concurrency {conc}{}",
        match extra {
            Extra::Nothing => "",
            Extra::TaskEvents => ", task events on",
            Extra::TwoQueues => ", notifications on a second queue",
            Extra::WaitReplica => ", a replica and REDIS_WAIT_REPLICAS=1",
        }
    )
}

/// One drain measurement per repetition: the rate, and what each order cost in CPU time and
/// Redis commands (these two are steadier than the rate on a busy host).
#[derive(Default)]
struct Drain {
    rate: Stat,
    worker_us: Stat,
    redis_us: Stat,
    commands: Stat,
}

#[derive(Default)]
struct Rust {
    enqueue_single: Stat,
    enqueue_single_current_thread: Stat,
    enqueue_concurrent: Stat,
    enqueue_floor: Stat,
    enqueue_batch: Stat,
    /// Per drain: its concurrency and what else was on.
    drain: Vec<((usize, Extra), Drain)>,
    /// The floor with kombu's unacked record, and without it.
    floor: Vec<(&'static str, floor::Floor)>,
    roundtrip: Latency,
    /// Per load: connections, rate, latency, Redis CPU per request (µs).
    http: Vec<(usize, Stat, Latency, Stat)>,
    rss_worker: f64,
    rss_order: f64,
    rss_notification: f64,
}

async fn measure_rust(stack: &Stack, reps: usize, drain_n: usize, http_secs: u64) -> Rust {
    let redis = &stack.redis;
    let mut conn = redis.manager().await;
    let broker = Broker::new(conn.clone(), "celery", "test@host");
    let mut out = Rust::default();

    if selected("enqueue") {
        for _ in 0..reps {
            flush(&mut conn).await;
            let msgs = orders(5000);
            let t = Instant::now();
            for m in &msgs {
                broker.publish(m).await.unwrap();
            }
            out.enqueue_single
                .0
                .push(msgs.len() as f64 / t.elapsed().as_secs_f64());
            flush(&mut conn).await;
            let msgs = orders(100_000);
            let t = Instant::now();
            for chunk in msgs.chunks(1000) {
                broker.publish_many(chunk).await.unwrap();
            }
            out.enqueue_batch
                .0
                .push(msgs.len() as f64 / t.elapsed().as_secs_f64());
        }

        // The floor for any sequential producer on this host: a blocking socket writing LPUSH by
        // hand and reading the reply, no client library, no runtime.
        for _ in 0..reps {
            flush(&mut conn).await;
            let (port, msgs) = (redis.port(), orders(5000));
            let rate = tokio::task::spawn_blocking(move || bare_lpush_rate(port, &msgs))
                .await
                .unwrap();
            out.enqueue_floor.0.push(rate);
        }

        // One message per call from 64 concurrent callers sharing one producer, as request
        // handlers use it: redis-rs pipelines their LPUSHes on the one connection.
        for _ in 0..reps {
            flush(&mut conn).await;
            let msgs = std::sync::Arc::new(orders(20_000));
            let t = Instant::now();
            let callers: Vec<_> = (0..64)
                .map(|c| {
                    let (broker, msgs) = (broker.clone(), msgs.clone());
                    tokio::spawn(async move {
                        for m in msgs.iter().skip(c).step_by(64) {
                            broker.publish(m).await.unwrap();
                        }
                    })
                })
                .collect();
            for caller in callers {
                caller.await.unwrap();
            }
            out.enqueue_concurrent
                .0
                .push(msgs.len() as f64 / t.elapsed().as_secs_f64());
        }

        // A sequential producer needs no thread pool: on a current-thread runtime each publish
        // saves the cross-thread wake-ups between the caller and redis-rs's connection driver.
        for _ in 0..reps {
            flush(&mut conn).await;
            let url = redis.parsed_url();
            let rate = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let conn = celery_redis::conn::Conn::new(
                        &url,
                        celery_redis::conn::Waits {
                            response: None,
                            connect_retries: 2,
                        },
                    )
                    .unwrap();
                    let broker = Broker::new(conn, "celery", "test@host");
                    let msgs = orders(5000);
                    let t = Instant::now();
                    for m in &msgs {
                        broker.publish(m).await.unwrap();
                    }
                    msgs.len() as f64 / t.elapsed().as_secs_f64()
                })
            })
            .join()
            .unwrap();
            out.enqueue_single_current_thread.0.push(rate);
        }
    }

    if selected("drain") {
        let (commandstats, scriptstats) = stats::wanted();
        let levels = std::env::var("BENCH_CONCURRENCY").unwrap_or_else(|_| "1,8,64".into());
        let mut runs: Vec<(usize, Extra)> = levels
            .split(',')
            .filter_map(|c| c.trim().parse::<usize>().ok())
            .map(|c| (c, Extra::Nothing))
            .collect();
        // The cost of task events, and of routing the notifications to a second queue the same
        // worker consumes: the highest level again with each.
        if let Some(&(top, _)) = runs.iter().max_by_key(|(c, _)| *c) {
            runs.push((top, Extra::TaskEvents));
            runs.push((top, Extra::TwoQueues));
            runs.push((top, Extra::WaitReplica));
        }
        for (concurrency, extra) in runs {
            // Only for its own drain: a replica costs the primary its replication stream.
            let _replica = match extra {
                Extra::WaitReplica => Some(replica_of(redis).await),
                _ => None,
            };
            let mut d = Drain::default();
            for _ in 0..reps {
                flush(&mut conn).await;
                shop::inventory::set_stock(&conn, "A", 1_000_000_000)
                    .await
                    .unwrap();
                let msgs = drain_orders(drain_n);
                let mut pending: HashSet<String> = msgs.iter().map(|m| m.id.clone()).collect();
                for chunk in msgs.chunks(1000) {
                    broker.publish_many(chunk).await.unwrap();
                }
                let mut results = results_listener(redis.client()).await;
                if commandstats {
                    stats::reset(&mut conn, scriptstats).await;
                }
                let w = worker_with(stack, concurrency, extra);
                let (redis_cpu, commands) = (
                    redis_cpu_seconds(&mut conn).await,
                    redis_commands(&mut conn).await,
                );
                let t = Instant::now();
                while !pending.is_empty() {
                    let (id, _) = tokio::time::timeout(Duration::from_secs(120), results.recv())
                        .await
                        .unwrap()
                        .unwrap();
                    pending.remove(&id);
                }
                let n = drain_n as f64;
                d.rate.0.push(n / t.elapsed().as_secs_f64());
                d.worker_us.0.push(cpu_seconds(w.child.id()) / n * 1e6);
                d.redis_us
                    .0
                    .push((redis_cpu_seconds(&mut conn).await - redis_cpu) / n * 1e6);
                // Less the INFO cpu and INFO stats of the measurement itself.
                d.commands
                    .0
                    .push((redis_commands(&mut conn).await - commands - 2.0) / n);
                if commandstats {
                    let what = format!("drain, {}, {drain_n} orders", label(&(concurrency, extra)));
                    stats::print(&mut conn, &what, drain_n, scriptstats).await;
                }
                out.rss_worker = out.rss_worker.max(peak_rss_mb(w.child.id()));
                w.terminate();
            }
            out.drain.push(((concurrency, extra), d));
        }
    }

    if selected("floor") {
        let commandstats = stats::wanted().0;
        for (what, unacked) in [
            (
                "the claim, STARTED, reservation, confirmation, result and ack",
                true,
            ),
            (
                "the same without kombu's unacked record (HSET/ZADD, HDEL/ZREM)",
                false,
            ),
        ] {
            let f = floor::measure(stack, reps, drain_n, unacked, commandstats).await;
            out.floor.push((what, f));
        }
    }

    if selected("roundtrip") {
        // At idle: one worker, sequential submit -> result over pub/sub.
        flush(&mut conn).await;
        shop::inventory::set_stock(&conn, "A", 1_000_000_000)
            .await
            .unwrap();
        let w = worker(stack, 8);
        let mut results = results_listener(redis.client()).await;
        for _ in 0..reps {
            let mut lat = Vec::new();
            for i in 0..1000 {
                let m = TaskMessage::new("process_order", "celery", order_kwargs(i));
                let t = Instant::now();
                broker.publish(&m).await.unwrap();
                loop {
                    let (id, at) = results.recv().await.unwrap();
                    if id == m.id {
                        lat.push((at - t).as_secs_f64() * 1000.0);
                        break;
                    }
                }
            }
            out.roundtrip.push(lat);
        }
        w.terminate();
    }

    if selected("http") {
        // POST /orders through the real service (no worker: pure intake).
        flush(&mut conn).await;
        let env = [
            ("MAX_QUEUE_DEPTH", "0".to_owned()),
            ("RUST_LOG", "warn,http_kit::serve=info".to_owned()),
        ];
        let (order_svc, note_svc) = (stack.order(&env), stack.notification(&env));
        let orders_url = format!("{}/orders", order_svc.url);
        let notes_url = format!("{}/notifications", note_svc.url);
        let order_body = json!({"customer": {"id": "c", "email": "c@example.com"},
                                "items": [{"sku": "A", "quantity": 1, "unit_price_cents": 100}]});
        for conns in [1, 16, 64] {
            let (mut rate, mut latency) = (Stat::default(), Latency::default());
            let mut redis_us = Stat::default();
            for _ in 0..reps {
                flush(&mut conn).await;
                let redis_cpu = cpu_seconds(redis.pid());
                let lat = http_load(
                    &orders_url,
                    &order_body,
                    conns,
                    Duration::from_secs(http_secs),
                )
                .await;
                rate.0.push(lat.len() as f64 / http_secs as f64);
                redis_us
                    .0
                    .push((cpu_seconds(redis.pid()) - redis_cpu) / lat.len().max(1) as f64 * 1e6);
                latency.push(lat);
            }
            out.http.push((conns, rate, latency, redis_us));
        }
        let note_body =
            json!({"recipient": "r@example.com", "channel": "log", "subject": "s", "body": "b"});
        http_load(
            &notes_url,
            &note_body,
            64,
            Duration::from_secs(http_secs.min(3)),
        )
        .await;
        out.rss_order = peak_rss_mb(order_svc.proc.child.id());
        out.rss_notification = peak_rss_mb(note_svc.proc.child.id());
        order_svc.proc.terminate();
        note_svc.proc.terminate();
    }
    out
}

/// Sequential LPUSHes over a blocking TCP socket in hand-written RESP: what one round trip per
/// message allows here, whatever the client.
fn bare_lpush_rate(port: u16, msgs: &[TaskMessage]) -> f64 {
    use std::io::{BufRead, BufReader, Write};
    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_nodelay(true).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let frames: Vec<Vec<u8>> = msgs
        .iter()
        .map(|m| {
            let env = m.to_json("test@host");
            format!(
                "*3\r\n$5\r\nLPUSH\r\n$6\r\ncelery\r\n${}\r\n{env}\r\n",
                env.len()
            )
            .into_bytes()
        })
        .collect();
    let mut line = String::new();
    let t = Instant::now();
    for frame in &frames {
        writer.write_all(frame).unwrap();
        line.clear();
        reader.read_line(&mut line).unwrap();
        assert!(line.starts_with(':'), "LPUSH reply: {line}");
    }
    frames.len() as f64 / t.elapsed().as_secs_f64()
}

/// `conns` keep-alive connections, each POSTing in a loop until `span` is over. Returns the
/// latency of each 2xx answer, in ms.
async fn http_load(url: &str, body: &Value, conns: usize, span: Duration) -> Vec<f64> {
    let deadline = Instant::now() + span;
    let body = body.to_string();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (url, body) = (url.to_owned(), body.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .http1_only()
                .build()
                .unwrap();
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                let r = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                if r.is_ok_and(|r| r.status().is_success()) {
                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                }
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    assert!(!all.is_empty(), "no request to {url} succeeded");
    all
}

struct Celery {
    version: String,
    enqueue: Stat,
    enqueue_threads: Stat,
    /// Per configuration of the Celery workers: its name and drain rate.
    drain: Vec<(&'static str, Stat)>,
    roundtrip: Latency,
}

/// The Celery worker configurations the drain tries (`celery_bench.py drain N POOL CONCURRENCY
/// PROCESSES`); gevent and eventlet are not in the venv.
const CELERY_DRAINS: [(&str, [&str; 3]); 4] = [
    ("prefork 2", ["prefork", "2", "1"]),
    ("prefork 4", ["prefork", "4", "1"]),
    ("threads 8", ["threads", "8", "1"]),
    ("2 processes x threads 2", ["threads", "2", "2"]),
];

impl Celery {
    fn drain_of(&self, name: &str) -> Option<&Stat> {
        self.drain.iter().find(|(n, _)| *n == name).map(|(_, s)| s)
    }

    /// The configuration with the highest median drain rate.
    fn best(&self) -> Option<&(&'static str, Stat)> {
        self.drain
            .iter()
            .max_by(|a, b| a.1.median().total_cmp(&b.1.median()))
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A venv with the newest pinned Celery (the interop suite's), created when missing.
fn celery_python() -> Result<PathBuf, String> {
    let venv = root().join("target/venv-celery57");
    let py = venv.join("bin/python");
    if !py.exists() {
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .map_err(|e| e.to_string())?;
        if !ok.success() {
            return Err("python3 -m venv failed".into());
        }
    }
    let req = root().join("worker/tests/interop/requirements-celery57.txt");
    let ok = Command::new(&py)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(req)
        .status()
        .map_err(|e| e.to_string())?;
    if ok.success() {
        Ok(py)
    } else {
        Err("pip install failed".into())
    }
}

fn celery_run(py: &Path, redis: &TestRedis, args: &[&str]) -> Value {
    let _ = Command::new("redis-cli")
        .args(["-p", &redis.port().to_string(), "FLUSHALL"])
        .output();
    let out = Command::new(py)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/celery_bench.py"))
        .args(args)
        .env("REDIS_URL", redis.url())
        .output()
        .expect("run celery_bench.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "celery {args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap()
}

fn measure_celery(redis: &TestRedis, reps: usize) -> Result<Celery, String> {
    let py = celery_python()?;
    let version = Command::new(&py)
        .args(["-c", "import celery, kombu; print(f'celery {celery.__version__}, kombu {kombu.__version__}')"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let rates = |args: &[&str]| {
        Stat(
            (0..reps)
                .map(|_| celery_run(&py, redis, args)["rate"].as_f64().unwrap())
                .collect(),
        )
    };
    let enqueue = rates(&["enqueue", "2000"]);
    let enqueue_threads = rates(&["enqueue", "4000", "8"]);
    let drain = CELERY_DRAINS
        .iter()
        .map(|(name, [pool, conc, procs])| (*name, rates(&["drain", "2000", pool, conc, procs])))
        .collect();
    let mut roundtrip = Latency::default();
    for _ in 0..reps {
        let rt = celery_run(&py, redis, &["roundtrip", "300"]);
        let samples = rt["latencies"].as_array().unwrap();
        roundtrip.push(samples.iter().filter_map(Value::as_f64).collect());
    }
    Ok(Celery {
        version,
        enqueue,
        enqueue_threads,
        drain,
        roundtrip,
    })
}

fn main() {
    let reps = knob("BENCH_REPS", 3);
    let drain_n = knob("BENCH_DRAIN_TASKS", 20_000);
    let http_secs = knob("BENCH_HTTP_SECS", 5) as u64;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // Another build's worker (an A/B under one bench build), and a program to start it under
    // (`instructions.sh` counts its instructions with cachegrind).
    let worker_bin =
        std::env::var("BENCH_WORKER").unwrap_or_else(|_| env!("CARGO_BIN_EXE_worker").to_owned());
    let under = std::env::var("BENCH_WORKER_UNDER").unwrap_or_default();
    let stack = Stack::new(&worker_bin).under(&under.split_whitespace().collect::<Vec<_>>());
    let started = Instant::now();
    let rust = runtime.block_on(measure_rust(&stack, reps, drain_n, http_secs));
    let celery = if selected("celery") {
        measure_celery(&stack.redis, reps)
    } else {
        Err("not selected (BENCH_ONLY)".into())
    };
    let cores = std::thread::available_parallelism().map_or(1, usize::from);

    println!(
        "\nbench: {reps} repetitions, median (min-max); {cores} cores; {} s in all",
        started.elapsed().as_secs()
    );
    println!(
        "compared with: {}",
        celery.as_ref().map_or("nothing", |c| c.version.as_str())
    );
    let c = celery.as_ref().ok();
    if let Some(c) = c {
        let drains: Vec<String> = c
            .drain
            .iter()
            .map(|(name, rate)| format!("{name} {}", rate.show("/s")))
            .collect();
        println!(
            "celery alone: apply_async {}, from 8 threads {}; drain {}; round trip {}",
            c.enqueue.show("/s"),
            c.enqueue_threads.show("/s"),
            drains.join(", "),
            c.roundtrip.show()
        );
    }
    let ratio = |a: f64, b: Option<f64>| b.map_or(String::new(), |b| format!("{:.1}x", a / b));
    let c_show = |f: fn(&Celery) -> &Stat| match &celery {
        Ok(c) => f(c).show("/s"),
        Err(e) => format!("skipped: {e}"),
    };
    println!("\n| measure | Rust | Python Celery | Rust/Celery |");
    println!("|---|---|---|---|");
    if !rust.enqueue_single.0.is_empty() {
        let c_enq = c.map(|c| c.enqueue.median());
        println!(
            "| enqueue, one at a time (multi-thread runtime) | {} | {} (apply_async) | {} |",
            rust.enqueue_single.show("/s"),
            c_show(|c| &c.enqueue),
            ratio(rust.enqueue_single.median(), c_enq)
        );
        println!(
            "| enqueue, one at a time (current-thread runtime) | {} | | {} |",
            rust.enqueue_single_current_thread.show("/s"),
            ratio(rust.enqueue_single_current_thread.median(), c_enq)
        );
        println!(
            "| enqueue floor: bare blocking socket, hand-written LPUSH, one at a time | {} | | {} |",
            rust.enqueue_floor.show("/s"),
            ratio(rust.enqueue_floor.median(), c_enq)
        );
        println!(
            "| enqueue, one message per call, 64 concurrent callers | {} | {} (apply_async, 8 threads) | {} |",
            rust.enqueue_concurrent.show("/s"),
            c_show(|c| &c.enqueue_threads),
            ratio(
                rust.enqueue_concurrent.median(),
                c.map(|c| c.enqueue_threads.median())
            )
        );
        println!(
            "| enqueue, pipelined batches of 1000 | {} | | {} |",
            rust.enqueue_batch.show("/s"),
            ratio(rust.enqueue_batch.median(), c_enq)
        );
    }
    let c_best = c.and_then(Celery::best);
    let c_drain = match (&celery, c_best) {
        (Ok(_), Some((name, rate))) => format!("best, {name}: {}", rate.show("/s")),
        (Err(e), _) => format!("skipped: {e}"),
        _ => "-".into(),
    };
    for (run, d) in &rust.drain {
        let conc = label(run);
        let prefork2 = c.and_then(|c| c.drain_of("prefork 2")).map(Stat::median);
        println!(
            "| drain {drain_n} process_order, {conc} | {} | {c_drain} | {} |",
            d.rate.show("orders/s"),
            c_best.map_or(String::new(), |(name, rate)| format!(
                "{} vs best ({name}); {} vs prefork 2",
                ratio(d.rate.median(), Some(rate.median())),
                ratio(d.rate.median(), prefork2)
            ))
        );
    }
    for (run, d) in &rust.drain {
        let conc = label(run);
        println!(
            "| cost per order, {conc}: worker CPU / Redis CPU / Redis commands | {:.1} µs / {:.1} µs / {:.1} | | |",
            d.worker_us.median(),
            d.redis_us.median(),
            d.commands.median()
        );
        if let Some(line) = baseline::against_baseline(run, d) {
            println!("{line}");
        }
    }
    for (what, f) in &rust.floor {
        println!(
            "| floor: same commands pipelined, no Lua, 64 tasks per pipeline ({what}): Redis CPU per order / Redis commands per order / client CPU per order | {:.1} µs / {:.1} / {:.1} µs; {} | | |",
            f.redis_us.median(),
            f.commands.median(),
            f.client_us.median(),
            f.rate.show("orders/s")
        );
    }
    if let Some(line) = baseline::against_floor(&rust.drain, &rust.floor) {
        println!("{line}");
    }
    if !rust.roundtrip.p50.0.is_empty() {
        println!(
            "| round trip at idle | {} | {} | {} |",
            rust.roundtrip.show(),
            c.map_or(String::new(), |c| c.roundtrip.show()),
            c.map_or(String::new(), |c| format!(
                "{} faster at p50, {} at p99",
                ratio(c.roundtrip.p50.median(), Some(rust.roundtrip.p50.median())),
                ratio(c.roundtrip.p99.median(), Some(rust.roundtrip.p99.median()))
            ))
        );
    }
    for (conns, rate, latency, redis_us) in &rust.http {
        println!(
            "| POST /orders, {conns} connections | {}; p50 {}, p99 {}; Redis CPU {:.1} µs per request | | |",
            rate.show("req/s"),
            latency.p50.show_with("ms", 2),
            latency.p99.show_with("ms", 2),
            redis_us.median()
        );
    }
    if !rust.drain.is_empty() {
        println!(
            "| peak RSS: worker (up to concurrency 64) | {:.1} MB | | |",
            rust.rss_worker
        );
    }
    if !rust.http.is_empty() {
        println!(
            "| peak RSS: service-order / service-notification under load | {:.1} / {:.1} MB | | |",
            rust.rss_order, rust.rss_notification
        );
    }
}
