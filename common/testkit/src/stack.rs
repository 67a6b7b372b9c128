//! [`Stack`]: a private [`TestRedis`] and the project's real binaries (worker, service-order,
//! service-notification) on it, as processes on port 0 (the [`Binaries`] helpers: post an order,
//! admin, metrics), and its result backend to wait for a task's result.

use std::ops::Deref;
use std::time::Duration;

use celery_redis::result::{ResultBackend, ResultMeta};

pub use crate::binaries::{run_worker, Accepted, Binaries, Binary, Env, Running};
use crate::redis::TestRedis;

/// How long a test waits for a task's result.
pub const WAIT: Duration = Duration::from_secs(30);

/// A private Redis and the binaries on it: every [`Binaries`] method (`worker`, `order`,
/// `notification`, `admin`, `metrics`, ...) is a `Stack`'s too.
pub struct Stack {
    /// The private redis-server the binaries run on.
    pub redis: TestRedis,
    binaries: Binaries,
}

impl Deref for Stack {
    type Target = Binaries;

    fn deref(&self) -> &Binaries {
        &self.binaries
    }
}

impl Stack {
    /// A fresh private Redis; `worker_bin` is the test's `env!("CARGO_BIN_EXE_worker")`, next
    /// to which the services are found.
    pub fn new(worker_bin: &str) -> Self {
        Self::on(TestRedis::start(), worker_bin)
    }

    /// The same on a Redis the test started itself (e.g. with extra arguments).
    pub fn on(redis: TestRedis, worker_bin: &str) -> Self {
        Stack {
            binaries: Binaries::at(&redis.url(), worker_bin),
            redis,
        }
    }

    /// The same stack with every binary started under `prefix` (see [`Binaries::under`]).
    pub fn under(self, prefix: &[&str]) -> Self {
        Stack {
            binaries: self.binaries.under(prefix),
            ..self
        }
    }

    /// This Redis's result backend.
    pub async fn results(&self) -> ResultBackend {
        self.redis.results(Duration::from_secs(60)).await
    }

    /// Waits (pub/sub, no polling) for a task's ready state; panics after [`WAIT`].
    pub async fn finished(&self, task_id: &str) -> ResultMeta {
        let meta = self
            .results()
            .await
            .wait(task_id, WAIT)
            .await
            .unwrap_or_else(|e| panic!("no result for {task_id}: {e}"));
        assert!(meta.status.is_ready(), "{task_id}: {:?}", meta.status);
        meta
    }
}
