//! The idle worker's blocking waits for new messages: one per consumed queue, each on a
//! connection of its own, all at once, so a message on any queue wakes the worker at once (as
//! kombu's BRPOP over all of a worker's queues does).
//!
//! A wait is never cancelled: a BLMOVE abandoned in Redis would still move the next message into
//! the processing list after this worker stopped looking. One that is still running when another
//! queue woke the worker is kept, and collected by the next idle step or at shutdown; each lasts
//! at most the block time. A queue whose key holds another type of value (another program's key)
//! is left out of the waits for a while, with a warning, so it neither stops the worker from
//! waiting on its other queues nor makes it spin; the claims skip it too.

use std::time::Duration;

use tokio::time::Instant;

use celery_redis::broker::Broker;
use celery_redis::conn::RedisUrl;
use celery_redis::conn::{Conn, Waits};
use futures_util::future::select_all;
use redis::RedisResult;
use tokio::task::JoinHandle;

/// How long one blocking wait for new messages lasts (kombu's BRPOP uses 1 s).
pub const BLOCK: Duration = Duration::from_secs(1);

/// How long a queue whose key holds another type of value is left out of the waits.
const REFUSED_FOR: Duration = Duration::from_secs(30);

type Running = JoinHandle<(Conn, RedisResult<bool>)>;

enum Wait {
    Idle(Box<Conn>),
    Running(Running),
    /// Its key holds another type of value; not waited on until then.
    Refused(Box<Conn>, Instant),
}

/// The blocking waits of one worker.
pub struct Blocking {
    queues: Vec<(Broker, Option<Wait>)>,
    url: RedisUrl,
    waits: Waits,
}

impl Blocking {
    /// One wait for each of `queues`, on `broker`'s Redis at `url` (connections open lazily,
    /// each making `connect_retries` attempts).
    pub fn new(
        broker: &Broker,
        queues: &[String],
        url: &RedisUrl,
        connect_retries: usize,
    ) -> RedisResult<Self> {
        let waits = Waits {
            response: Some(BLOCK + Duration::from_secs(5)),
            connect_retries,
        };
        let queues = queues
            .iter()
            .map(|q| {
                Ok((
                    broker.for_queue(q),
                    Some(Wait::Idle(Box::new(Conn::new(url, waits)?))),
                ))
            })
            .collect::<RedisResult<_>>()?;
        Ok(Blocking {
            queues,
            url: url.clone(),
            waits,
        })
    }

    /// Starts a wait of up to [`BLOCK`] on every queue not waiting yet (nor refused), then
    /// returns when the first of all running waits ends: whether it saw a message (moved into
    /// its queue's processing list, where the next claim takes it).
    pub async fn any(&mut self) -> RedisResult<bool> {
        let now = Instant::now();
        for (broker, wait) in &mut self.queues {
            let idle = match wait.take() {
                Some(Wait::Idle(conn)) => conn,
                Some(Wait::Refused(conn, until)) if until <= now => conn,
                other => {
                    *wait = other;
                    continue;
                }
            };
            let (mut conn, broker) = (*idle, broker.clone());
            *wait = Some(Wait::Running(tokio::spawn(async move {
                let moved = broker.wait_for_message(&mut conn, BLOCK).await;
                (conn, moved)
            })));
        }
        let (index, running): (Vec<usize>, Vec<&mut Running>) = self
            .queues
            .iter_mut()
            .enumerate()
            .filter_map(|(i, (_, w))| match w {
                Some(Wait::Running(r)) => Some((i, r)),
                _ => None,
            })
            .unzip();
        if running.is_empty() {
            // Every queue is refused: the claims go on, at the pace of the block time.
            tokio::time::sleep(BLOCK).await;
            return Ok(false);
        }
        let (ended, first, _) = select_all(running).await;
        let slot = index.get(first).copied().unwrap_or(0);
        let (conn, moved) = match ended {
            Ok(done) => done,
            // The wait panicked or was aborted: a fresh connection replaces its own.
            Err(e) => (
                Conn::new(&self.url, self.waits)?,
                Err(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "blocking wait ended",
                    e.to_string(),
                ))),
            ),
        };
        let Some((broker, wait)) = self.queues.get_mut(slot) else {
            return moved;
        };
        match moved {
            Err(e) if e.code() == Some("WRONGTYPE") => {
                log::warn!(
                    "the key of queue {} holds another type of value: nothing there is taken; not waiting on it for {}s",
                    broker.queue(),
                    REFUSED_FOR.as_secs()
                );
                *wait = Some(Wait::Refused(Box::new(conn), Instant::now() + REFUSED_FOR));
                Ok(false)
            }
            // A connection that failed (or is out of step) is replaced, not reused.
            Err(e) => {
                *wait = Some(Wait::Idle(Box::new(Conn::new(&self.url, self.waits)?)));
                Err(e)
            }
            moved => {
                *wait = Some(Wait::Idle(Box::new(conn)));
                moved
            }
        }
    }

    /// Waits for every running wait to end (at shutdown, before the processing lists are
    /// returned, so that none of them moves a message after that).
    pub async fn finish(&mut self) {
        for (_, wait) in &mut self.queues {
            if let Some(Wait::Running(running)) = wait.take() {
                if let Ok((conn, _)) = running.await {
                    *wait = Some(Wait::Idle(Box::new(conn)));
                }
            }
        }
    }
}
