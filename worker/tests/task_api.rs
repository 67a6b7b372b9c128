//! The task API as a user's task meets it, on an in-process worker built with a table of test
//! tasks (no shop): the request a task sees, its arguments bound as Python binds them, its
//! options (max_retries, time limits and the message's own limit winning, ignore_result, its
//! default queue, retry backoff and countdown, blocking), tasks sent on, and a dependency the
//! worker was not given.

use std::collections::HashMap;
use std::time::Duration;

use celery_redis::broker::Broker;
use celery_redis::protocol::TaskMessage;
use celery_redis::result::{ResultBackend, TaskState};
use celery_redis::shutdown;
use celery_redis::task::{Options, Task, TaskContext, TaskError, Tasks};
use redis::AsyncCommands;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use testkit::TestRedis;
use worker::config::WorkerConfig;

const WAIT: Duration = Duration::from_secs(30);

/// Returns what it sees of its request.
struct Echo;

#[derive(Deserialize)]
struct EchoArgs {
    a: Value,
    #[serde(default)]
    b: Option<Value>,
}

impl Task for Echo {
    const NAME: &'static str = "echo";
    const PARAMS: &'static [&'static str] = &["a", "b"];
    type Args = EchoArgs;
    type Output = Value;

    async fn run(ctx: &TaskContext<'_>, args: EchoArgs) -> Result<Value, TaskError> {
        Ok(json!({
            "a": args.a, "b": args.b, "id": ctx.id(), "root_id": ctx.root_id(),
            "parent_id": ctx.parent_id(), "group": ctx.group(), "retries": ctx.retries(),
            "queue": ctx.queue(), "hostname": ctx.hostname(), "args": ctx.args(),
            "kwargs": ctx.kwargs(),
        }))
    }
}

/// Always asks to be retried; allowed none.
struct Flaky;

impl Task for Flaky {
    const NAME: &'static str = "flaky";
    const PARAMS: &'static [&'static str] = &[];
    type Args = Map<String, Value>;
    type Output = ();

    fn options() -> Options {
        Options {
            max_retries: Some(0),
            ..Options::default()
        }
    }

    async fn run(_: &TaskContext<'_>, _: Self::Args) -> Result<(), TaskError> {
        Err(TaskError::Retry(celery_redis::result::ExceptionInfo::new(
            "builtins",
            "RuntimeError",
            "try again",
        )))
    }
}

/// Never ends by itself: its time limit stops it.
struct Slow;

impl Task for Slow {
    const NAME: &'static str = "slow";
    const PARAMS: &'static [&'static str] = &[];
    type Args = Map<String, Value>;
    type Output = ();

    fn options() -> Options {
        Options {
            time_limit: Some(0.2),
            ..Options::default()
        }
    }

    async fn run(_: &TaskContext<'_>, _: Self::Args) -> Result<(), TaskError> {
        std::future::pending().await
    }
}

/// Stores no result; sends an `echo` and a `routed` on.
struct Quiet;

impl Task for Quiet {
    const NAME: &'static str = "quiet";
    const PARAMS: &'static [&'static str] = &[];
    type Args = Map<String, Value>;
    type Output = ();

    fn options() -> Options {
        Options {
            ignore_result: true,
            ..Options::default()
        }
    }

    async fn run(ctx: &TaskContext<'_>, _: Self::Args) -> Result<(), TaskError> {
        let kwargs = |v: Value| v.as_object().cloned().unwrap_or_default();
        ctx.send(ctx.child(Routed::NAME, Map::new()));
        let mut echo = ctx.child(Echo::NAME, kwargs(json!({"a": "child"})));
        echo.id = format!("{}-echo", ctx.id());
        ctx.send(echo);
        ctx.commit()
    }
}

/// Sent to its own queue when no route names it.
struct Routed;

