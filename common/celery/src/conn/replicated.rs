//! The opt-in durability of the writes that matter: with `REDIS_WAIT_REPLICAS=N`, each such
//! write goes out followed by `WAIT N timeout` in the same pipeline, on the same connection (a
//! `WAIT` counts the writes of its own connection, and cannot run inside a script).
//!
//! [`Conn::must_replicate`] (an enqueue) answers an error when fewer replicas acknowledged
//! within the timeout: the write happened on the master but may be lost if it fails now, so a
//! submission answers "outcome unknown" and its client retries with the same id.
//! [`Conn::should_replicate`] (ack, finish, settle) logs and counts it: losing such a write in a
//! failover only makes the task run again, which its effects tolerate.

use std::sync::atomic::{AtomicU64, Ordering};

use redis::aio::ConnectionLike;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Value};

use super::connection::Conn;
use super::resolve::Wait;

static SHORT_WAITS: AtomicU64 = AtomicU64::new(0);

/// `WAIT`s (since the process started) that fewer replicas than asked acknowledged in time.
pub fn short_waits() -> u64 {
    SHORT_WAITS.load(Ordering::Relaxed)
}

/// A connection whose commands are each followed by `WAIT` (a pass-through when the policy is
/// off). Made by [`Conn::must_replicate`] and [`Conn::should_replicate`].
pub struct Replicated {
    conn: Conn,
    wait: Wait,
    fail_short: bool,
}

impl Conn {
    /// For an enqueue: an error when fewer replicas than `REDIS_WAIT_REPLICAS` acknowledged.
    pub fn must_replicate(&self) -> Replicated {
        self.replicated(true)
    }

    /// For an ack or a task's end: a short `WAIT` is logged and counted, not an error.
    pub fn should_replicate(&self) -> Replicated {
        self.replicated(false)
    }

    fn replicated(&self, fail_short: bool) -> Replicated {
        Replicated {
            conn: self.clone(),
            wait: self.url().topology().wait(),
            fail_short,
        }
    }
}

/// The error of a write that fewer replicas than asked acknowledged: not transient (the write
/// is on the master; running it again is the caller's decision).
fn short(reached: i64, wait: Wait) -> RedisError {
    RedisError::from((
        redis::ErrorKind::Client,
        "not replicated",
        format!(
            "{reached} of {} replicas acknowledged the write within {} ms",
            wait.replicas,
            wait.timeout.as_millis()
        ),
    ))
}

impl Replicated {
    fn wait_cmd(&self) -> Cmd {
        let mut cmd = redis::cmd("WAIT");
        cmd.arg(self.wait.replicas)
            .arg(self.wait.timeout.as_millis());
        cmd
    }

    /// Checks `WAIT`'s answer; `ok` is whether the write itself succeeded (a failed write has
    /// nothing to replicate).
    fn check(&self, reply: Option<Value>, ok: bool) -> RedisResult<()> {
        if !ok {
            return Ok(());
        }
        let reply =
            reply.ok_or_else(|| RedisError::from((redis::ErrorKind::Client, "no answer")))?;
        let reached: i64 = redis::from_redis_value(reply.extract_error()?)?;
        if u64::try_from(reached).unwrap_or(0) >= self.wait.replicas {
            return Ok(());
        }
        SHORT_WAITS.fetch_add(1, Ordering::Relaxed);
        // A master whose replica left may be one the sentinels demoted: ask them again.
        self.conn.forget_master();
        let e = short(reached, self.wait);
        log::warn!("{e}");
        if self.fail_short {
            return Err(e);
        }
        Ok(())
    }
}

impl ConnectionLike for Replicated {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            if self.wait.replicas == 0 {
                return self.conn.req_packed_command(cmd).await;
            }
            let mut pipe = redis::pipe();
            pipe.add_command(cmd.clone()).add_command(self.wait_cmd());
            let mut values = self.conn.req_packed_commands(&pipe, 0, 2).await?;
            let reached = values.pop();
            let value = values
                .pop()
                .ok_or_else(|| RedisError::from((redis::ErrorKind::Client, "no answer")))?;
            self.check(reached, !matches!(value, Value::ServerError(_)))?;
            Ok(value)
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            if self.wait.replicas == 0 || pipeline.is_transaction() {
                let values = self
                    .conn
                    .req_packed_commands(pipeline, offset, count)
                    .await?;
                if self.wait.replicas > 0 {
                    let reply = self.conn.req_packed_command(&self.wait_cmd()).await?;
                    self.check(Some(reply), true)?;
                }
                return Ok(values);
            }
            let mut pipe = redis::pipe();
            for cmd in pipeline.cmd_iter() {
                pipe.add_command(cmd.clone());
            }
            pipe.add_command(self.wait_cmd());
            let mut values = self
                .conn
                .req_packed_commands(&pipe, offset, count.saturating_add(1))
                .await?;
            let reached = values.pop();
            let ok = !values.iter().any(|v| matches!(v, Value::ServerError(_)));
            self.check(reached, ok)?;
            Ok(values)
        })
    }

    fn get_db(&self) -> i64 {
        self.conn.get_db()
    }
}
