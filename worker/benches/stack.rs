//! `cargo bench -p worker --bench stack`: the stack measured against Python Celery in one run,
//! on the same machine and the same (private) redis-server. Not a test: it prints one table.
//!
//! 1. enqueue rate through the `common` producer API, one at a time and in pipelined batches;
//! 2. drain rate: N `process_order` tasks queued, then a worker at concurrency 1, 8 and 64;
//! 3. round trip submit -> result through the result backend's pub/sub, p50/p99/max;
//! 4. `POST /orders` throughput and latency at 1, 16 and 64 connections (own tokio client);
//! 5. peak RSS of the worker and of each service under that load;
//! 6. workloads 1-3 run by Python Celery 5.7 (prefork 2 and threads) in a venv it creates.
//!
//! Knobs: BENCH_DRAIN_TASKS (default 20000), BENCH_REPS (3), BENCH_HTTP_SECS (5).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::protocol::TaskMessage;
use common::queue::Broker;
use common::testing::{listening_addr, sibling_binary, Proc, TestRedis};
use futures_util::StreamExt;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Median and range of repeated measurements.
struct Stat(Vec<f64>);

impl Stat {
    fn median(&self) -> f64 {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }
    fn show(&self, unit: &str) -> String {
        let min = self.0.iter().copied().fold(f64::INFINITY, f64::min);
        let max = self.0.iter().copied().fold(0.0, f64::max);
        format!("{:.0} {unit} ({:.0}-{:.0})", self.median(), min, max)
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

async fn flush(conn: &mut redis::aio::ConnectionManager) {
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

/// Ready states published on `celery-task-meta-*`, as (task id, arrival time).
async fn results_listener(client: redis::Client) -> mpsc::UnboundedReceiver<(String, Instant)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.psubscribe("celery-task-meta-*").await.unwrap();
    tokio::spawn(async move {
        let mut stream = pubsub.on_message();
        while let Some(msg) = stream.next().await {
            let Ok(v) = serde_json::from_slice::<Value>(msg.get_payload_bytes()) else {
                continue;
            };
            if matches!(
                v["status"].as_str(),
                Some("SUCCESS" | "FAILURE" | "REVOKED")
            ) {
                let _ = tx.send((
                    v["task_id"].as_str().unwrap_or_default().to_owned(),
                    Instant::now(),
                ));
            }
        }
    });
    rx
}

fn worker(redis: &TestRedis, concurrency: usize) -> Proc {
    let env = vec![
        ("REDIS_URL", redis.url()),
        ("WORKER_CONCURRENCY", concurrency.to_string()),
        ("RUST_LOG", "warn,worker::consumer=info".into()),
    ];
    Proc::spawn(
        env!("CARGO_BIN_EXE_worker").as_ref(),
        &[],
        &env,
        "consuming queue",
    )
    .0
}

struct Rust {
    enqueue_single: Stat,
    enqueue_single_current_thread: Stat,
    enqueue_batch: Stat,
    drain: Vec<(usize, Stat)>,
    roundtrip: [f64; 3],
    http: Vec<(usize, f64, f64, f64)>,
    rss_worker: f64,
    rss_order: f64,
    rss_notification: f64,
}

async fn measure_rust(redis: &TestRedis, reps: usize, drain_n: usize, http_secs: u64) -> Rust {
    let mut conn = redis.manager().await;
    let broker = Broker::new(conn.clone(), "celery");

    let mut single = Vec::new();
    let mut batch = Vec::new();
    for _ in 0..reps {
        flush(&mut conn).await;
        let msgs = orders(5000);
        let t = Instant::now();
        for m in &msgs {
            broker.publish(m).await.unwrap();
        }
        single.push(msgs.len() as f64 / t.elapsed().as_secs_f64());
        flush(&mut conn).await;
        let msgs = orders(100_000);
        let t = Instant::now();
        for chunk in msgs.chunks(1000) {
            broker.publish_many(chunk).await.unwrap();
        }
        batch.push(msgs.len() as f64 / t.elapsed().as_secs_f64());
    }

    // A sequential producer needs no thread pool: on a current-thread runtime each publish saves
    // the cross-thread wake-ups between the caller and redis-rs's connection driver.
    let mut single_ct = Vec::new();
    for _ in 0..reps {
        flush(&mut conn).await;
        let client = redis.client();
        single_ct.push(
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let conn = common::connection::manager(&client, None).unwrap();
                    let broker = Broker::new(conn, "celery");
                    let msgs = orders(5000);
                    let t = Instant::now();
                    for m in &msgs {
                        broker.publish(m).await.unwrap();
                    }
                    msgs.len() as f64 / t.elapsed().as_secs_f64()
                })
            })
            .join()
            .unwrap(),
        );
    }

    let mut drain = Vec::new();
    let mut rss_worker: f64 = 0.0;
    for concurrency in [1, 8, 64] {
        let mut rates = Vec::new();
        for _ in 0..reps {
            flush(&mut conn).await;
            common::inventory::set_stock(&conn, "A", 1_000_000_000)
                .await
                .unwrap();
            let msgs: Vec<TaskMessage> = orders(drain_n)
                .into_iter()
                .map(|mut m| {
                    m.body.kwargs.insert("order_id".into(), json!(m.id.clone()));
                    m
                })
                .collect();
            let mut pending: HashSet<String> = msgs.iter().map(|m| m.id.clone()).collect();
            for chunk in msgs.chunks(1000) {
                broker.publish_many(chunk).await.unwrap();
            }
            let mut results = results_listener(redis.client()).await;
            let w = worker(redis, concurrency);
            let t = Instant::now();
            while !pending.is_empty() {
                let (id, _) = tokio::time::timeout(Duration::from_secs(120), results.recv())
                    .await
                    .unwrap()
                    .unwrap();
                pending.remove(&id);
            }
            rates.push(drain_n as f64 / t.elapsed().as_secs_f64());
            rss_worker = rss_worker.max(peak_rss_mb(w.child.id()));
            w.terminate();
        }
        drain.push((concurrency, Stat(rates)));
    }

    // Round trip at idle: one worker, sequential submit -> result over pub/sub.
    flush(&mut conn).await;
    common::inventory::set_stock(&conn, "A", 1_000_000_000)
        .await
        .unwrap();
    let w = worker(redis, 8);
    let mut results = results_listener(redis.client()).await;
    let mut lat = Vec::new();
    for i in 0..2000 {
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
    w.terminate();
    lat.sort_by(f64::total_cmp);
    let roundtrip = [
        lat[lat.len() / 2],
        lat[lat.len() * 99 / 100 - 1],
        lat[lat.len() - 1],
    ];

    // HTTP: POST /orders through the real service (no worker: pure intake).
    flush(&mut conn).await;
    let anchor = env!("CARGO_BIN_EXE_worker");
    let env = |var: &'static str| {
        vec![
            ("REDIS_URL", redis.url()),
            (var, "127.0.0.1:0".into()),
            ("MAX_QUEUE_DEPTH", "0".into()),
            ("RUST_LOG", "warn,common::web=info".into()),
        ]
    };
    let (order_svc, line) = Proc::spawn(
        &sibling_binary(anchor, "service-order"),
        &[],
        &env("ORDER_BIND"),
        "listening on",
    );
    let orders_url = format!("http://{}/orders", listening_addr(&line));
    let (note_svc, line) = Proc::spawn(
        &sibling_binary(anchor, "service-notification"),
        &[],
        &env("NOTIFICATION_BIND"),
        "listening on",
    );
    let notes_url = format!("http://{}/notifications", listening_addr(&line));
    let order_body = json!({"customer": {"id": "c", "email": "c@example.com"},
                            "items": [{"sku": "A", "quantity": 1, "unit_price_cents": 100}]});
    let mut http = Vec::new();
    for conns in [1, 16, 64] {
        flush(&mut conn).await;
        let (count, p50, p99) = http_load(
            &orders_url,
            &order_body,
            conns,
            Duration::from_secs(http_secs),
        )
        .await;
        http.push((conns, count as f64 / http_secs as f64, p50, p99));
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
    let (rss_order, rss_notification) = (
        peak_rss_mb(order_svc.child.id()),
        peak_rss_mb(note_svc.child.id()),
    );
    order_svc.terminate();
    note_svc.terminate();

    Rust {
        enqueue_single: Stat(single),
        enqueue_single_current_thread: Stat(single_ct),
        enqueue_batch: Stat(batch),
        drain,
        roundtrip,
        http,
        rss_worker,
        rss_order,
        rss_notification,
    }
}

