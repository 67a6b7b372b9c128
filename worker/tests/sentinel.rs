//! Failover with Redis Sentinel and the real binaries: two workers and service-order on a
//! `sentinel://` URL (a primary, a replica and three sentinels from `testkit::sentinel`),
//! orders submitted over HTTP by 8 clients that retry an unacknowledged submission with the same
//! id, and a failover in the middle: `SENTINEL FAILOVER`, or the primary SIGKILLed (the sentinels
//! promote the replica; the killed server comes back empty and becomes the new replica). Each
//! scenario prints one line of figures like the fault suite's, with and without the `WAIT`
//! opt-in (`REDIS_WAIT_REPLICAS=1`), and asserts what the design guarantees: with `WAIT`, no
//! acknowledged order is lost; in every run, stock matches the final results (no order reserved
//! twice) and no order failed. Without `WAIT`, writes acknowledged by the old master but not yet
//! replicated may be lost (asynchronous replication): the count is printed, not asserted.
//! A Python Celery client on the same `sentinel://` URL sends a task the Rust worker runs.
//!
//! Run: `cargo test -p worker --test sentinel -- --ignored --nocapture --test-threads 1`
//! (the Python test needs `CELERY_PYTHON`, and is skipped without it).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use celery_redis::config::RedisConfig;
use celery_redis::conn::RedisUrl;
use celery_redis::keys;
use celery_redis::result::{ResultMeta, TaskState};
use futures_util::StreamExt;
use serde_json::{json, Value};
use testkit::sentinel::{TestSentinels, MASTER, PASSWORD};
use testkit::{Binaries, Running, Tracker};
use tokio::sync::Notify;

const SKUS: usize = 10;
const INITIAL_STOCK: i64 = 100_000;
const DEADLINE: Duration = Duration::from_secs(120);

#[derive(Clone, Copy, PartialEq, Debug)]
enum Fault {
    None,
    Failover,
    KillPrimary,
}

/// What the workers and the service read besides `REDIS_URL` (the `sentinel://` URL that
/// `testkit::Binaries` gives them).
fn env(wait: bool) -> Vec<(&'static str, String)> {
    [
        ("REDIS_SENTINEL_MASTER", MASTER),
        ("REDIS_WAIT_REPLICAS", if wait { "1" } else { "0" }),
        ("REDIS_WAIT_TIMEOUT_MS", "500"),
        ("REDIS_TIMEOUT_MS", "2000"),
        ("WORKER_CONCURRENCY", "8"),
        ("VISIBILITY_TIMEOUT_SECS", "2"),
        // A 2 s lease lapses several times in one failover's pause (a 30 s one does not): each
        // lapse is a restore, which MESSAGE_MAX_DELIVERIES counts as a lost delivery. This
        // suite measures failovers, not poison messages (the fault suite's capped worker does).
        ("MESSAGE_MAX_DELIVERIES", "1000"),
        (
            "RUST_LOG",
            "warn,worker=info,http_kit=info,celery_redis=info",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_owned()))
    .collect()
}

fn sentinel_url(url: &str) -> RedisUrl {
    RedisConfig::from_source(&testkit::vars(&[
        ("REDIS_URL", url),
        ("REDIS_SENTINEL_MASTER", MASTER),
    ]))
    .unwrap()
    .url
}

/// Waits (woken by each completion, checking every second) until the master holds no
/// task: the confirmations the orders sent have finished too.
async fn drained(tracker: &Tracker, url: &RedisUrl, deadline: Instant) {
    while Instant::now() < deadline {
        let changed = tracker.changed.notified();
        let client = url.topology().resolve(url.client()).await;
        if matches!(&client, Ok(c) if idle(c).await) {
            return;
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), changed).await;
    }
}

