//! The task API as a user's task meets it, on an in-process worker built with a table of test
//! tasks (no shop): the request a task sees, its arguments bound as Python binds them, its
//! options (max_retries, time limits and the message's own limit winning, ignore_result, its
//! default queue), tasks sent on, and a dependency the worker was not given.

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

struct Running {
    _redis: TestRedis,
    conn: celery_redis::connection::Conn,
    broker: Broker,
    results: ResultBackend,
    trigger: shutdown::Trigger,
    gate: std::sync::Arc<Gate>,
    handle: tokio::task::JoinHandle<Result<(), worker::worker::WorkerError>>,
}

async fn start() -> Running {
    let redis = TestRedis::start();
    let vars: HashMap<&str, String> = HashMap::from([
        ("REDIS_URL", redis.url()),
        ("WORKER_METRICS_BIND", "127.0.0.1:0".to_owned()),
        ("TASK_RETRY_BACKOFF_MS", "20".to_owned()),
        ("WORKER_NAME", "api@test".to_owned()),
    ]);
    let cfg = WorkerConfig::from_source(&move |k: &str| vars.get(k).cloned()).unwrap();
    let tasks = Tasks::new()
        .task::<Echo>()
        .task::<Flaky>()
        .task::<Slow>()
        .task::<Quiet>()
        .task::<Routed>()
        .task::<Needy>()
        .task::<Gated>();
    let gate = std::sync::Arc::new(Gate::default());
    let tasks = tasks.dep(gate.clone());
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
