//! Rate limits (and time limits changed at run time) on in-process workers (test tasks, no shop) against a private
//! redis-server: a task's per-worker `rate_limit` and its `fleet_rate_limit` (two workers
//! sharing it) space its starts and lose none; remote control's `rate_limit` and `time_limit`
//! change them at run time with Celery's replies; a rate option that is not one refuses the
//! worker. The same `rate_limit` from the real Celery CLI is in `celery_tools.rs`.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use celery_redis::broker::Broker;
use celery_redis::conn::Conn;
use celery_redis::control::client::{call, Mailbox, Target};
use celery_redis::control::Lamport;
use celery_redis::protocol::TaskMessage;
use celery_redis::result::{ResultBackend, TaskState};
use celery_redis::shutdown::Trigger;
use celery_redis::task::{Options, Task, TaskContext, TaskError, Tasks};
use redis::AsyncCommands;
use serde_json::{json, Map, Value};
use testkit::TestRedis;

use crate::support::test_tasks::test_task;
use crate::support::Handle;
use worker::config::WorkerConfig;

use crate::support::WAIT;
const SHORT: Duration = Duration::from_secs(1);

/// When each task started, shared by the tasks of every worker of a test.
type Starts = Arc<Mutex<Vec<Instant>>>;

fn stamp(ctx: &TaskContext<'_>) -> Result<(), TaskError> {
    ctx.dep::<Starts>()?.lock().unwrap().push(Instant::now());
    Ok(())
}

test_task!(
    /// Two starts a second on each worker.
    PerWorker = "per_worker" { rate_limit: Some("2/s") } |ctx| stamp(ctx)
);

test_task!(
    /// Two starts a second by all workers together.
    FleetWide = "fleet_wide" { fleet_rate_limit: Some("120/m") } |ctx| stamp(ctx)
);

test_task!(
    /// No limits of its own; never ends by itself.
    Hang = "hang" {} |_| std::future::pending().await
);

test_task!(
    /// Ends at once; no limits of its own.
    Quick = "quick" {} |_| Ok(())
);

/// One start a minute; the first time it is asked to start, the place it needs is taken
/// (`Task::admit` refuses it for a millisecond).
struct Picky;

/// Whether `Picky` was refused its place once already.
#[derive(Default)]
struct Refused(std::sync::atomic::AtomicBool);

impl Task for Picky {
    const NAME: &'static str = "picky";
    const PARAMS: &'static [&'static str] = &[];
    type Args = Map<String, Value>;
    type Output = ();

    fn options() -> Options {
        Options {
            rate_limit: Some("1/m"),
            ..Options::default()
        }
    }

    fn admit(
        deps: &celery_redis::task::Deps,
        _: &[Value],
        _: &Map<String, Value>,
    ) -> Result<celery_redis::task::Place, Duration> {
        let refused = deps
            .get::<Arc<Refused>>()
            .map(|r| r.0.swap(true, Ordering::SeqCst));
        match refused {
            Some(false) => Err(Duration::from_millis(1)),
            _ => Ok(None),
        }
    }

    async fn run(_: &TaskContext<'_>, _: Self::Args) -> Result<(), TaskError> {
        Ok(())
    }
}

/// Its `admit` always refuses it, for longer than anything can wait.
struct Never;

impl Task for Never {
    const NAME: &'static str = "never";
    const PARAMS: &'static [&'static str] = &[];
    type Args = Map<String, Value>;
    type Output = ();

    fn admit(
        _: &celery_redis::task::Deps,
        _: &[Value],
        _: &Map<String, Value>,
    ) -> Result<celery_redis::task::Place, Duration> {
        Err(Duration::MAX)
    }

    async fn run(_: &TaskContext<'_>, _: Self::Args) -> Result<(), TaskError> {
        Ok(())
    }
}

test_task!(
    /// A rate option that is not a rate.
    Misconfigured = "misconfigured" { fleet_rate_limit: Some("ten a second") } |_| Ok(())
);

fn tasks(starts: &Starts) -> Tasks {
    Tasks::new()
        .task::<PerWorker>()
        .task::<FleetWide>()
        .task::<Hang>()
        .task::<Quick>()
        .task::<Picky>()
        .task::<Never>()
        .dep(starts.clone())
        .dep(Arc::new(Refused::default()))
}

fn spawn(url: &str, node: &str, starts: &Starts) -> (Trigger, Handle) {
    let env = [("WORKER_CONCURRENCY", "4"), ("WORKER_NAME", node)];
    crate::support::spawn_tasks(url, &env, |_, _| tasks(starts))
}

struct Fleet {
    redis: TestRedis,
    conn: Conn,
    broker: Broker,
    results: ResultBackend,
    starts: Starts,
    workers: Vec<(Trigger, Handle)>,
}

