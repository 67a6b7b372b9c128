//! The fault-injection suite: the real binaries (three workers, both services) against a
//! redis-server with AOF, thousands of submissions over HTTP, and faults injected while they
//! run: SIGKILLed workers, a Redis restart, killed client connections, SIGTERMed workers,
//! poison messages, a Redis out of memory for 3 s. Each scenario asserts that every acknowledged submission reaches a final
//! state (lost = 0) and that no effect happened twice (stock reserved once per confirmed order,
//! one delivery per notification), and prints one line of figures.
//!
//! Run: `cargo test --release -p worker --test faults -- --ignored --nocapture --test-threads 1`
//!
//! Also here: [`capped`], hostile messages against one worker under a memory cap; and
//! `sigkill_workers_while_chords_complete`, 300 chords whose header members run on a worker
//! SIGKILLed every few milliseconds: each body published exactly once, results in header order.

mod bombs;
mod capped;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use celery_redis::keys;
use celery_redis::result::{ResultMeta, TaskState};
use futures_util::StreamExt;
use redis::AsyncCommands;
use serde_json::{json, Value};
use testkit::{Binary, Running, Seen, Stack, TestRedis, Tracker, WebhookReceiver};

const SKUS: usize = 10;
const INITIAL_STOCK: i64 = 400;
const DEADLINE: Duration = Duration::from_secs(180);

#[derive(Clone, Copy, PartialEq, Debug)]
enum Fault {
    KillWorkers,
    RestartRedis,
    KillConnections,
    TermWorkers,
    Poison,
    /// `maxmemory` just below what Redis uses, for [`BLIP`], then back (`noeviction`: Redis
    /// refuses writes meanwhile).
    MemoryBlip,
}

/// How long the Redis of [`Fault::MemoryBlip`] is out of memory.
const BLIP: Duration = Duration::from_secs(3);

impl Fault {
    /// The workers' `VISIBILITY_TIMEOUT_SECS`: 2 s, so that what a killed worker held comes
    /// back soon; far longer in the memory blip, whose recovery must not wait for any lease.
    fn visibility_secs(self) -> u64 {
        match self {
            Fault::MemoryBlip => 120,
            _ => 2,
        }
    }
}

struct Scenario {
    name: &'static str,
    orders: usize,
    notifications: usize,
    fault: Fault,
    /// Orders and notifications on queues of their own, served by workers on one, the other,
    /// and both (`TASK_ROUTES`, `WORKER_QUEUES`), instead of one `celery` queue for all.
    routed: bool,
}

/// The routes of a routed scenario, and the queues of the worker in each of the three slots.
const ROUTES: &str = "process_order=orders,send_notification=notifications";
const SLOT_QUEUES: [&str; 3] = ["orders", "notifications", "orders,notifications"];

/// What every process of a routed scenario reads besides its own variables.
fn routing(routed: bool) -> Vec<(&'static str, String)> {
    match routed {
        true => vec![("TASK_ROUTES", ROUTES.to_owned())],
        false => Vec::new(),
    }
}

fn worker_env(fault: Fault) -> Vec<(&'static str, String)> {
    let visibility = fault.visibility_secs().to_string();
    [
        ("WORKER_CONCURRENCY", "8"),
        ("VISIBILITY_TIMEOUT_SECS", visibility.as_str()),
        ("WORKER_SHUTDOWN_TIMEOUT_SECS", "5"),
        ("TASK_RETRY_BACKOFF_MS", "100"),
        ("TASK_MAX_RETRIES", "20"),
        // The webhook receiver listens on loopback, which is refused unless allowed.
        ("WEBHOOK_ALLOW", "127.0.0.1"),
        ("RUST_LOG", "warn,worker=info"),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_owned()))
    .collect()
}

/// Every other worker runs on a two-thread runtime, so the fleet mixes both runtimes; in a
/// routed scenario, the worker of `slot` consumes that slot's queues.
fn spawn_worker(stack: &Stack, slot: usize, routed: bool, fault: Fault) -> Running {
    static SPAWNED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let mut env = worker_env(fault);
    env.extend(routing(routed));
    if routed {
        env.push(("WORKER_QUEUES", SLOT_QUEUES[slot % 3].to_owned()));
    }
    let n = SPAWNED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    env.push(("WORKER_THREADS", (1 + n % 2).to_string()));
    stack.worker(&env)
}

