//! Part of the fault suite: one real worker under a memory cap (`prlimit --as`, 256 MiB as the
//! shipped Kubernetes limit, address space being stricter than resident memory) fed the second
//! review's hostile messages: it must stay up, dead-letter each (a bounded entry) with a FAILURE
//! for its id, and then run an ordinary order. Prints the worker's peak resident memory
//! (`VmHWM`) for each message and per concurrency slot (docs/reliability.md quotes it).

use std::time::Duration;

use celery_redis::broker::dead::DEAD_RAW_KEEP;
use celery_redis::broker::{Broker, DeadLetter};
use celery_redis::keys;
use celery_redis::protocol::TaskMessage;
use celery_redis::result::{ResultBackend, TaskState};
use redis::AsyncCommands;
use serde_json::json;
use testkit::{Binaries, Running, TestRedis};

use crate::bombs;

/// The worker's address-space cap, in bytes.
const CAP: u64 = 256 * 1024 * 1024;
const CONCURRENCY: usize = 4;

fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

/// Peak resident memory since the last reset, in MiB.
fn peak_mib(pid: u32) -> f64 {
    status_kib(pid, "VmHWM:") as f64 / 1024.0
}

/// Resets the peak to the current resident memory (Linux: `5` into `clear_refs`).
fn reset_peak(pid: u32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
}

struct Capped {
    worker: Running,
    conn: celery_redis::conn::Conn,
    results: ResultBackend,
}

impl Capped {
    fn pid(&self) -> u32 {
        self.worker.proc.child.id()
    }

    fn assert_alive(&mut self, after: &str) {
        let exited = self.worker.proc.child.try_wait().unwrap();
        assert!(
            exited.is_none(),
            "the worker died after {after}: {exited:?}"
        );
    }

    /// Pushes `entries` at once (one claim takes them all), waits for each id's FAILURE and
    /// returns the resident memory before, its peak meanwhile (MiB) and the failure messages.
    async fn feed(&mut self, name: &str, entries: &[(String, String)]) -> (Peak, Vec<String>) {
        reset_peak(self.pid());
        let before = status_kib(self.pid(), "VmRSS:") as f64 / 1024.0;
        let mut pipe = redis::pipe();
        for (_, raw) in entries {
            pipe.lpush("celery", raw).ignore();
        }
        pipe.query_async::<()>(&mut self.conn).await.unwrap();
        let mut messages = Vec::new();
        for (id, _) in entries {
            let meta = self.results.wait(id, Duration::from_secs(30)).await;
            if meta.is_err() {
                self.assert_alive(name);
            }
            let meta = meta.unwrap_or_else(|e| panic!("{name}: no result for {id}: {e}"));
            assert_eq!(meta.status, TaskState::Failure, "{name}: {id}");
            messages.push(meta.exception().unwrap().message());
        }
        let peak = peak_mib(self.pid());
        self.assert_alive(name);
        (Peak { before, peak }, messages)
    }
}

/// Resident memory before a batch and its peak during it, in MiB.
struct Peak {
    before: f64,
    peak: f64,
}

impl std::fmt::Display for Peak {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "{:.1} -> {:.1} MiB", self.before, self.peak)
    }
}

impl Peak {
    /// What the batch added, per concurrency slot.
    fn per_slot(&self) -> f64 {
        (self.peak - self.before).max(0.0) / CONCURRENCY as f64
    }
}

/// Sends an ordinary order and waits for its SUCCESS.
async fn order(w: &mut Capped, id: &str) {
    let msg = TaskMessage::new(
        "process_order",
        "celery",
        json!({"order_id": id, "customer": {"id": "c-1", "email": "ada@example.com"},
               "items": [{"sku": "A", "quantity": 1, "unit_price_cents": 250}]})
        .as_object()
        .cloned()
        .unwrap(),
    );
    Broker::new(w.conn.clone(), "celery", "test@host")
        .publish(&msg)
        .await
        .unwrap();
    let meta = w.results.wait(&msg.id, Duration::from_secs(60)).await;
    assert_eq!(meta.unwrap().status, TaskState::Success, "order {id}");
}

