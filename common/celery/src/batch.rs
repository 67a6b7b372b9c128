//! Group commit: the calls of one script made while an earlier batch of them is on its way to
//! Redis go together, as one call of the script's batched form (`lua/batch.lua`), each with its
//! own keys, arguments and reply.
//!
//! A [`Batcher`] owns one committer task per script and connection (started at its first call).
//! The committer sends what has queued up as soon as the previous batch is answered, so a call
//! made while Redis is idle goes at once, and under load many tasks' ends cost one script call
//! (and one `WAIT`, with `REDIS_WAIT_REPLICAS`) instead of one each. Each call keeps the
//! guarantees of the script it batches: a batch runs its calls one after another inside one
//! script, each checking before it writes; an error in one call is that call's alone; an error
//! of the whole batch (the connection, `OOM` for a script refused while out of memory) is every
//! call's, none of them having been run.
//!
//! The scripts of this crate are batched this way (`scripts.rs`); another crate's script gets
//! its batched form from [`batched`] (the shop's stock reservation does).

use std::sync::{Arc, LazyLock, OnceLock};

use redis::{RedisError, RedisResult, Script, Value};
use tokio::sync::{mpsc, oneshot};

use crate::conn::Conn;

mod call;
pub use call::{Call, CallArg};

/// The loop that runs a script once per call of a batch (see its header).
const BATCH_LUA: &str = include_str!("lua/batch.lua");

/// The batched form of the script `body` (a script without a `#!lua` line, using only its own
/// `KEYS` and `ARGV`): for a [`Batcher`].
pub fn batched(body: &str) -> Script {
    Script::new(&format!(
        "local function one(KEYS, ARGV)\n{body}\nend\n{BATCH_LUA}"
    ))
}

/// Whether each batch waits for replicas as the connection's topology asks (`WAIT`), see
/// [`Conn::should_replicate`] and [`Conn::must_replicate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replication {
    /// No `WAIT`.
    None,
    /// `WAIT`; a shortfall is logged.
    Should,
    /// `WAIT`; a shortfall is every call's error.
    Must,
}

/// Most calls in one batch.
const MAX_CALLS: usize = 128;
/// Most bytes of keys and arguments in one batch (a larger call goes alone).
const MAX_BYTES: usize = 4 << 20;
/// Calls waiting for a batch beyond this wait for room.
const QUEUED: usize = 1024;

struct Job {
    call: Call,
    reply: oneshot::Sender<RedisResult<Value>>,
}

/// Sends the calls of one batched script in batches on one connection. Clones share the
/// committer (and a clone is one pointer: it sits in every future that holds a broker).
#[derive(Clone)]
pub struct Batcher(Arc<Inner>);

struct Inner {
    committer: Committer,
    /// Started at the first call; dropped with the last clone, which ends the committer.
    queue: OnceLock<mpsc::Sender<Job>>,
}

/// What the committer task holds: the script and where it runs.
#[derive(Clone)]
struct Committer {
    script: &'static LazyLock<Script>,
    conn: Conn,
    replicate: Replication,
}

impl Batcher {
    /// Batches of `script` (a batched form: [`batched`]) on `conn`.
    pub fn new(script: &'static LazyLock<Script>, conn: Conn, replicate: Replication) -> Self {
        Batcher(Arc::new(Inner {
            committer: Committer {
                script,
                conn,
                replicate,
            },
            queue: OnceLock::new(),
        }))
    }

    /// Runs `call` in the next batch and returns its integer reply.
    pub async fn call_int(&self, call: Call) -> RedisResult<i64> {
        Ok(redis::from_redis_value(self.call(call).await?)?)
    }

    /// Runs `call` in the next batch and returns its reply.
    pub async fn call(&self, call: Call) -> RedisResult<Value> {
        let (reply, answer) = oneshot::channel();
        let job = Job { call, reply };
        let queue = self.0.queue.get_or_init(|| {
            let (tx, rx) = mpsc::channel(QUEUED);
            tokio::spawn(self.0.committer.clone().commit(rx));
            tx
        });
        if let Err(mpsc::error::SendError(job)) = queue.send(job).await {
            // The committer is gone with the runtime that started it: this call goes alone.
            self.0.committer.run(vec![job]).await;
        }
        answer.await.unwrap_or_else(|_| Err(gone()))
    }
}

impl Committer {
    /// The committer: takes what has queued (up to the bounds), sends it, answers each call.
    async fn commit(self, mut rx: mpsc::Receiver<Job>) {
        let mut next: Option<Job> = None;
        loop {
            let first = match next.take() {
                Some(job) => job,
                None => match rx.recv().await {
                    Some(job) => job,
                    None => return,
                },
            };
            let mut bytes = first.call.bytes();
            let mut batch = vec![first];
            while batch.len() < MAX_CALLS {
                let Ok(job) = rx.try_recv() else { break };
                if bytes.saturating_add(job.call.bytes()) > MAX_BYTES {
                    next = Some(job);
                    break;
                }
                bytes = bytes.saturating_add(job.call.bytes());
                batch.push(job);
            }
            self.run(batch).await;
        }
    }