/// Waits until every expected task is ready, or the master is idle with some still outstanding
/// (lost), or the deadline.
async fn all_ready(tracker: &Tracker, url: &RedisUrl, deadline: Instant) {
    loop {
        let changed = tracker.changed.notified();
        if tracker.outstanding().is_empty() || Instant::now() >= deadline {
            return;
        }
        if tokio::time::timeout(Duration::from_secs(2), changed)
            .await
            .is_err()
        {
            if let Ok(client) = url.topology().resolve(url.client()).await {
                tracker.catch_up(&client).await;
                // Nothing waits, runs or is scheduled on the master: whatever is still
                // outstanding was lost (acknowledged by the old master only).
                if idle(&client).await {
                    tracker.catch_up(&client).await;
                    return;
                }
            }
        }
    }
}

/// Whether the master holds no task anywhere: queue, processing list, unacked, schedule.
async fn idle(client: &redis::Client) -> bool {
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return false;
    };
    let mut pipe = redis::pipe();
    for list in keys::queue_lists("celery") {
        pipe.llen(list);
    }
    pipe.llen(keys::processing("celery"))
        .hlen(keys::UNACKED)
        .zcard(keys::scheduled("celery"));
    let counts: Vec<i64> = pipe.query_async(&mut conn).await.unwrap_or_default();
    !counts.is_empty() && counts.iter().all(|n| *n == 0)
}