impl Task for Routed {
    const NAME: &'static str = "routed";
    const PARAMS: &'static [&'static str] = &[];
    type Args = Map<String, Value>;
    type Output = ();

    fn options() -> Options {
        Options {
            queue: Some("elsewhere"),
            ..Options::default()
        }
    }

    async fn run(_: &TaskContext<'_>, _: Self::Args) -> Result<(), TaskError> {
        Ok(())
    }
}

/// Needs a dependency the worker was not given.
struct Needy;

impl Task for Needy {
    const NAME: &'static str = "needy";
    const PARAMS: &'static [&'static str] = &[];
    type Args = Map<String, Value>;
    type Output = ();

    async fn run(ctx: &TaskContext<'_>, _: Self::Args) -> Result<(), TaskError> {
        ctx.dep::<std::net::SocketAddr>().map(|_| ())
    }
}

/// Says it started, then waits to be let go: acknowledged at its start and no STARTED stored,
/// against the worker's settings (acks late, track started).
struct Gated;

#[derive(Default)]
struct Gate {
    started: tokio::sync::Notify,
    release: tokio::sync::Notify,
}

impl Task for Gated {
    const NAME: &'static str = "gated";
    const PARAMS: &'static [&'static str] = &[];
    type Args = Map<String, Value>;
    type Output = ();

    fn options() -> Options {
        Options {
            acks_late: Some(false),
            track_started: Some(false),
            ..Options::default()
        }
    }

    async fn run(ctx: &TaskContext<'_>, _: Self::Args) -> Result<(), TaskError> {
        let gate = ctx.dep::<std::sync::Arc<Gate>>()?;
        gate.started.notify_one();
        gate.release.notified().await;
        Ok(())
    }
}

/// Asks for retries with the task's own backoff (no jitter), or after a countdown when called
/// with `countdown_ms`; records when each attempt ran.
struct Backoff;

#[derive(Default)]
struct Attempts(std::sync::Mutex<Vec<std::time::Instant>>);

#[derive(Deserialize)]
struct BackoffArgs {
    #[serde(default)]
    countdown_ms: Option<u64>,
}

impl Task for Backoff {
    const NAME: &'static str = "backoff";
    const PARAMS: &'static [&'static str] = &["countdown_ms"];
    type Args = BackoffArgs;
    type Output = ();

    fn options() -> Options {
        Options {
            max_retries: Some(2),
            retry_backoff: Some(Duration::from_millis(300)),
            retry_backoff_max: Some(Duration::from_secs(60)),
            retry_jitter: Some(false),
            ..Options::default()
        }
    }

    async fn run(ctx: &TaskContext<'_>, args: BackoffArgs) -> Result<(), TaskError> {
        let attempts = ctx.dep::<std::sync::Arc<Attempts>>()?;
        attempts.0.lock().unwrap().push(std::time::Instant::now());
        let exc = celery_redis::result::ExceptionInfo::new("builtins", "OSError", "later");
        Err(match args.countdown_ms {
            Some(ms) => TaskError::RetryAfter(exc, Duration::from_millis(ms)),
            None => TaskError::Retry(exc),
        })
    }
}

/// Spins a CPU (never awaits) until the test lets it go, or 30 s: blocking, so it runs off the
/// async threads.
struct Spin;

#[derive(Default)]
struct SpinGate {
    started: tokio::sync::Notify,
    release: std::sync::atomic::AtomicBool,
    runs: std::sync::atomic::AtomicUsize,
}

impl Task for Spin {
    const NAME: &'static str = "spin";
    const PARAMS: &'static [&'static str] = &[];
    type Args = Map<String, Value>;
    type Output = &'static str;

    fn options() -> Options {
        Options {
            blocking: true,
            ..Options::default()
        }
    }

    async fn run(ctx: &TaskContext<'_>, _: Self::Args) -> Result<&'static str, TaskError> {
        use std::sync::atomic::Ordering;
        let gate = ctx.dep::<std::sync::Arc<SpinGate>>()?;
        gate.runs.fetch_add(1, Ordering::SeqCst);
        gate.started.notify_one();
        let began = std::time::Instant::now();
        while !gate.release.load(Ordering::SeqCst) {
            if began.elapsed() > Duration::from_secs(30) {
                return Ok("never let go");
            }
            std::hint::spin_loop();
        }
        Ok("let go")
    }
}

