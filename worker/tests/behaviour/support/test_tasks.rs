//! A worker in-process with a table of test tasks (no shop), for the tests of the task API and
//! of retries: tasks that echo their request, retry, hang past a time limit, store nothing,
//! need a dependency, wait at a gate, back off, spin a CPU or panic; [`start`] runs them.

use std::time::Duration;

use celery_redis::broker::Broker;
use celery_redis::protocol::TaskMessage;
use celery_redis::result::ResultBackend;
use celery_redis::shutdown;
use celery_redis::task::{Options, Task, TaskContext, TaskError, Tasks};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use testkit::TestRedis;

/// Defines a test task of no parameters (any kwargs accepted) and no output: its type, its
/// name, the [`Options`] fields it sets over the defaults, and its body (given the context).
/// `test_task!(Hang = "hang" {} |_| std::future::pending().await);`
macro_rules! test_task {
    ($(#[$doc:meta])* $ty:ident = $name:literal { $($field:ident: $value:expr),* $(,)? } |$ctx:pat_param| $body:expr) => {
        $(#[$doc])*
        pub struct $ty;

        impl celery_redis::task::Task for $ty {
            const NAME: &'static str = $name;
            const PARAMS: &'static [&'static str] = &[];
            type Args = serde_json::Map<String, serde_json::Value>;
            type Output = ();

            fn options() -> celery_redis::task::Options {
                celery_redis::task::Options {
                    $($field: $value,)*
                    ..celery_redis::task::Options::default()
                }
            }

            async fn run(
                $ctx: &celery_redis::task::TaskContext<'_>,
                _: Self::Args,
            ) -> Result<(), celery_redis::task::TaskError> {
                $body
            }
        }
    };
}
pub(crate) use test_task;

/// Returns what it sees of its request.
pub struct Echo;

#[derive(Deserialize)]
pub struct EchoArgs {
    pub a: Value,
    #[serde(default)]
    pub b: Option<Value>,
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

test_task!(
    /// Always asks to be retried; allowed none.
    Flaky = "flaky" { max_retries: Some(0) } |_| Err(TaskError::Retry(
        celery_redis::result::ExceptionInfo::new("builtins", "RuntimeError", "try again")
    ))
);

test_task!(
    /// Never ends by itself: its time limit stops it.
    Slow = "slow" { time_limit: Some(0.2) } |_| std::future::pending().await
);

test_task!(
    /// Stores no result; sends an `echo` and a `routed` on.
    Quiet = "quiet" { ignore_result: true } |ctx| {
        let kwargs = |v: Value| v.as_object().cloned().unwrap_or_default();
        ctx.send(ctx.child(Routed::NAME, Map::new()));
        let mut echo = ctx.child(Echo::NAME, kwargs(json!({"a": "child"})));
        echo.id = format!("{}-echo", ctx.id());
        ctx.send(echo);
        ctx.commit()
    }
);

test_task!(
    /// Sent to its own queue when no route names it.
    Routed = "routed" { queue: Some("elsewhere") } |_| Ok(())
);

test_task!(
    /// Needs a dependency the worker was not given.
    Needy = "needy" {} |ctx| ctx.dep::<std::net::SocketAddr>().map(|_| ())
);

test_task!(
    /// Says it started, then waits to be let go: acknowledged at its start and no STARTED
    /// stored, against the worker's settings (acks late, track started).
    Gated = "gated" { acks_late: Some(false), track_started: Some(false) } |ctx| {
        let gate = ctx.dep::<std::sync::Arc<Gate>>()?;
        gate.started.notify_one();
        gate.release.notified().await;
        Ok(())
    }
);

#[derive(Default)]
pub struct Gate {
    pub started: tokio::sync::Notify,
    pub release: tokio::sync::Notify,
}

/// Asks for retries with the task's own backoff (no jitter), or after a countdown when called
/// with `countdown_ms`; records when each attempt ran.
pub struct Backoff;

#[derive(Default)]
pub struct Attempts(pub std::sync::Mutex<Vec<std::time::Instant>>);

#[derive(Deserialize)]
pub struct BackoffArgs {
    #[serde(default)]
    pub countdown_ms: Option<u64>,
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
pub struct Spin;

#[derive(Default)]
pub struct SpinGate {
    pub started: tokio::sync::Notify,
    pub release: std::sync::atomic::AtomicBool,
    pub runs: std::sync::atomic::AtomicUsize,
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

test_task!(
    /// Blocking, and panics on its thread.
    Boom = "boom" { blocking: true } |_| panic!("boom")
);

pub struct Running {
    pub _redis: TestRedis,
    pub conn: celery_redis::conn::Conn,
    pub broker: Broker,
    pub results: ResultBackend,
    pub trigger: shutdown::Trigger,
    pub gate: std::sync::Arc<Gate>,
    pub attempts: std::sync::Arc<Attempts>,
    pub spin: std::sync::Arc<SpinGate>,
    pub handle: tokio::task::JoinHandle<Result<(), worker::worker::WorkerError>>,
}

pub async fn start() -> Running {
    start_with(&[]).await
}

pub async fn start_with(extra: &[(&'static str, &str)]) -> Running {
    let redis = TestRedis::start();
    let mut env = vec![("TASK_RETRY_BACKOFF_MS", "20"), ("WORKER_NAME", "api@test")];
    env.extend_from_slice(extra);
    let gate = std::sync::Arc::new(Gate::default());
    let attempts = std::sync::Arc::new(Attempts::default());
    let spin = std::sync::Arc::new(SpinGate::default());
    let deps = (gate.clone(), attempts.clone(), spin.clone());
    let (trigger, handle) = crate::support::spawn_tasks(&redis.url(), &env, |_, _| {
        Tasks::new()
            .task::<Echo>()
            .task::<Flaky>()
            .task::<Slow>()
            .task::<Quiet>()
            .task::<Routed>()
            .task::<Needy>()
            .task::<Gated>()
            .task::<Backoff>()
            .task::<Spin>()
            .task::<Boom>()
            .dep(deps.0)
            .dep(deps.1)
            .dep(deps.2)
    });
    let crate::support::Running {
        _redis,
        conn,
        broker,
        results,
        trigger,
        handle,
    } = crate::support::Running::new(redis, trigger, handle).await;
    Running {
        _redis,
        conn,
        broker,
        results,
        trigger,
        gate,
        attempts,
        spin,
        handle,
    }
}

impl Running {
    pub async fn call(&self, task: &str, args: Value, kwargs: Value) -> TaskMessage {
        let mut msg = TaskMessage::new(task, "celery", kwargs.as_object().cloned().unwrap());
        msg.body.args = args.as_array().cloned().unwrap();
        self.broker.publish(&msg).await.unwrap();
        msg
    }

    /// Stops the worker (running tasks end first); its Redis lives on in what is returned.
    pub async fn stop(self) -> TestRedis {
        self.trigger.fire();
        self.handle.await.unwrap().unwrap();
        self._redis
    }
}