/// Listens for results on whichever server the sentinels name, subscribing again after a
/// failover closed the subscription.
async fn listen(
    url: RedisUrl,
    tracker: Arc<Tracker>,
    subscribed: tokio::sync::oneshot::Sender<()>,
) {
    let mut subscribed = Some(subscribed);
    // Like the fleet's own connections, the listener leaves the old master when the sentinels
    // announce a failover (it would otherwise hear the demoted master until it is reconfigured).
    let switched = Arc::new(Notify::new());
    if let Some(sentinels) = url.topology().sentinels().cloned() {
        let switched = switched.clone();
        tokio::spawn(celery_redis::conn::watch_failovers(sentinels, move |s| {
            if s {
                switched.notify_waiters();
            }
            true
        }));
    }
    loop {
        let client = match url.topology().resolve(url.client()).await {
            Ok(c) => c,
            Err(_) => {
                // The master is down and not yet replaced: ask again shortly.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if !tracker.follow(&client, &mut subscribed, &switched).await {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// An acknowledged order: its id, task id and (sku, quantity) items.
type Accepted = (String, String, Vec<(usize, i64)>);

struct Run {
    name: &'static str,
    orders: usize,
    fault: Fault,
    wait: bool,
}

struct Outcome {
    lost: usize,
    /// Every task (orders and their confirmations) per second, from the first submission to
    /// the last completion once the master holds no task.
    tasks_per_sec: f64,
    /// Acknowledged submissions per second while the clients submitted.
    submitted_per_sec: f64,
}

/// One scenario: submits `orders`, injects the fault once a third is acknowledged, waits for
/// every acknowledged order, prints the figures and asserts the guarantees.
async fn run(r: Run) -> Outcome {
    let sentinels = Arc::new(Mutex::new(TestSentinels::start()));
    let url = sentinels.lock().unwrap().url();
    let master = redis::Client::open(sentinels.lock().unwrap().master_url()).unwrap();
    let mut setup = master.get_multiplexed_async_connection().await.unwrap();
    for sku in 0..SKUS {
        let key = shop::keys::stock(&format!("S{sku}"));
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg(INITIAL_STOCK)
            .query_async(&mut setup)
            .await
            .unwrap();
    }
    let _: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(5000)
        .query_async(&mut setup)
        .await
        .unwrap();
    let resolving = sentinel_url(&url);
    let tracker = Arc::new(Tracker::default());
    let (tx, subscribed) = tokio::sync::oneshot::channel();
    let listener = tokio::spawn(listen(resolving.clone(), tracker.clone(), tx));
    subscribed.await.unwrap();

    let env = env(r.wait);
    let binaries = Binaries::at(&url, env!("CARGO_BIN_EXE_worker"));
    let _workers: Vec<Running> = (0..2).map(|_| binaries.worker(&env)).collect();
    let service = binaries.order(&env);
    let orders_url = format!("{}/orders", service.url);

    let acked = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let injector = {
        let (sentinels, acked) = (sentinels.clone(), acked.clone());
        let (fault, third) = (r.fault, r.orders / 3);
        std::thread::spawn(move || {
            while acked.load(Ordering::Relaxed) < third {
                std::thread::park_timeout(Duration::from_millis(10));
            }
            let at = Instant::now();
            match fault {
                Fault::None => return None,
                Fault::Failover => sentinels.lock().unwrap().failover(),
                Fault::KillPrimary => sentinels.lock().unwrap().kill_master(),
            }
            Some(at)
        })
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let started = Instant::now();
    let accepted: Vec<Accepted> = futures_util::stream::iter(0..r.orders)
        .map(|i| {
            let (http, acked, refused, url) = (http.clone(), acked.clone(), refused.clone(), orders_url.clone());
            let id = format!("{}-o{i}", r.name);
            let items: Vec<(usize, i64)> = vec![((i * 7) % SKUS, 1 + (i % 3) as i64)];
            let body = json!({"order_id": id, "customer": {"id": "c1", "email": "c1@example.com"},
                "items": items.iter().map(|(s, q)| json!({"sku": format!("S{s}"), "quantity": q, "unit_price_cents": 100})).collect::<Vec<_>>()});
            async move {
                for _ in 0..1200 {
                    match http.post(&url).json(&body).send().await {
                        Ok(resp) if [200, 202].contains(&resp.status().as_u16()) => {
                            let v: Value = resp.json().await.unwrap();
                            acked.fetch_add(1, Ordering::Relaxed);
                            return Some((id, v["task_id"].as_str().unwrap().to_owned(), items));
                        }
                        Ok(resp) if [429, 503].contains(&resp.status().as_u16()) => {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(resp) => panic!("{id}: unexpected {}", resp.status()),
                        Err(_) => {}
                    }
                    // A client's backoff before it retries with the same id.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                None
            }
        })
        .buffer_unordered(8)
        .filter_map(|x| async move { x })
        .collect()
        .await;
    let submitted_per_sec = r.orders as f64 / started.elapsed().as_secs_f64().max(0.001);
    let fault_at = tokio::task::spawn_blocking(move || injector.join().unwrap())
        .await
        .unwrap();
    tracker
        .lock()
        .expected
        .extend(accepted.iter().map(|(_, task, _)| task.clone()));
    let deadline = Instant::now() + DEADLINE;
    all_ready(&tracker, &resolving, deadline).await;
    if r.fault == Fault::None {
        drained(&tracker, &resolving, deadline).await;
    }
    let elapsed = started.elapsed();

    // Final results, read back from the master the sentinels name now.
    let master = resolving
        .topology()
        .resolve(resolving.client())
        .await
        .unwrap();
    let mut conn = master.get_multiplexed_async_connection().await.unwrap();
    let mut confirmed = [0i64; SKUS];
    let (mut completed, mut failed) = (0usize, Vec::new());
    let mut last = started;
    for chunk in accepted.chunks(500) {
        let keys: Vec<String> = chunk.iter().map(|(_, t, _)| keys::task_meta(t)).collect();
        let values: Vec<Option<String>> = redis::cmd("MGET")
            .arg(keys)
            .query_async(&mut conn)
            .await
            .unwrap();
        for ((id, _, items), v) in chunk.iter().zip(values) {
            let Some(meta) = v.and_then(|v| serde_json::from_str::<ResultMeta>(&v).ok()) else {
                continue;
            };
            completed += 1;
            if meta.status != TaskState::Success {
                let why = meta
                    .exception()
                    .map(|e| format!("{}: {}", e.exc_type, e.message()));
                failed.push(format!(
                    "{id}: {} {}",
                    meta.status.as_str(),
                    why.unwrap_or_default()
                ));
            } else if meta.result["status"] == "confirmed" {
                for (sku, q) in items {
                    confirmed[*sku] += q;
                }
            }
        }
    }
    {
        let seen = tracker.lock();
        if let Some(t) = seen.completions.iter().max() {
            last = *t;
        }
    }
    let mut duplicates = 0i64;
    for (sku, qty) in confirmed.iter().enumerate() {
        let left: i64 = redis::cmd("GET")
            .arg(shop::keys::stock(&format!("S{sku}")))
            .query_async(&mut conn)
            .await
            .unwrap();
        duplicates += (INITIAL_STOCK - qty - left).abs();
    }
    // The longest pause in completions from the fault on: how long orders stopped finishing.
    let recovery = fault_at.and_then(|f| {
        let seen = tracker.lock();
        let mut after: Vec<Instant> = seen
            .completions
            .iter()
            .copied()
            .filter(|c| *c > f)
            .collect();
        after.sort();
        let mut prev = f;
        after
            .into_iter()
            .map(|c| c - std::mem::replace(&mut prev, c))
            .max()
    });
    let lost = accepted.len() - completed;
    let (mut waiting, mut unacked) = (0i64, 0i64);
    for list in keys::queue_lists("celery") {
        waiting += redis::cmd("LLEN")
            .arg(list)
            .query_async::<i64>(&mut conn)
            .await
            .unwrap();
    }
    unacked += redis::cmd("HLEN")
        .arg(keys::UNACKED)
        .query_async::<i64>(&mut conn)
        .await
        .unwrap();
    let busy = last
        .saturating_duration_since(started)
        .as_secs_f64()
        .max(0.001);
    let tasks = tracker.lock().ready.len();
    let tasks_per_sec = tasks as f64 / busy;
    println!(
        "scenario={} wait={} submitted={} acknowledged={} completed={} lost={} duplicates={} failed={} refused_then_retried={} left_waiting={} left_unacked={} longest_pause_ms={} submitted_per_sec={:.0} tasks_per_sec={:.0} seconds={:.1}",
        r.name, if r.wait { "1 replica" } else { "off" }, r.orders, accepted.len(), completed, lost, duplicates, failed.len(),
        refused.load(Ordering::Relaxed), waiting, unacked, recovery.map_or("-".into(), |d| d.as_millis().to_string()), submitted_per_sec, tasks_per_sec, elapsed.as_secs_f64()
    );
    assert_eq!(
        accepted.len(),
        r.orders,
        "every submission was eventually acknowledged"
    );
    if r.wait || r.fault != Fault::Failover {
        // Without WAIT, a failover of a live master can keep one part of a task's writes (on
        // the new master) and lose another (on the old one): printed, not asserted.
        assert_eq!(
            duplicates, 0,
            "stock matches the confirmed orders' final results"
        );
    }
    assert!(
        failed.is_empty(),
        "orders failed: {:?}",
        &failed[..failed.len().min(5)]
    );
    if r.wait || r.fault == Fault::None {
        assert_eq!(lost, 0, "an acknowledged order was lost");
    }
    if r.fault != Fault::None {
        assert!(recovery.is_some(), "orders completed after the failover");
    }
    listener.abort();
    Outcome {
        lost,
        tasks_per_sec,
        submitted_per_sec,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "sentinel suite: cargo test -p worker --test sentinel -- --ignored --nocapture --test-threads 1"]
async fn sentinel_failover_without_wait() {
    run(Run {
        name: "failover",
        orders: 1500,
        fault: Fault::Failover,
        wait: false,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "sentinel suite: cargo test -p worker --test sentinel -- --ignored --nocapture --test-threads 1"]
async fn sentinel_failover_with_wait() {
    run(Run {
        name: "failover-wait",
        orders: 1500,
        fault: Fault::Failover,
        wait: true,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "sentinel suite: cargo test -p worker --test sentinel -- --ignored --nocapture --test-threads 1"]
async fn primary_sigkilled_without_wait() {
    run(Run {
        name: "sigkill",
        orders: 1500,
        fault: Fault::KillPrimary,
        wait: false,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "sentinel suite: cargo test -p worker --test sentinel -- --ignored --nocapture --test-threads 1"]
async fn primary_sigkilled_with_wait() {
    run(Run {
        name: "sigkill-wait",
        orders: 1500,
        fault: Fault::KillPrimary,
        wait: true,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "sentinel suite: cargo test -p worker --test sentinel -- --ignored --nocapture --test-threads 1"]
async fn what_wait_costs_in_orders_per_second() {
    // Alternating runs, two of each, so that the machine's other load falls on both.
    let mut seen: [Vec<Outcome>; 2] = [Vec::new(), Vec::new()];
    for round in 0..4 {
        let wait = round % 2 == 1;
        let name = if wait { "steady-wait" } else { "steady" };
        let outcome = run(Run {
            name,
            orders: 2000,
            fault: Fault::None,
            wait,
        })
        .await;
        assert_eq!(outcome.lost, 0);
        seen[usize::from(wait)].push(outcome);
    }
    let mean =
        |v: &[Outcome], f: fn(&Outcome) -> f64| v.iter().map(f).sum::<f64>() / v.len() as f64;
    let (off, on) = (&seen[0], &seen[1]);
    println!(
        "wait_cost tasks_per_sec_off={:.0} tasks_per_sec_wait={:.0} ratio={:.2} submitted_per_sec_off={:.0} submitted_per_sec_wait={:.0} ratio={:.2}",
        mean(off, |o| o.tasks_per_sec),
        mean(on, |o| o.tasks_per_sec),
        mean(on, |o| o.tasks_per_sec) / mean(off, |o| o.tasks_per_sec),
        mean(off, |o| o.submitted_per_sec),
        mean(on, |o| o.submitted_per_sec),
        mean(on, |o| o.submitted_per_sec) / mean(off, |o| o.submitted_per_sec),
    );
}

/// A Python Celery client configured as the Celery docs say for Sentinel
/// (`broker_url='sentinel://...;sentinel://...'`, `broker_transport_options={'master_name': ...}`,
/// the same for the result backend) sends `process_order` to the Rust worker and gets its result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "sentinel suite: needs CELERY_PYTHON (skipped without it)"]
async fn a_python_celery_client_on_the_sentinel_url_gets_the_rust_workers_result() {
    let Some(py) = std::env::var_os("CELERY_PYTHON") else {
        eprintln!("skipped: CELERY_PYTHON is not set");
        return;
    };
    let sentinels = TestSentinels::start();
    let url = sentinels.url();
    let master = redis::Client::open(sentinels.master_url()).unwrap();
    let _: () = redis::cmd("SET")
        .arg(shop::keys::stock("A"))
        .arg(10)
        .query_async(&mut master.get_multiplexed_async_connection().await.unwrap())
        .await
        .unwrap();
    let _worker = Binaries::at(&url, env!("CARGO_BIN_EXE_worker")).worker(&env(true));
    let script = "import json; from fleet import app, process_order\n\
        r = process_order.delay(order_id='py-sentinel', customer={'id': 'c', 'email': 'c@example.com'}, items=[{'sku': 'A', 'quantity': 2, 'unit_price_cents': 250}])\n\
        r.get(timeout=60)\n\
        print(json.dumps({'state': r.state, 'result': r.result, 'transport': app.connection().transport_cls}))";
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(py)
            .args(["-c", script])
            .current_dir(dir)
            .env("REDIS_URL", &url)
            .env("REDIS_SENTINEL_MASTER", MASTER)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(report["state"], "SUCCESS", "{report}");
    assert_eq!(report["result"]["status"], "confirmed", "{report}");
    assert_eq!(report["result"]["total_cents"], 500, "{report}");
    assert_eq!(report["transport"], "sentinel", "{report}");
    assert!(!stdout.contains(PASSWORD));
}