/// Blocking, and panics on its thread.
struct Boom;

impl Task for Boom {
    const NAME: &'static str = "boom";
    const PARAMS: &'static [&'static str] = &[];
    type Args = Map<String, Value>;
    type Output = ();

    fn options() -> Options {
        Options {
            blocking: true,
            ..Options::default()
        }
    }

    async fn run(_: &TaskContext<'_>, _: Self::Args) -> Result<(), TaskError> {
        panic!("boom")
    }
}

struct Running {
    _redis: TestRedis,
    conn: celery_redis::conn::Conn,
    broker: Broker,
    results: ResultBackend,
    trigger: shutdown::Trigger,
    gate: std::sync::Arc<Gate>,
    attempts: std::sync::Arc<Attempts>,
    spin: std::sync::Arc<SpinGate>,
    handle: tokio::task::JoinHandle<Result<(), worker::worker::WorkerError>>,
}

async fn start() -> Running {
    start_with(&[]).await
}

async fn start_with(extra: &[(&'static str, &str)]) -> Running {
    let redis = TestRedis::start();
    let mut vars: HashMap<&str, String> = HashMap::from([
        ("REDIS_URL", redis.url()),
        ("WORKER_METRICS_BIND", "127.0.0.1:0".to_owned()),
        ("TASK_RETRY_BACKOFF_MS", "20".to_owned()),
        ("WORKER_NAME", "api@test".to_owned()),
    ]);
    vars.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let cfg = WorkerConfig::from_source(&move |k: &str| vars.get(k).cloned()).unwrap();
    let tasks = Tasks::new()
        .task::<Echo>()
        .task::<Flaky>()
        .task::<Slow>()
        .task::<Quiet>()
        .task::<Routed>()
        .task::<Needy>()
        .task::<Gated>()
        .task::<Backoff>()
        .task::<Spin>()
        .task::<Boom>();
    let gate = std::sync::Arc::new(Gate::default());
    let attempts = std::sync::Arc::new(Attempts::default());
    let spin = std::sync::Arc::new(SpinGate::default());
    let tasks = tasks
        .dep(gate.clone())
        .dep(attempts.clone())
        .dep(spin.clone());
    let (trigger, stop) = shutdown::channel();
    let handle = tokio::spawn(worker::run(cfg, tasks, stop));
    let conn = redis.manager().await;
    Running {
        broker: Broker::new(conn.clone(), "celery", "test@host"),
        results: ResultBackend::new(
            conn.clone(),
            redis.client(),
            Duration::from_secs(3600),
            true,
        ),
        conn,
        _redis: redis,
        trigger,
        gate,
        attempts,
        spin,
        handle,
    }
}

impl Running {
    async fn call(&self, task: &str, args: Value, kwargs: Value) -> TaskMessage {
        let mut msg = TaskMessage::new(task, "celery", kwargs.as_object().cloned().unwrap());
        msg.body.args = args.as_array().cloned().unwrap();
        self.broker.publish(&msg).await.unwrap();
        msg
    }

    /// Stops the worker (running tasks end first); its Redis lives on in what is returned.
    async fn stop(self) -> TestRedis {
        self.trigger.fire();
        self.handle.await.unwrap().unwrap();
        self._redis
    }
}

#[tokio::test]
async fn a_task_sees_its_request_and_its_arguments_bound_by_name() {
    let w = start().await;
    let mut msg = TaskMessage::new("echo", "celery", Map::new());
    msg.body.args = vec![json!(1)];
    msg.body.kwargs = json!({"b": [2]}).as_object().cloned().unwrap();
    msg = msg.child_of("parent-1", "root-1");
    msg.group = Some("group-1".into());
    w.broker.publish(&msg).await.unwrap();
    let meta = w.results.wait(&msg.id, WAIT).await.unwrap();
    assert_eq!(meta.status, TaskState::Success, "{:?}", meta.result);
    assert_eq!(
        meta.result,
        json!({"a": 1, "b": [2], "id": msg.id, "root_id": "root-1", "parent_id": "parent-1",
               "group": "group-1", "retries": 0, "queue": "celery", "hostname": "api@test",
               "args": [1], "kwargs": {"b": [2]}})
    );
    let extra = w.call("echo", json!([1, 2]), json!({"c": 3})).await;
    let meta = w.results.wait(&extra.id, WAIT).await.unwrap();
    assert_eq!(meta.status, TaskState::Failure);
    let exc = meta.exception().unwrap();
    assert_eq!(
        (exc.exc_type.as_str(), exc.message()),
        (
            "TypeError",
            "echo() got an unexpected keyword argument 'c'".to_owned()
        )
    );
    w.stop().await;
}

#[tokio::test]
async fn a_tasks_max_retries_and_time_limit_apply_and_the_messages_own_limit_wins() {
    let w = start().await;
    let flaky = w.call("flaky", json!([]), json!({})).await;
    let meta = w.results.wait(&flaky.id, WAIT).await.unwrap();
    assert_eq!(meta.status, TaskState::Failure);

    let slow = w.call("slow", json!([]), json!({})).await;
    let mut own = TaskMessage::new("slow", "celery", Map::new());
    own.time_limit = Some(0.3);
    w.broker.publish(&own).await.unwrap();
    for (msg, limit) in [(&slow, 0.2), (&own, 0.3)] {
        let meta = w.results.wait(&msg.id, WAIT).await.unwrap();
        let exc = meta.exception().unwrap();
        assert_eq!(exc.exc_type, "TimeLimitExceeded");
        assert_eq!(exc.exc_message, json!([limit]));
    }
    // Given up at once (FAILURE is stored before the dead letter, so after the worker stops).
    let broker = w.broker.clone();
    let _redis = w.stop().await;
    let dead = broker.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, Some(1), "{}", dead[0].reason);
}

#[tokio::test]
async fn ignore_result_stores_nothing_and_children_go_to_their_tasks_queue() {
    let w = start().await;
    let quiet = w.call("quiet", json!([]), json!({})).await;
    // The children are published in the same step as the parent's end: once one has run, the
    // parent has ended.
    let mut conn = w.conn.clone();
    let meta = w
        .results
        .wait(&format!("{}-echo", quiet.id), WAIT)
        .await
        .unwrap();
    assert_eq!(meta.result["a"], "child");
    assert_eq!(meta.result["parent_id"], json!(quiet.id));
    let parent = w.results.get(&quiet.id).await.unwrap();
    assert_eq!(parent.status, TaskState::Pending, "no result stored");
    let routed: i64 = conn.llen("elsewhere").await.unwrap();
    assert_eq!(routed, 1, "routed to its own queue");
    let needy = w.call("needy", json!([]), json!({})).await;
    let meta = w.results.wait(&needy.id, WAIT).await.unwrap();
    assert_eq!(meta.exception().unwrap().exc_type, "RuntimeError");
    w.stop().await;
}

#[tokio::test]
async fn a_tasks_acks_late_and_track_started_override_the_workers() {
    let w = start().await;
    let gated = w.call("gated", json!([]), json!({})).await;
    w.gate.started.notified().await;
    let mut conn = w.conn.clone();
    let held: i64 = conn.hlen(celery_redis::keys::UNACKED).await.unwrap();
    assert_eq!(held, 0, "acknowledged when it started");
    let meta = w.results.get(&gated.id).await.unwrap();
    assert_eq!(meta.status, TaskState::Pending, "no STARTED stored");
    w.gate.release.notify_one();
    let meta = w.results.wait(&gated.id, WAIT).await.unwrap();
    assert_eq!(meta.status, TaskState::Success);
    w.stop().await;
}

#[tokio::test]
async fn retries_wait_the_tasks_own_backoff_doubling_and_a_countdown_as_given() {
    let w = start().await;
    let backoff = w.call("backoff", json!([]), json!({})).await;
    let meta = w.results.wait(&backoff.id, WAIT).await.unwrap();
    assert_eq!(
        meta.status,
        TaskState::Failure,
        "given up after two retries"
    );
    let at = std::mem::take(&mut *w.attempts.0.lock().unwrap());
    assert_eq!(at.len(), 3, "the first run and two retries");
    // The worker's own backoff is 20 ms: these gaps are the task's (300 ms, then doubled).
    assert!(
        at[1] - at[0] >= Duration::from_millis(300),
        "{:?}",
        at[1] - at[0]
    );
    assert!(
        at[2] - at[1] >= Duration::from_millis(600),
        "{:?}",
        at[2] - at[1]
    );

    let countdown = w.call("backoff", json!([900]), json!({})).await;
    let meta = w.results.wait(&countdown.id, WAIT).await.unwrap();
    assert_eq!(meta.status, TaskState::Failure);
    let at = std::mem::take(&mut *w.attempts.0.lock().unwrap());
    assert_eq!(at.len(), 3, "a countdown still counts against max_retries");
    for pair in at.windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(900),
            "{:?}",
            pair[1] - pair[0]
        );
    }
    w.stop().await;
}