async fn fleet(nodes: &[&str]) -> Fleet {
    let redis = TestRedis::start();
    let starts = Starts::default();
    let workers = nodes
        .iter()
        .map(|node| spawn(&redis.url(), node, &starts))
        .collect();
    let conn = redis.manager().await;
    Fleet {
        broker: Broker::new(conn.clone(), "celery", "test@host"),
        results: ResultBackend::new(conn.clone(), redis.client(), WAIT, true),
        conn,
        redis,
        starts,
        workers,
    }
}

impl Fleet {
    async fn send(&self, task: &str) -> TaskMessage {
        let msg = TaskMessage::new(task, "celery", Map::new());
        self.broker.publish(&msg).await.unwrap();
        msg
    }

    async fn state(&self, msg: &TaskMessage) -> celery_redis::result::ResultMeta {
        self.results.wait(&msg.id, WAIT).await.unwrap()
    }

    /// Waits until `msg` is the one entry of the queue's schedule (put off, not run); returns
    /// how many seconds from now (Redis's clock) it is due.
    async fn put_off(&self, msg: &TaskMessage) -> f64 {
        let mut conn = self.conn.clone();
        let began = Instant::now();
        let scheduled: Vec<(String, f64)> = loop {
            let entries: Vec<(String, f64)> = conn
                .zrange_withscores("fleet:scheduled:celery", 0, -1)
                .await
                .unwrap();
            if !entries.is_empty() || began.elapsed() > WAIT {
                break entries;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert_eq!(scheduled.len(), 1, "{scheduled:?}");
        assert!(scheduled[0].0.contains(&msg.id));
        let (secs, micros): (f64, f64) = redis::cmd("TIME").query_async(&mut conn).await.unwrap();
        scheduled[0].1 - (secs + micros / 1e6)
    }

    /// Sends `n` of `task`, waits for every one to succeed; returns the starts, sorted.
    async fn run_all(&self, task: &str, n: usize) -> Vec<Instant> {
        let mut sent = Vec::new();
        for _ in 0..n {
            sent.push(self.send(task).await);
        }
        for msg in &sent {
            assert_eq!(self.state(msg).await.status, TaskState::Success);
        }
        let mut starts = self.starts.lock().unwrap().clone();
        starts.sort();
        starts
    }

    /// Stops the workers; returns how many messages are left held, queued and scheduled.
    async fn stop(self) -> (i64, i64, i64) {
        for (trigger, _) in &self.workers {
            trigger.fire();
        }
        for (_, handle) in self.workers {
            handle.await.unwrap().unwrap();
        }
        let mut conn = self.conn;
        let unacked: i64 = conn.hlen(celery_redis::keys::UNACKED).await.unwrap();
        let queued: i64 = conn.llen("celery").await.unwrap();
        let scheduled: i64 = conn.zcard("fleet:scheduled:celery").await.unwrap();
        drop(self.redis);
        (unacked, queued, scheduled)
    }
}

/// Starts `interval` apart: the whole span, and each gap (half an interval of slack for
/// the time between a start counted and the task running, which a busy machine stretches).
fn spaced(starts: &[Instant], interval: f64) {
    let gaps: Vec<f64> = starts
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect();
    let span: f64 = gaps.iter().sum();
    let whole = interval * gaps.len() as f64;
    assert!(span >= whole - interval / 2.0, "span {span} of {gaps:?}");
    assert!(gaps.iter().all(|g| *g >= interval / 2.0), "{gaps:?}");
}

/// Five of `task` (two starts a second) on workers `nodes`: each runs once, half a second apart,
/// and nothing is left held, queued or scheduled.
async fn five_spaced(nodes: &[&str], task: &str) {
    let f = fleet(nodes).await;
    let starts = f.run_all(task, 5).await;
    assert_eq!(starts.len(), 5, "each ran once");
    spaced(&starts, 0.5);
    assert_eq!(
        f.stop().await,
        (0, 0, 0),
        "nothing left held, queued or scheduled"
    );
}

#[tokio::test]
async fn a_per_worker_rate_spaces_the_starts_and_loses_none() {
    five_spaced(&["rate-a@test"], "per_worker").await;
}

#[tokio::test]
async fn a_fleet_wide_rate_holds_for_two_workers_together() {
    five_spaced(&["rate-a@test", "rate-b@test"], "fleet_wide").await;
}

/// A start its task's `admit` refuses did not happen: it uses up none of the rate. (The rate
/// was asked first, so the refused start took the minute's only token and the task, put off
/// for a millisecond, then waited the whole minute.)
#[tokio::test]
async fn a_start_refused_a_place_uses_up_none_of_its_rate() {
    let f = fleet(&["rate-a@test"]).await;
    let picky = f.send("picky").await;
    let meta = f.results.wait(&picky.id, Duration::from_secs(10)).await;
    assert_eq!(meta.map(|m| m.status).ok(), Some(TaskState::Success));
    assert_eq!(f.stop().await, (0, 0, 0));
}

/// A task's `admit` asking for `Duration::MAX` waits at most a day in the schedule (as one
/// over its rate), then asks again: it is not parked for ever.
#[tokio::test]
async fn a_place_refused_for_ever_waits_a_day_at_most() {
    let f = fleet(&["rate-a@test"]).await;
    let never = f.send("never").await;
    let wait = f.put_off(&never).await;
    assert!((86_000.0..=86_400.0).contains(&wait), "{wait}");
    assert_eq!(f.stop().await, (0, 0, 1));
}

/// A task put off by its rate comes back to be claimed again, maybe many times (a backlog
/// cycles through the schedule): it is received once, when it starts, as a Celery worker
/// receives a rate-limited task once. Each put-off claim used to log "received", count
/// `tasks_received_total` and send `task-received` again, so a backlog of ten thousand at 1/s
/// sent some thirty of each a second for tasks received long before.
#[tokio::test]
async fn a_task_put_off_by_its_rate_is_received_once() {
    use futures_util::StreamExt;

    let f = fleet(&[NODE]).await;
    let mut pubsub = f.redis.client().get_async_pubsub().await.unwrap();
    pubsub.subscribe("/0.celeryev/task.multi").await.unwrap();
    let mut events = pubsub.into_on_message();
    assert_eq!(
        ask(&f.conn, "enable_events", json!({})).await,
        json!({"ok": "task events enabled"})
    );
    let sent = [
        f.send("per_worker").await,
        f.send("per_worker").await,
        f.send("per_worker").await,
    ];
    let mut received: HashMap<String, usize> = HashMap::new();
    let mut succeeded = 0;
    while succeeded < sent.len() {
        let msg = tokio::time::timeout(WAIT, events.next())
            .await
            .unwrap()
            .unwrap();
        let batch = celery_redis::protocol::Fanout::decode(msg.get_payload_bytes()).unwrap();
        for e in batch.body.as_array().unwrap() {
            let id = e["uuid"].as_str().unwrap().to_owned();
            match e["type"].as_str().unwrap() {
                "task-received" => *received.entry(id).or_default() += 1,
                "task-succeeded" => succeeded += 1,
                _ => {}
            }
        }
    }
    for msg in &sent {
        assert_eq!(received.get(&msg.id), Some(&1), "{received:?}");
    }
    assert_eq!(f.stop().await, (0, 0, 0));
}

#[test]
fn a_rate_option_that_is_not_a_rate_refuses_the_worker() {
    let src = crate::support::source("redis://127.0.0.1:1", &[("WORKER_NAME", "bad@test")]);
    let cfg = WorkerConfig::from_source(&src).unwrap();
    let tasks = Tasks::new().task::<Misconfigured>();
    let err = worker::Worker::build(cfg, tasks, "bad@test".into()).err();
    assert_eq!(
        err.map(|e| e.to_string()).as_deref(),
        Some(
            "task misconfigured: fleet_rate_limit='ten a second' is not a rate (like \"10/s\", \
             \"100/m\", \"5/h\"): Invalid rate limit string: ValueError(\"could not convert \
             string to float: 'ten a second'\")"
        )
    );
}

const NODE: &str = "rate-a@test";

/// Calls `method` on [`NODE`] until it replies (it may still be subscribing).
async fn ask(conn: &Conn, method: &str, args: Value) -> Value {
    let (clock, mailbox) = (
        Lamport::default(),
        Mailbox {
            layout: celery_redis::keys::default_layout(),
            db: 0,
        },
    );
    let target = Target::Nodes(vec![NODE.into()]);
    for _ in 0..30 {
        let replies = call(conn, mailbox, &clock, method, args.clone(), &target, SHORT)
            .await
            .unwrap();
        if let Some((_, reply)) = replies.into_iter().next() {
            return reply;
        }
    }
    panic!("no reply to {method}");
}

#[tokio::test]
async fn remote_control_changes_a_rate_at_run_time_with_celerys_replies() {
    let f = fleet(&[NODE]).await;
    let set = |task: &str, rate: Value| json!({"task_name": task, "rate_limit": rate});
    let reply = |ok: &str| json!({"ok": ok});
    let (limited, disabled) = (
        reply("new rate limit set successfully"),
        reply("rate limit disabled successfully"),
    );
    assert_eq!(
        ask(&f.conn, "rate_limit", set("quick", json!("1/m"))).await,
        limited
    );
    let first = f.send("quick").await;
    assert_eq!(f.state(&first).await.status, TaskState::Success);
    // The next one waits in the schedule, for about a minute.
    let second = f.send("quick").await;
    let wait = f.put_off(&second).await;
    assert!((50.0..=60.0).contains(&wait), "{wait}");
    // Disabled: the next one runs at once (the one put off still waits its turn).
    assert_eq!(
        ask(&f.conn, "rate_limit", set("quick", Value::Null)).await,
        disabled
    );
    let third = f.send("quick").await;
    assert_eq!(f.state(&third).await.status, TaskState::Success);
    // Celery's replies follow the value sent: 0 and "" disable, "0" (no limit either) sets.
    assert_eq!(
        ask(&f.conn, "rate_limit", set("quick", json!(0))).await,
        disabled
    );
    assert_eq!(
        ask(&f.conn, "rate_limit", set("quick", json!(""))).await,
        disabled
    );
    assert_eq!(
        ask(&f.conn, "rate_limit", set("quick", json!("0"))).await,
        limited
    );
    assert_eq!(
        ask(&f.conn, "rate_limit", set("quick", json!(2.5))).await,
        limited
    );
    let fourth = f.send("quick").await;
    assert_eq!(f.state(&fourth).await.status, TaskState::Success);
    let error = |text: &str| json!({"error": text});
    // The rate is checked first, then the task.
    assert_eq!(
        ask(&f.conn, "rate_limit", set("nope", json!("abc"))).await,
        error(
            "Invalid rate limit string: ValueError(\"could not convert string to float: 'abc'\")"
        )
    );
    assert_eq!(
        ask(&f.conn, "rate_limit", set("nope", json!("5/m"))).await,
        error("unknown task")
    );
    assert_eq!(
        ask(&f.conn, "rate_limit", set("quick", json!("10/x"))).await,
        error("KeyError('x')")
    );
    assert_eq!(
        ask(&f.conn, "rate_limit", set("quick", json!(-5))).await,
        error("Invalid rate limit string: ValueError('rate limit must not be negative')")
    );
    let huge = ask(
        &f.conn,
        "rate_limit",
        set("quick", json!("9".repeat(100_000))),
    )
    .await;
    assert_eq!(
        huge,
        error(
            "Invalid rate limit string: ValueError('rate limit string longer than 64 characters')"
        )
    );
    for bad in [json!({"task_name": "quick"}), set("quick", json!([1]))] {
        let refused = ask(&f.conn, "rate_limit", bad).await;
        assert!(
            refused["error"]
                .as_str()
                .unwrap()
                .starts_with("bad argument"),
            "{refused}"
        );
    }
    let (_, _, scheduled) = f.stop().await;
    assert_eq!(scheduled, 1, "the one put off is still in the schedule");
}

#[tokio::test]
async fn remote_control_changes_time_limits_at_run_time_and_the_messages_own_still_wins() {
    let f = fleet(&[NODE]).await;
    let set = |args: Value| async { ask(&f.conn, "time_limit", args).await };
    let done = json!({"ok": "time limits set successfully"});
    assert_eq!(set(json!({"task_name": "hang", "soft": 0.3})).await, done);
    let soft = f.send("hang").await;
    let exc = f.state(&soft).await.exception().unwrap();
    assert_eq!(
        (exc.exc_type.as_str(), exc.exc_message),
        ("SoftTimeLimitExceeded", json!([0.3]))
    );
    // Both are set each time: the soft limit is gone.
    assert_eq!(set(json!({"task_name": "hang", "hard": 0.2})).await, done);
    let hard = f.send("hang").await;
    let mut own = TaskMessage::new("hang", "celery", Map::new());
    own.time_limit = Some(0.4);
    f.broker.publish(&own).await.unwrap();
    for (msg, limit) in [(&hard, 0.2), (&own, 0.4)] {
        let exc = f.state(msg).await.exception().unwrap();
        assert_eq!(
            (exc.exc_type.as_str(), exc.exc_message),
            ("TimeLimitExceeded", json!([limit]))
        );
    }
    let unknown = json!({"error": "unknown task"});
    assert_eq!(set(json!({"task_name": "nope", "soft": 1})).await, unknown);
    assert_eq!(set(json!({"soft": 1})).await, unknown);
    for bad in [json!(-1), json!("10"), json!([1])] {
        let refused = set(json!({"task_name": "hang", "soft": 1, "hard": bad})).await;
        assert_eq!(
            refused,
            json!({"error": "bad argument: hard must be a number of seconds (0 or more) or null"})
        );
    }
    // A refused request changed nothing: the hard limit of 0.2 still holds.
    let still = f.send("hang").await;
    let exc = f.state(&still).await.exception().unwrap();
    assert_eq!(exc.exc_message, json!([0.2]));
    assert_eq!(f.stop().await, (0, 0, 0));
}