fn spawn_service(stack: &Stack, binary: Binary, routed: bool) -> Running {
    let mut env = vec![("REDIS_TIMEOUT_MS", "1000".to_owned())];
    env.extend(routing(routed));
    stack.start(binary, &env)
}

/// Listens for results; after every (re)subscription it reads the outstanding results once, to
/// catch up on what was published while the connection was down.
async fn listen(
    client: redis::Client,
    tracker: Arc<Tracker>,
    subscribed: tokio::sync::oneshot::Sender<()>,
) {
    let (mut subscribed, never) = (Some(subscribed), tokio::sync::Notify::new());
    loop {
        if !tracker.follow(&client, &mut subscribed, &never).await {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// One submission: URL, id, body, the order's (sku, quantity) items, whether it is a webhook.
type Job = (String, String, Value, Vec<(usize, i64)>, bool);

struct Accepted {
    order_items: HashMap<String, Vec<(usize, i64)>>,
    notifications: Vec<String>,
    webhook_notifications: Vec<String>,
    task_ids: Vec<String>,
    /// When each task was acknowledged to its client, by task id.
    accepted_at: HashMap<String, Instant>,
}

/// POSTs every submission with `concurrency` clients. A submission that is not acknowledged
/// (503, 429, connection refused) is retried with the same id, as a real client would; it counts
/// only once acknowledged (202, or 200 for an id accepted before).
async fn submit_all(
    orders_url: &str,
    notes_url: &str,
    hook: &str,
    s: &Scenario,
    acked: Arc<AtomicUsize>,
) -> Accepted {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut jobs: Vec<Job> = Vec::new();
    for i in 0..s.orders {
        let items: Vec<(usize, i64)> = (0..1 + i % 2)
            .map(|k| ((i * 7 + k * 3) % SKUS, 1 + ((i + k) % 3) as i64))
            .collect();
        let body = json!({"order_id": format!("{}-o{i}", s.name), "customer": {"id": format!("c{}", i % 50), "email": format!("c{}@example.com", i % 50)},
            "items": items.iter().map(|(sku, q)| json!({"sku": format!("S{sku}"), "quantity": q, "unit_price_cents": 199})).collect::<Vec<_>>()});
        jobs.push((
            format!("{orders_url}/orders"),
            format!("{}-o{i}", s.name),
            body,
            items,
            false,
        ));
    }
    for i in 0..s.notifications {
        let id = format!("{}-n{i}", s.name);
        let webhook = i % 10 == 0;
        let mut body = json!({"notification_id": id, "recipient": format!("r{}@example.com", i % 20), "channel": if webhook { "webhook" } else { "log" },
            "subject": "s", "body": "b"});
        if webhook {
            body["url"] = json!(hook);
        }
        jobs.push((
            format!("{notes_url}/notifications"),
            id,
            body,
            Vec::new(),
            webhook,
        ));
    }
    // Interleave orders and notifications.
    jobs.sort_by_key(|j| {
        j.1.rsplit(['o', 'n'])
            .next()
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(0)
    });
    let results = futures_util::stream::iter(jobs)
        .map(|(url, id, body, items, webhook)| {
            let (http, acked) = (http.clone(), acked.clone());
            async move {
                for _ in 0..600 {
                    match http.post(&url).json(&body).send().await {
                        Ok(r) if r.status().as_u16() == 202 || r.status().as_u16() == 200 => {
                            let v: Value = r.json().await.unwrap();
                            acked.fetch_add(1, Ordering::Relaxed);
                            return Some((
                                id,
                                v["task_id"].as_str().unwrap().to_owned(),
                                items,
                                webhook,
                                url.ends_with("/orders"),
                                Instant::now(),
                            ));
                        }
                        Ok(r) if [429, 503].contains(&r.status().as_u16()) => {}
                        Ok(r) => panic!("{url} {id}: unexpected {}", r.status()),
                        Err(_) => {}
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                None
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    let mut acc = Accepted {
        order_items: HashMap::new(),
        notifications: Vec::new(),
        webhook_notifications: Vec::new(),
        task_ids: Vec::new(),
        accepted_at: HashMap::new(),
    };
    for (id, task, items, webhook, is_order, at) in results.into_iter().flatten() {
        acc.accepted_at.insert(task.clone(), at);
        acc.task_ids.push(task);
        if is_order {
            acc.order_items.insert(id, items);
        } else if webhook {
            acc.webhook_notifications.push(id);
        } else {
            acc.notifications.push(id);
        }
    }
    acc
}

fn poison_entries(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| match i % 4 {
            0 => "not json at all".to_owned(),
            1 => json!({"body": "W1tdLCB7fV0=", "content-type": "application/json", "headers": {"task": "process_order", "id": format!("poison-{i}")},
                        "properties": {"delivery_tag": format!("pt-{i}"), "body_encoding": "base64", "delivery_info": {"exchange": "", "routing_key": "celery"}}}).to_string(),
            2 => json!({"body": "W1tdLCB7fSwge31d", "headers": {"task": "process_order", "id": format!("poison-{i}")},
                        "properties": {"delivery_tag": format!("pt-{i}"), "body_encoding": "base64"}}).to_string(),
            _ => json!({"body": "eJzLSM3JyQcABiwCFQ==", "content-type": "application/json", "headers": {"task": "process_order", "id": format!("poison-{i}"), "compression": "application/x-brotli"},
                        "properties": {"delivery_tag": format!("pt-{i}"), "body_encoding": "base64"}}).to_string(),
        })
        .collect()
}

/// Injects the scenario's fault until the load is done and at least `min` faults happened.
#[allow(clippy::too_many_arguments)]
fn inject(
    fault: Fault,
    routed: bool,
    stack: Arc<Mutex<Stack>>,
    workers: Arc<Mutex<Vec<Running>>>,
    url: String,
    acked: Arc<AtomicUsize>,
    total: usize,
    done: Arc<AtomicBool>,
) -> Vec<Instant> {
    let mut at = Vec::new();
    let min = match fault {
        Fault::KillWorkers => 20,
        Fault::TermWorkers => 6,
        Fault::KillConnections => 5,
        Fault::RestartRedis | Fault::Poison | Fault::MemoryBlip => 1,
    };
    let pause = |ms: u64| std::thread::sleep(Duration::from_millis(ms + fastrand::u64(0..ms)));
    while !(done.load(Ordering::Relaxed) && at.len() >= min) {
        match fault {
            Fault::KillWorkers | Fault::TermWorkers => {
                pause(if fault == Fault::KillWorkers {
                    100
                } else {
                    250
                });
                let i = fastrand::usize(0..3);
                let fresh = spawn_worker(&stack.lock().unwrap(), i, routed, fault);
                let old = std::mem::replace(&mut workers.lock().unwrap()[i], fresh);
                at.push(Instant::now());
                if fault == Fault::KillWorkers {
                    old.kill();
                } else {
                    // Asserts a clean exit (0) on SIGTERM.
                    old.stop();
                }
            }
            Fault::KillConnections => {
                pause(300);
                let mut conn = redis::Client::open(url.as_str())
                    .unwrap()
                    .get_connection()
                    .unwrap();
                for kind in ["normal", "pubsub"] {
                    let _: redis::RedisResult<i64> = redis::cmd("CLIENT")
                        .arg("KILL")
                        .arg("TYPE")
                        .arg(kind)
                        .query(&mut conn);
                }
                at.push(Instant::now());
            }
            Fault::RestartRedis if at.is_empty() => {
                while acked.load(Ordering::Relaxed) < total * 2 / 5 && !done.load(Ordering::Relaxed)
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                stack.lock().unwrap().redis.restart();
                at.push(Instant::now());
            }
            Fault::Poison if at.is_empty() => {
                let mut conn = redis::Client::open(url.as_str())
                    .unwrap()
                    .get_connection()
                    .unwrap();
                for (i, entry) in poison_entries(60).into_iter().enumerate() {
                    while acked.load(Ordering::Relaxed) < i * total / 80
                        && !done.load(Ordering::Relaxed)
                    {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    let _: () = redis::cmd("LPUSH")
                        .arg("celery")
                        .arg(entry)
                        .query(&mut conn)
                        .unwrap();
                }
                at.push(Instant::now());
            }
            Fault::MemoryBlip if at.is_empty() => {
                while acked.load(Ordering::Relaxed) < total * 2 / 5 && !done.load(Ordering::Relaxed)
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                at.push(memory_blip(&url));
            }
            Fault::RestartRedis | Fault::Poison | Fault::MemoryBlip => {
                std::thread::sleep(Duration::from_millis(20))
            }
        }
    }
    at
}

/// One `INFO` field of the Redis at `url`, as a number.
fn info_number(conn: &mut redis::Connection, section: &str, field: &str) -> u64 {
    let info: String = redis::cmd("INFO").arg(section).query(conn).unwrap();
    info.lines()
        .find_map(|l| l.trim_end().strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim_start_matches("count=").split(',').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Puts Redis out of memory for [`BLIP`] (`maxmemory` 512 KiB below what it uses), then lifts
/// the limit; returns when it ended.
fn memory_blip(url: &str) -> Instant {
    let mut conn = redis::Client::open(url).unwrap().get_connection().unwrap();
    let used = info_number(&mut conn, "memory", "used_memory");
    let limit = used.saturating_sub(512 * 1024).max(1);
    let set = |conn: &mut redis::Connection, limit: u64| {
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory")
            .arg(limit)
            .query::<()>(conn)
            .unwrap()
    };
    set(&mut conn, limit);
    std::thread::sleep(BLIP);
    set(&mut conn, 0);
    let refused = info_number(&mut conn, "errorstats", "errorstat_OOM");
    println!(
        "memory blip: used_memory={used} maxmemory={limit} for {BLIP:?}; OOM refusals={refused}"
    );
    assert!(refused > 0, "the blip refused nothing: it tested nothing");
    Instant::now()
}

/// After a memory blip that ended at `end`: how long until every task acknowledged before its
/// end was ready (the backlog the blip left drained).
fn backlog_recovery(seen: &Seen, accepted: &Accepted, end: Instant) -> Duration {
    accepted
        .accepted_at
        .iter()
        .filter(|(_, at)| **at <= end)
        .filter_map(|(task, _)| seen.ready_at.get(task))
        .map(|ready| ready.saturating_duration_since(end))
        .max()
        .unwrap_or_default()
}

struct Figures {
    lost: Vec<String>,
    completed: usize,
    redelivered: u32,
    recovery: Duration,
    confirmed_qty: [i64; SKUS],
    failures: Vec<String>,
}

/// What the events say: lost and completed tasks, re-executions, the longest time from a fault
/// to the next completion, confirmed quantities per SKU, and orders that did not succeed.
fn figures(seen: &Seen, faults: &[Instant], accepted: &Accepted) -> Figures {
    let lost: Vec<String> = seen
        .expected
        .iter()
        .filter(|id| !seen.ready.contains_key(*id))
        .cloned()
        .collect();
    let recovery = faults
        .iter()
        .filter_map(|f| {
            seen.completions
                .iter()
                .filter(|c| *c > f)
                .min()
                .map(|c| *c - *f)
        })
        .max()
        .unwrap_or_default();
    let by_order: HashMap<&str, &ResultMeta> = seen
        .ready
        .values()
        .filter_map(|m| Some((m.result.get("order_id")?.as_str()?, m)))
        .collect();
    let mut confirmed_qty = [0i64; SKUS];
    let mut failures = Vec::new();
    for (order_id, items) in &accepted.order_items {
        let Some(meta) = by_order.get(order_id.as_str()) else {
            continue;
        };
        if meta.status != TaskState::Success {
            failures.push(format!("{order_id}: {meta:?}"));
        } else if meta.result["status"] == "confirmed" {
            for (sku, q) in items {
                confirmed_qty[*sku] += q;
            }
        }
    }
    Figures {
        completed: seen.expected.len() - lost.len(),
        lost,
        redelivered: seen.started.values().map(|n| n.saturating_sub(1)).sum(),
        recovery,
        confirmed_qty,
        failures,
    }
}

async fn run(s: Scenario) {
    let stack = Stack::on(
        TestRedis::start_with(&["--appendonly", "yes"]),
        env!("CARGO_BIN_EXE_worker"),
    );
    let url = stack.url.clone();
    let client = stack.redis.client();
    let parsed_url = stack.redis.parsed_url();
    let mut conn = stack.redis.manager().await;
    for sku in 0..SKUS {
        conn.set::<_, _, ()>(shop::keys::stock(&format!("S{sku}")), INITIAL_STOCK)
            .await
            .unwrap();
    }
    let mut hook = WebhookReceiver::start(Vec::new()).await;
    let tracker = Arc::new(Tracker::default());
    let (tx, subscribed) = tokio::sync::oneshot::channel();
    let listener = tokio::spawn(listen(client.clone(), tracker.clone(), tx));
    subscribed.await.unwrap();
    let workers = Arc::new(Mutex::new(
        (0..3)
            .map(|slot| spawn_worker(&stack, slot, s.routed, s.fault))
            .collect::<Vec<_>>(),
    ));
    let orders = spawn_service(&stack, Binary::Order, s.routed);
    let notes = spawn_service(&stack, Binary::Notification, s.routed);
    let (orders_url, notes_url) = (orders.url.clone(), notes.url.clone());
    let stack = Arc::new(Mutex::new(stack));

    let (acked, done) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let injector = {
        let (stack, workers, url, acked, done) = (
            stack.clone(),
            workers.clone(),
            url.clone(),
            acked.clone(),
            done.clone(),
        );
        let total = s.orders + s.notifications;
        let (fault, routed) = (s.fault, s.routed);
        std::thread::spawn(move || inject(fault, routed, stack, workers, url, acked, total, done))
    };
    let started = Instant::now();
    let accepted = submit_all(&orders_url, &notes_url, &hook.url, &s, acked.clone()).await;
    // The load is in; faults stop once the scenario's minimum has been injected.
    done.store(true, Ordering::Relaxed);
    tracker
        .expect(&client, accepted.task_ids.iter().cloned())
        .await;
    let deadline = Instant::now() + DEADLINE;
    tracker.all_ready(deadline).await;
    // Confirmed orders sent a confirmation each: those must complete too.
    let confirmations: Vec<String> = {
        let seen = tracker.lock();
        seen.ready
            .values()
            .filter_map(|m| {
                m.children
                    .as_ref()?
                    .get(0)?
                    .get(0)?
                    .get(0)?
                    .as_str()
                    .map(str::to_owned)
            })
            .collect()
    };
    tracker.expect(&client, confirmations.iter().cloned()).await;
    tracker.all_ready(deadline).await;
    let faults = injector.join().unwrap();
    tracker.all_ready(deadline).await;
    let elapsed = started.elapsed();
    let mut conn = celery_redis::conn::Conn::new(
        &parsed_url,
        celery_redis::conn::Waits {
            response: None,
            connect_retries: 2,
        },
    )
    .unwrap();

    let submitted = s.orders + s.notifications;
    let f = figures(&tracker.lock(), &faults, &accepted);
    let (lost, completed, redelivered, recovery) = (f.lost, f.completed, f.redelivered, f.recovery);
    let (confirmed_qty, failures) = (f.confirmed_qty, f.failures);
    let mut stock_duplicates = 0;
    for (sku, qty) in confirmed_qty.iter().enumerate() {
        let left: i64 = conn
            .get(shop::keys::stock(&format!("S{sku}")))
            .await
            .unwrap();
        assert!(left >= 0, "stock went negative");
        stock_duplicates += (INITIAL_STOCK - qty - left).abs();
    }
    let mut delivered = 0usize;
    let mut list_entries = 0usize;
    let mut recipients: Vec<String> = (0..20).map(|i| format!("r{i}@example.com")).collect();
    recipients.extend((0..50).map(|i| format!("c{i}@example.com")));
    let mut listed = HashSet::new();
    for r in &recipients {
        let ids: Vec<String> = conn
            .lrange(shop::keys::recipient_deliveries(r), 0, -1)
            .await
            .unwrap();
        list_entries += ids.len();
        listed.extend(ids);
    }
    for id in accepted
        .notifications
        .iter()
        .chain(&accepted.webhook_notifications)
    {
        delivered += usize::from(
            shop::notifications::delivery(&conn, id)
                .await
                .unwrap()
                .is_some(),
        );
    }
    let delivery_duplicates = list_entries - listed.len();
    let mut hook_hits: HashMap<String, usize> = HashMap::new();
    while let Ok(hit) = hook.hits.try_recv() {
        *hook_hits
            .entry(hit.idempotency_key.unwrap_or_default())
            .or_default() += 1;
    }
    let webhook_repeats: usize = hook_hits.values().map(|n| n - 1).sum();
    let dead: i64 = conn.llen(keys::DEAD_LETTER).await.unwrap();
    let duplicates = stock_duplicates as usize + delivery_duplicates;

    println!(
        "scenario={} submitted={} acknowledged={} completed={} lost={} duplicates={} redelivered={} faults={} longest_recovery_ms={} webhook_repeats_same_key={} dead_lettered={} seconds={:.1}",
        s.name, submitted, accepted.task_ids.len(), completed, lost.len(), duplicates, redelivered, faults.len(),
        recovery.as_millis(), webhook_repeats, dead, elapsed.as_secs_f64()
    );
    assert!(lost.is_empty(), "lost: {:?}", &lost[..lost.len().min(10)]);
    assert_eq!(
        duplicates, 0,
        "stock off by {stock_duplicates}, {delivery_duplicates} duplicate deliveries"
    );
    assert!(
        failures.is_empty(),
        "orders failed: {:?}",
        &failures[..failures.len().min(5)]
    );
    assert_eq!(
        accepted.task_ids.len(),
        submitted,
        "every submission was eventually acknowledged"
    );
    assert_eq!(
        delivered,
        accepted.notifications.len() + accepted.webhook_notifications.len(),
        "one delivery per notification"
    );
    assert_eq!(
        hook_hits.len(),
        accepted.webhook_notifications.len(),
        "every webhook reached, each with its key"
    );
    assert_eq!(
        listed.len(),
        delivered + confirmations.len(),
        "every confirmation delivered once"
    );
    if let (Fault::MemoryBlip, Some(end)) = (s.fault, faults.first()) {
        let recovery = backlog_recovery(&tracker.lock(), &accepted, *end);
        let visibility = Duration::from_secs(s.fault.visibility_secs());
        println!(
            "scenario={} backlog_recovery_ms={} (from the end of the blip until every task acknowledged before it was ready; visibility timeout {}s)",
            s.name,
            recovery.as_millis(),
            visibility.as_secs()
        );
        assert!(
            recovery < visibility / 4,
            "recovery took {recovery:?}: something waited for a lease"
        );
    }
    match s.fault {
        Fault::Poison => {
            assert_eq!(dead, 60, "every poison message dead-lettered");
            for w in workers.lock().unwrap().iter_mut() {
                assert!(w.is_running(), "a worker died on poison");
            }
        }
        _ => assert_eq!(dead, 0),
    }
    listener.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fault-injection suite: cargo test -p worker --test faults -- --ignored --nocapture"]
async fn sigkill_workers_at_random_moments() {
    run(Scenario {
        name: "sigkill",
        orders: 5000,
        notifications: 1000,
        fault: Fault::KillWorkers,
        routed: false,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fault-injection suite: cargo test -p worker --test faults -- --ignored --nocapture"]
async fn restart_redis_with_aof_mid_run() {
    run(Scenario {
        name: "redis-restart",
        orders: 2000,
        notifications: 400,
        fault: Fault::RestartRedis,
        routed: false,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fault-injection suite: cargo test -p worker --test faults -- --ignored --nocapture"]
async fn kill_all_client_connections() {
    run(Scenario {
        name: "client-kill",
        orders: 2000,
        notifications: 400,
        fault: Fault::KillConnections,
        routed: false,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fault-injection suite: cargo test -p worker --test faults -- --ignored --nocapture"]
async fn sigterm_workers_under_load() {
    run(Scenario {
        name: "sigterm",
        orders: 2000,
        notifications: 400,
        fault: Fault::TermWorkers,
        routed: false,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fault-injection suite: cargo test -p worker --test faults -- --ignored --nocapture"]
async fn poison_messages_among_real_ones() {
    run(Scenario {
        name: "poison",
        orders: 2000,
        notifications: 400,
        fault: Fault::Poison,
        routed: false,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fault-injection suite: cargo test -p worker --test faults -- --ignored --nocapture"]
async fn sigkill_workers_on_routed_queues() {
    // Orders and notifications on queues of their own; the three workers consume orders,
    // notifications, and both, and are SIGKILLed at random as in `sigkill`.
    run(Scenario {
        name: "sigkill-routed",
        orders: 3000,
        notifications: 600,
        fault: Fault::KillWorkers,
        routed: true,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fault-injection suite: cargo test -p worker --test faults -- --ignored --nocapture"]
async fn redis_out_of_memory_for_three_seconds() {
    run(Scenario {
        name: "redis-oom",
        orders: 2000,
        notifications: 400,
        fault: Fault::MemoryBlip,
        routed: false,
    })
    .await;
}

/// Chords whose header members run on a Rust worker SIGKILLed at random moments, again and
/// again (some between a member's join and the step that publishes the body): each chord's
/// body is published exactly once (counted on a queue no worker consumes), with its header's
/// results in header order.
#[tokio::test]
#[ignore = "fault-injection suite: cargo test -p worker --test faults -- --ignored --nocapture"]
async fn sigkill_workers_while_chords_complete() {
    use base64::Engine as _;
    use celery_redis::protocol::TaskMessage;

    const CHORDS: usize = 300;
    const MEMBERS: usize = 4;
    let stack = Stack::new(env!("CARGO_BIN_EXE_worker"));
    let redis = &stack.redis;
    let mut conn = redis.manager().await;
    shop::inventory::set_stock(&conn, "A", 1_000_000)
        .await
        .unwrap();
    let broker = celery_redis::broker::Broker::new(conn.clone(), "celery", "chords@test");
    let results = celery_redis::result::ResultBackend::new(
        conn.clone(),
        redis.client(),
        Duration::from_secs(3600),
        true,
    );
    let mut expected = HashMap::new();
    for c in 0..CHORDS {
        let ids: Vec<String> = (0..MEMBERS).map(|m| format!("chord-{c}-{m}")).collect();
        let mut header: Vec<TaskMessage> = ids
            .iter()
            .map(|id| {
                let kwargs = json!({"order_id": id, "customer": {"id": "c", "email": "c@example.com"},
                                    "items": [{"sku": "A", "quantity": 1, "unit_price_cents": 100}]});
                TaskMessage::new("process_order", "celery", kwargs.as_object().cloned().unwrap())
            })
            .collect();
        let body = json!({"task": "collect", "options": {"queue": "bodies"}});
        let body = serde_json::from_value(body).unwrap();
        let chord = broker
            .publish_chord(&mut header, body, &results)
            .await
            .unwrap();
        expected.insert(chord.body_id, ids);
    }
    let env = [
        ("WORKER_CONCURRENCY", "8".to_owned()),
        ("VISIBILITY_TIMEOUT_SECS", "1".to_owned()),
        ("MESSAGE_MAX_DELIVERIES", "1000".to_owned()),
        ("RUST_LOG", "warn,worker=info".to_owned()),
    ];
    let spawn = || stack.worker(&env);
    let began = Instant::now();
    let mut kills = 0;
    loop {
        let published: usize = conn.llen("bodies").await.unwrap();
        if published >= CHORDS || began.elapsed() > DEADLINE {
            break;
        }
        let worker = spawn();
        tokio::time::sleep(Duration::from_millis(fastrand::u64(5..60))).await;
        worker.kill();
        kills += 1;
    }
    // One worker lives on until nothing is held or queued, past two visibility timeouts, so a
    // member lost after its join would have published its body again by then.
    let last = spawn();
    loop {
        let queued: usize = conn.llen("celery").await.unwrap();
        let held: usize = conn.hlen(keys::UNACKED).await.unwrap();
        if queued == 0 && held == 0 {
            break;
        }
        assert!(
            began.elapsed() < DEADLINE * 2,
            "{queued} queued, {held} held"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    drop(last);
    let entries: Vec<String> = conn.lrange("bodies", 0, -1).await.unwrap();
    println!(
        "chords: {CHORDS} x {MEMBERS} members, {kills} SIGKILLs, {} bodies published",
        entries.len()
    );
    let mut seen = HashSet::new();
    for raw in &entries {
        let envelope: Value = serde_json::from_str(raw).unwrap();
        let id = envelope["headers"]["id"].as_str().unwrap().to_owned();
        let body = base64::engine::general_purpose::STANDARD
            .decode(envelope["body"].as_str().unwrap())
            .unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap();
        let order_ids: Vec<&str> = body[0][0]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["order_id"].as_str().unwrap())
            .collect();
        assert_eq!(order_ids, expected[&id], "results in header order");
        assert!(seen.insert(id), "a body published twice");
    }
    assert_eq!(seen.len(), CHORDS, "every body published once");
}
