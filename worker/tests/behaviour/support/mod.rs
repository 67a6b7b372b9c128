//! What the behaviour modules share: the worker in-process against a private redis-server
//! ([`start`] it, send tasks, wait for results, and [`Running::stop`] it to see what is left),
//! the shop's messages and webhooks (`shop`), raw entries (`raw`) and a table of test tasks
//! (`test_tasks`).

pub mod raw;
pub mod shop;
pub mod test_tasks;

use std::collections::HashMap;
use std::time::Duration;

use celery_redis::broker::Broker;
use celery_redis::conn::Conn;
use celery_redis::keys;
use celery_redis::protocol::TaskMessage;
use celery_redis::result::{ResultBackend, ResultMeta};
use celery_redis::shutdown::{self, Trigger};
use celery_redis::task::Tasks;
use envconf::Source;
use redis::AsyncCommands;
use serde_json::Value;
use testkit::TestRedis;
use worker::config::WorkerConfig;

pub const WAIT: Duration = Duration::from_secs(30);

pub struct Running {
    pub _redis: TestRedis,
    pub conn: Conn,
    pub broker: Broker,
    pub results: ResultBackend,
    pub trigger: Trigger,
    pub handle: Handle,
}

/// A worker in-process running the shop's tasks: concurrency 4, loopback webhooks allowed,
/// plus `extra` (which overrides them).
pub async fn start(extra: &[(&str, &str)]) -> Running {
    let redis = TestRedis::start();
    let url = redis.url();
    start_on(redis, &url, extra).await
}

/// [`start`] on `redis`, the worker reaching it through `url` (a proxy in front of it, say);
/// the test's own connections go to `redis` directly.
pub async fn start_on(redis: TestRedis, url: &str, extra: &[(&str, &str)]) -> Running {
    let mut env = vec![
        ("WORKER_CONCURRENCY", "4"),
        // The tests' webhook receivers listen on loopback, refused unless allowed.
        ("WEBHOOK_ALLOW", "127.0.0.1"),
    ];
    env.extend_from_slice(extra);
    let (trigger, handle) = spawn(url, &env);
    Running::new(redis, trigger, handle).await
}

/// A worker's variables: `REDIS_URL` is `url`, its metrics on a free loopback port, and `extra`
/// (which overrides them).
pub fn source(url: &str, extra: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + 'static {
    let mut vars: HashMap<String, String> = HashMap::from([
        ("REDIS_URL".into(), url.to_owned()),
        ("WORKER_METRICS_BIND".into(), "127.0.0.1:0".into()),
    ]);
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    move |k: &str| vars.get(k).cloned()
}

pub type Handle = tokio::task::JoinHandle<Result<(), worker::worker::WorkerError>>;

/// Runs a worker of the tasks `tasks` makes (from its variables and configuration) on `url`,
/// with the variables of [`source`], until the trigger fires.
pub fn spawn_tasks(
    url: &str,
    extra: &[(&str, &str)],
    tasks: impl FnOnce(&dyn Source, &WorkerConfig) -> Tasks,
) -> (Trigger, Handle) {
    let src = source(url, extra);
    let cfg = WorkerConfig::from_source(&src).unwrap();
    let tasks = tasks(&src, &cfg);
    let (trigger, stop) = shutdown::channel();
    (trigger, tokio::spawn(worker::run(cfg, tasks, stop)))
}

/// [`spawn_tasks`] with the shop's tasks.
pub fn spawn(url: &str, extra: &[(&str, &str)]) -> (Trigger, Handle) {
    spawn_tasks(url, extra, |src, cfg| {
        worker::shop::tasks(src, cfg).unwrap()
    })
}

/// A worker of the shop's tasks named `name`, built to be stepped (not run).
pub fn build(url: &str, extra: &[(&str, &str)], name: &str) -> worker::Worker {
    let src = source(url, extra);
    let cfg = WorkerConfig::from_source(&src).unwrap();
    let tasks = worker::shop::tasks(&src, &cfg).unwrap();
    worker::Worker::build(cfg, tasks, name.into()).unwrap()
}

impl Running {
    /// The test's side of a worker spawned on `redis`: its connection, broker and results.
    pub async fn new(redis: TestRedis, trigger: Trigger, handle: Handle) -> Running {
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
            handle,
        }
    }

    pub async fn send(&self, task: &str, kwargs: Value) -> TaskMessage {
        let msg = TaskMessage::new(
            task,
            "celery",
            kwargs.as_object().cloned().unwrap_or_default(),
        );
        self.broker.publish(&msg).await.unwrap();
        msg
    }

    pub async fn result(&self, id: &str) -> ResultMeta {
        self.results.wait(id, WAIT).await.unwrap()
    }

    /// Stops the worker (running tasks finish first, so every ack has happened) and returns
    /// what is left: held messages and queued ones.
    pub async fn stop(self) -> Stopped {
        self.trigger.fire();
        self.handle.await.unwrap().unwrap();
        let mut conn = self.conn;
        let unacked: i64 = conn.hlen(keys::UNACKED).await.unwrap();
        let queued: Vec<String> = conn.lrange("celery", 0, -1).await.unwrap();
        Stopped {
            _redis: self._redis,
            conn,
            unacked,
            queued,
        }
    }
}

pub struct Stopped {
    pub _redis: TestRedis,
    pub conn: Conn,
    pub unacked: i64,
    pub queued: Vec<String>,
}

impl Stopped {
    pub fn all_acknowledged(&self) {
        assert_eq!(
            (self.unacked, self.queued.len()),
            (0, 0),
            "nothing held or left"
        );
    }
}