/// Whether util-linux's `prlimit` is on `PATH`.
fn prlimit_available() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join("prlimit").is_file()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fault-injection suite: cargo test -p worker --test faults -- --ignored --nocapture"]
async fn hostile_messages_under_a_memory_cap() {
    if !prlimit_available() {
        eprintln!("SKIPPED hostile_messages_under_a_memory_cap: util-linux's prlimit is not installed, so the worker cannot be capped");
        return;
    }
    let redis = TestRedis::start();
    let conn = redis.manager().await;
    shop::inventory::set_stock(&conn, "A", 10).await.unwrap();
    let cap = format!("--as={CAP}");
    let worker = Binaries::at(&redis.url(), env!("CARGO_BIN_EXE_worker"))
        .under(&["prlimit", &cap, "--"])
        .worker(&[
            ("WORKER_CONCURRENCY", CONCURRENCY.to_string()),
            ("RUST_LOG", "warn,worker::worker=info".to_owned()),
        ]);
    let results = redis.results(Duration::from_secs(3600)).await;
    let mut w = Capped {
        worker,
        conn: conn.clone(),
        results,
    };
    let started = peak_mib(w.pid());
    // One ordinary order first: what any first task costs is not counted against a bomb.
    order(&mut w, "before").await;
    let warm = status_kib(w.pid(), "VmRSS:") as f64 / 1024.0;

    let one = |id: &str, raw: String| vec![(id.to_owned(), raw)];
    let (bomb, why) = w
        .feed("zlib bomb", &one("bomb", bombs::zlib_bomb("bomb")))
        .await;
    assert_eq!(why, ["decompressed body is larger than 1048576 bytes"]);
    let plain = bombs::plain_zeros("plain-60mb", 60 * 1024 * 1024);
    let plain_len = plain.len();
    let (large, why) = w.feed("60 MB plain entry", &one("plain-60mb", plain)).await;
    assert!(
        why[0].starts_with("message is larger than 1048576 bytes"),
        "{why:?}"
    );
    let values = one("values", bombs::plain_zeros("values", 900 * 1024));
    let (values, why) = w.feed("a megabyte of 0,", &values).await;
    assert_eq!(why, ["body holds more than 65536 JSON values"]);
    let four: Vec<_> = (0..CONCURRENCY)
        .map(|i| format!("bomb-{i}"))
        .map(|id| (id.clone(), bombs::zlib_bomb(&id)))
        .collect();
    let (bombs4, _) = w.feed("four zlib bombs at once", &four).await;
    // The most a message within the limits costs: 65,000 values each, decoded, then refused by
    // the task's validation (four at once, one per slot).
    let heavy: Vec<_> = (0..CONCURRENCY)
        .map(|i| format!("heavy-{i}"))
        .map(|id| (id.clone(), bombs::largest_accepted(&id)))
        .collect();
    let (heavy4, why) = w
        .feed("four of the largest accepted messages", &heavy)
        .await;
    assert!(why.iter().all(|m| !m.contains("JSON values")), "{why:?}");

    order(&mut w, "after").await;
    w.assert_alive("the order");

    let stored: Vec<String> = w.conn.lrange(keys::DEAD_LETTER, 0, -1).await.unwrap();
    let size_refused = 3 + CONCURRENCY;
    let bounded = stored
        .iter()
        .filter_map(|e| serde_json::from_str::<DeadLetter>(e).ok())
        .filter(|d| d.raw_bytes.is_some())
        .inspect(|d| assert!(d.raw.len() <= DEAD_RAW_KEEP, "{}", d.reason))
        .count();
    assert_eq!(
        bounded, size_refused,
        "every size-refused entry keeps a prefix"
    );
    assert!(stored.iter().all(|e| e.len() < plain_len / 1000));
    eprintln!(
        "capped worker ({} MiB address space, concurrency {CONCURRENCY}): {started:.1} MiB resident once started, {warm:.1} MiB after an order; resident before -> peak during: a zlib bomb {bomb}, a 60 MB plain entry {large}, a megabyte of 0, {values}, four zlib bombs at once {bombs4} ({:.1} MiB per slot), four of the largest accepted messages at once {heavy4} ({:.1} MiB per slot)",
        CAP >> 20,
        bombs4.per_slot(),
        heavy4.per_slot(),
    );
}
