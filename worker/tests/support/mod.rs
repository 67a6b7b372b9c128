//! The worker in-process against a private redis-server, for the test files of this folder:
//! [`start`] it, send tasks, wait for results, and [`Running::stop`] it to see what is left.

#![allow(dead_code)] // each test file uses its own subset

use std::collections::HashMap;
use std::time::Duration;

use celery_redis::broker::Broker;
use celery_redis::conn::Conn;
use celery_redis::keys;
use celery_redis::protocol::TaskMessage;
use celery_redis::result::{ResultBackend, ResultMeta};
use celery_redis::shutdown::{self, Trigger};
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
    pub handle: tokio::task::JoinHandle<Result<(), worker::worker::WorkerError>>,
}

pub async fn start(extra: &[(&str, &str)]) -> Running {
    let redis = TestRedis::start();
    let url = redis.url();
    start_on(redis, &url, extra).await
}

/// [`start`] on `redis`, the worker reaching it through `url` (a proxy in front of it, say);
/// the test's own connections go to `redis` directly.
pub async fn start_on(redis: TestRedis, url: &str, extra: &[(&str, &str)]) -> Running {
    let mut vars: HashMap<String, String> = HashMap::from([
        ("REDIS_URL".into(), url.to_owned()),
        ("WORKER_CONCURRENCY".into(), "4".into()),
        // The tests' webhook receivers listen on loopback, refused unless allowed.
        ("WEBHOOK_ALLOW".into(), "127.0.0.1".into()),
        ("WORKER_METRICS_BIND".into(), "127.0.0.1:0".into()),
    ]);
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let src = move |k: &str| vars.get(k).cloned();
    let cfg = WorkerConfig::from_source(&src).unwrap();
    let (trigger, stop) = shutdown::channel();
    let handle = tokio::spawn(worker::run(
        cfg.clone(),
        worker::shop::tasks(&src, &cfg).unwrap(),
        stop,
    ));
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

impl Running {
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