/// A blocking task spinning a CPU for longer than the visibility timeout: its lease is renewed
/// (it is not delivered again), the worker's heartbeats go on (Flower does not show it
/// offline) and remote control answers, all while the task never awaits. (Without `blocking`
/// the worker's thread spins: no heartbeat, no reply, and the test cannot let it go.)
#[tokio::test]
async fn a_blocking_task_spinning_past_the_visibility_timeout_starves_nothing() {
    use celery_redis::control::client::{call, Mailbox, Target};
    use futures_util::StreamExt;
    use std::sync::atomic::Ordering;

    let w = start_with(&[("VISIBILITY_TIMEOUT_SECS", "1")]).await;
    let mut pubsub = w._redis.client().get_async_pubsub().await.unwrap();
    pubsub
        .psubscribe("/0.celeryev/worker.heartbeat")
        .await
        .unwrap();
    let mut heartbeats = pubsub.into_on_message();
    let spin = w.call("spin", json!([]), json!({})).await;
    w.spin.started.notified().await;
    // Two heartbeats (2 s apart) after it started: the visibility timeout passed twice over.
    for _ in 0..2 {
        tokio::time::timeout(WAIT, heartbeats.next())
            .await
            .unwrap()
            .unwrap();
    }
    let mailbox = Mailbox {
        layout: celery_redis::keys::default_layout(),
        db: 0,
    };
    let clock = celery_redis::control::Lamport::default();
    let target = Target::Nodes(vec!["api@test".into()]);
    let control = w._redis.manager().await;
    let replies = call(&control, mailbox, &clock, "ping", json!({}), &target, WAIT)
        .await
        .unwrap();
    assert_eq!(
        replies,
        vec![("api@test".to_owned(), json!({"ok": "pong"}))]
    );
    assert_eq!(w.spin.runs.load(Ordering::SeqCst), 1, "delivered again");
    w.spin.release.store(true, Ordering::SeqCst);
    let meta = w.results.wait(&spin.id, WAIT).await.unwrap();
    assert_eq!(
        meta.result,
        json!("let go"),
        "the test could not let it go in time"
    );
    assert_eq!(w.spin.runs.load(Ordering::SeqCst), 1);
    w.stop().await;
}