    /// One call of the batched script for `batch`; each call gets its own reply.
    async fn run(&self, batch: Vec<Job>) {
        let Committer {
            script,
            conn,
            replicate,
        } = self;
        let replies = match replicate {
            Replication::None => query(script, &batch, &mut conn.clone()).await,
            Replication::Should => query(script, &batch, &mut conn.should_replicate()).await,
            Replication::Must => query(script, &batch, &mut conn.must_replicate()).await,
        };
        match replies {
            Ok(replies) if replies.len() == batch.len() => {
                for (job, reply) in batch.into_iter().zip(replies) {
                    let _ = job.reply.send(one_reply(reply));
                }
            }
            Ok(_) => {
                for job in batch {
                    let _ = job.reply.send(Err(malformed()));
                }
            }
            Err(e) => {
                for job in batch {
                    let _ = job.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Runs the batched script on `batch` (`EVALSHA`, loading the script when the server does not
/// have it: a restart, `SCRIPT FLUSH`). The command is built here rather than by redis-rs's
/// `ScriptInvocation`, which copies every key and argument once more before packing them: each
/// task's envelope was copied five times on its way to the socket.
async fn query(
    script: &Script,
    batch: &[Job],
    conn: &mut impl redis::aio::ConnectionLike,
) -> RedisResult<Vec<Value>> {
    let calls = batch.iter().map(|job| &job.call);
    let keys = calls
        .clone()
        .map(|c| c.keys.len())
        .fold(0, usize::saturating_add);
    let args = calls
        .clone()
        .map(|c| c.args.len())
        .fold(0, usize::saturating_add);
    let bytes = calls
        .clone()
        .map(Call::bytes)
        .fold(0, usize::saturating_add);
    let counts = batch.len().saturating_mul(2).saturating_add(4);
    let mut cmd = redis::Cmd::with_capacity(
        keys.saturating_add(args).saturating_add(counts),
        bytes
            .saturating_add(counts.saturating_mul(8))
            .saturating_add(64),
    );
    cmd.arg("EVALSHA").arg(script.get_hash()).arg(keys);
    for key in calls.clone().flat_map(|c| c.keys.iter()) {
        cmd.arg(key.as_bytes());
    }
    cmd.arg(batch.len());
    for call in calls.clone() {
        cmd.arg(call.keys.len()).arg(call.args.len());
    }
    for arg in calls.flat_map(|c| c.args.iter()) {
        cmd.arg(arg.as_bytes());
    }
    let reply: Value = match cmd.query_async(conn).await {
        Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
            script.load_async(conn).await?;
            cmd.query_async(conn).await?
        }
        reply => reply?,
    };
    replies(reply)
}

/// The calls' replies in the batch's: one element each, or, when all are integers, one string
/// of them separated by spaces (see `lua/batch.lua`).
fn replies(reply: Value) -> RedisResult<Vec<Value>> {
    match reply {
        Value::Array(replies) => Ok(replies),
        Value::BulkString(ints) => ints
            .split(|&b| b == b' ')
            .map(|n| {
                std::str::from_utf8(n)
                    .ok()
                    .and_then(|n| n.parse().ok())
                    .map(Value::Int)
                    .ok_or_else(malformed)
            })
            .collect(),
        _ => Err(malformed()),
    }
}

/// One call's reply in the batch's: its own, or its error (`{'!', text}`, the text's first word
/// being Redis's error code).
fn one_reply(reply: Value) -> RedisResult<Value> {
    match reply {
        Value::Array(pair) => match pair.as_slice() {
            [Value::BulkString(mark), Value::BulkString(text)] if mark == b"!" => {
                let text = String::from_utf8_lossy(text);
                let (code, detail) = text.split_once(' ').unwrap_or(("ERR", &text));
                Err(redis::make_extension_error(
                    code.to_owned(),
                    Some(detail.to_owned()),
                ))
            }
            _ => Err(malformed()),
        },
        reply => Ok(reply),
    }
}

fn malformed() -> RedisError {
    RedisError::from((
        redis::ErrorKind::UnexpectedReturnType,
        "a batched script answered in an unexpected shape",
    ))
}

fn gone() -> RedisError {
    RedisError::from(std::io::Error::new(
        std::io::ErrorKind::BrokenPipe,
        "the batch committer stopped before answering",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_of_integers_is_read_from_its_one_string() {
        let ints = replies(Value::BulkString(b"1 0 -3 9007199254740992".to_vec()));
        assert_eq!(
            ints.ok(),
            Some(vec![
                Value::Int(1),
                Value::Int(0),
                Value::Int(-3),
                Value::Int(9_007_199_254_740_992)
            ])
        );
        for junk in [&b""[..], b"1  2", b"1 x", b"1.5", b"1 2 "] {
            assert!(
                replies(Value::BulkString(junk.to_vec())).is_err(),
                "{junk:?}"
            );
        }
        let mixed = vec![Value::Int(1), Value::BulkString(b"{}".to_vec())];
        assert_eq!(replies(Value::Array(mixed.clone())).ok(), Some(mixed));
        assert!(replies(Value::Int(1)).is_err());
    }

    #[test]
    fn a_call_reads_its_reply_or_its_error_with_the_error_code() {
        assert_eq!(one_reply(Value::Int(-3)).ok(), Some(Value::Int(-3)));
        let error = |text: &[u8]| {
            one_reply(Value::Array(vec![
                Value::BulkString(b"!".to_vec()),
                Value::BulkString(text.to_vec()),
            ]))
            .unwrap_err()
        };
        assert!(crate::refusal::refused_for_memory(&error(
            b"OOM command not allowed"
        )));
        assert_eq!(error(b"WRONGTYPE Operation").code(), Some("WRONGTYPE"));
        assert!(one_reply(Value::Array(vec![Value::Int(1)])).is_err());
    }
}