/// `conns` keep-alive connections, each POSTing in a loop until `span` is over. Returns the
/// number of 2xx answers and their p50/p99 latency in ms.
async fn http_load(url: &str, body: &Value, conns: usize, span: Duration) -> (usize, f64, f64) {
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
    all.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::NAN)
    };
    (all.len(), pick(0.5), pick(0.99))
}

struct Celery {
    version: String,
    enqueue: Stat,
    drain_prefork: Stat,
    drain_threads: Stat,
    roundtrip: [f64; 3],
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
    let drain_prefork = rates(&["drain", "2000", "prefork", "2"]);
    let drain_threads = rates(&["drain", "2000", "threads", "8"]);
    let rt = celery_run(&py, redis, &["roundtrip", "300"]);
    let f = |k: &str| rt[k].as_f64().unwrap();
    Ok(Celery {
        version,
        enqueue,
        drain_prefork,
        drain_threads,
        roundtrip: [f("p50"), f("p99"), f("max")],
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
    let redis = TestRedis::start();
    let started = Instant::now();
    let rust = runtime.block_on(measure_rust(&redis, reps, drain_n, http_secs));
    let celery = measure_celery(&redis, reps);
    let cores = std::thread::available_parallelism().map_or(1, usize::from);

    println!(
        "\nbench: {reps} repetitions, median (min-max); {cores} cores; {} s in all",
        started.elapsed().as_secs()
    );
    let ratio = |a: f64, b: f64| format!("{:.1}x", a / b);
    let (c_enq, c_pre, c_thr, c_rt) = match &celery {
        Ok(c) => (
            c.enqueue.show("/s"),
            c.drain_prefork.show("/s"),
            c.drain_threads.show("/s"),
            format!(
                "{:.2} / {:.2} / {:.2} ms",
                c.roundtrip[0], c.roundtrip[1], c.roundtrip[2]
            ),
        ),
        Err(e) => (
            format!("skipped: {e}"),
            String::new(),
            String::new(),
            String::new(),
        ),
    };
    println!(
        "compared with: {}",
        celery.as_ref().map_or("nothing", |c| c.version.as_str())
    );
    println!("\n| measure | Rust | Python Celery | Rust/Celery |");
    println!("|---|---|---|---|");
    let c = celery.as_ref().ok();
    println!(
        "| enqueue, one at a time (multi-thread runtime) | {} | {c_enq} (apply_async) | {} |",
        rust.enqueue_single.show("/s"),
        c.map_or(String::new(), |c| ratio(
            rust.enqueue_single.median(),
            c.enqueue.median()
        ))
    );
    println!(
        "| enqueue, one at a time (current-thread runtime) | {} | | {} |",
        rust.enqueue_single_current_thread.show("/s"),
        c.map_or(String::new(), |c| ratio(
            rust.enqueue_single_current_thread.median(),
            c.enqueue.median()
        ))
    );
    println!(
        "| enqueue, pipelined batches of 1000 | {} | | {} |",
        rust.enqueue_batch.show("/s"),
        c.map_or(String::new(), |c| ratio(
            rust.enqueue_batch.median(),
            c.enqueue.median()
        ))
    );
    for (conc, stat) in &rust.drain {
        println!("| drain {drain_n} process_order, concurrency {conc} | {} | prefork 2: {c_pre}; threads 8: {c_thr} | {} |", stat.show("orders/s"),
            c.map_or(String::new(), |c| format!("{} vs prefork", ratio(stat.median(), c.drain_prefork.median()))));
    }
    println!(
        "| round trip p50 / p99 / max (idle) | {:.2} / {:.2} / {:.2} ms | {c_rt} | {} |",
        rust.roundtrip[0],
        rust.roundtrip[1],
        rust.roundtrip[2],
        c.map_or(String::new(), |c| format!(
            "{} faster at p50",
            ratio(c.roundtrip[0], rust.roundtrip[0])
        ))
    );
    for (conns, rps, p50, p99) in &rust.http {
        println!("| POST /orders, {conns} connections | {rps:.0} req/s, p50 {p50:.2} ms, p99 {p99:.2} ms | | |");
    }
    println!(
        "| peak RSS: worker (up to concurrency 64) | {:.1} MB | | |",
        rust.rss_worker
    );
    println!(
        "| peak RSS: service-order / service-notification under load | {:.1} / {:.1} MB | | |",
        rust.rss_order, rust.rss_notification
    );
}