/// A blocking task terminated while it never awaits keeps its thread place until it really
/// ends: stopped tasks cannot pile up threads, the next blocking task waits for the place.
#[tokio::test]
async fn a_terminated_blocking_task_holds_its_thread_place_until_its_thread_ends() {
    use celery_redis::control::client::{call, Mailbox, Target};
    use std::sync::atomic::Ordering;

    let w = start_with(&[("WORKER_CONCURRENCY", "1")]).await;
    let first = w.call("spin", json!([]), json!({})).await;
    w.spin.started.notified().await;
    let mailbox = Mailbox {
        layout: celery_redis::keys::default_layout(),
        db: 0,
    };
    let clock = celery_redis::control::Lamport::default();
    let control = w._redis.manager().await;
    let args = json!({"task_id": first.id, "terminate": true, "signal": "SIGTERM"});
    let target = Target::Nodes(vec!["api@test".into()]);
    call(&control, mailbox, &clock, "revoke", args, &target, WAIT)
        .await
        .unwrap();
    let meta = w.results.wait(&first.id, WAIT).await.unwrap();
    assert_eq!(meta.status, TaskState::Revoked);
    // Its slot is free again, its thread still spins: the next one is taken but cannot start.
    let second = w.call("spin", json!([]), json!({})).await;
    let started = tokio::time::timeout(Duration::from_millis(500), w.spin.started.notified());
    assert!(
        started.await.is_err(),
        "started beside a thread still spinning"
    );
    assert_eq!(w.spin.runs.load(Ordering::SeqCst), 1);
    w.spin.release.store(true, Ordering::SeqCst);
    let meta = w.results.wait(&second.id, WAIT).await.unwrap();
    assert_eq!(meta.result, json!("let go"));
    assert_eq!(w.spin.runs.load(Ordering::SeqCst), 2);
    w.stop().await;
}

/// A countdown too long for a date (`RetryAfter` with `u64::MAX` milliseconds, half a billion
/// years) is still a retry, its eta as far ahead as a date goes: not a panic that dead-letters
/// the task as a lost worker.
#[tokio::test]
async fn a_countdown_too_long_for_a_date_is_still_a_retry() {
    let w = start().await;
    let far = w.call("backoff", json!([u64::MAX]), json!({})).await;
    let meta = w
        .results
        .wait_for(&far.id, WAIT, |s| *s == TaskState::Retry || s.is_ready())
        .await
        .unwrap();
    assert_eq!(meta.status, TaskState::Retry, "{:?}", meta.result);
    // RETRY is stored before the retry is scheduled: stopped, the worker has done both.
    let (mut conn, broker) = (w.conn.clone(), w.broker.clone());
    let _redis = w.stop().await;
    let scheduled: Vec<(String, f64)> = conn
        .zrange_withscores("fleet:scheduled:celery", 0, -1)
        .await
        .unwrap();
    assert_eq!(scheduled.len(), 1, "{scheduled:?}");
    let entry: Value = serde_json::from_str(&scheduled[0].0).unwrap();
    let envelope = entry.get(0).unwrap_or(&entry);
    let eta = envelope["headers"]["eta"].clone();
    let eta = celery_redis::clock::parse_celery_iso(eta.as_str().unwrap()).unwrap();
    assert!(eta.year() > 2100, "{eta}");
    assert!(broker.dead_letters(10).await.unwrap().is_empty());
}

/// A blocking task that panics on its thread: FAILURE (the worker lost it) and a dead letter,
/// and its thread place is given back: with one place, the next blocking task still runs.
#[tokio::test]
async fn a_blocking_task_that_panics_fails_and_gives_its_thread_place_back() {
    let w = start_with(&[("WORKER_CONCURRENCY", "1")]).await;
    let boom = w.call("boom", json!([]), json!({})).await;
    let meta = w.results.wait(&boom.id, WAIT).await.unwrap();
    assert_eq!(meta.status, TaskState::Failure);
    assert_eq!(meta.exception().unwrap().exc_type, "WorkerLostError");
    w.spin
        .release
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let spin = w.call("spin", json!([]), json!({})).await;
    let meta = w.results.wait(&spin.id, WAIT).await.unwrap();
    assert_eq!(meta.result, json!("let go"));
    let broker = w.broker.clone();
    let _redis = w.stop().await;
    assert_eq!(broker.dead_letters(10).await.unwrap().len(), 1);
}
