//! Celery's Redis result backend: `celery-task-meta-<id>` values, written with SET/SETEX and
//! PUBLISHed on the channel of the same name, and a client-side wait that subscribes first.

use std::time::Duration;

use crate::conn::RedisUrl;
use crate::conn::{Conn, Transient};
use futures_util::StreamExt;
use redis::AsyncCommands;

use super::meta::{ResultMeta, TaskState};
use crate::batch::{Batcher, Call, Replication};
use crate::keys;
use crate::scripts::{REVOKE_RESULT, STORE_BATCH};

/// The prefix of a value compressed by Celery 5.7's `result_compression`.
const COMPRESSED_PREFIX: &[u8] = b"\x00celery-compressed\x00";

/// Why a result could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ResultError {
    /// The backend's Redis failed the call.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The stored value is not Celery's JSON (or a meta could not be serialized).
    #[error("stored result is not Celery JSON: {0}")]
    Decode(#[from] serde_json::Error),
    /// The stored value is compressed by Celery 5.7's `result_compression`, which is not read.
    #[error("stored result is compressed (Celery result_compression); turn it off for this fleet")]
    Compressed,
    /// A wait ended before the state it waited for was stored.
    #[error("no ready result within {0:?}")]
    Timeout(Duration),
}

impl Transient for ResultError {
    fn is_transient(&self) -> bool {
        matches!(self, ResultError::Redis(e) if e.is_transient())
    }
}

/// A result ready to be written: its key, its JSON and its TTL in seconds (0: none).
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    /// `celery-task-meta-<id>`.
    pub key: String,
    /// The [`ResultMeta`] as Celery's JSON.
    pub json: String,
    /// `RESULT_EXPIRES_SECS`; 0 keeps it forever.
    pub ttl_secs: u64,
}

/// Reads and writes task results in the backend's Redis database.
#[derive(Clone)]
pub struct ResultBackend {
    conn: Conn,
    client: RedisUrl,
    expires: Duration,
    in_broker_db: bool,
    /// Task states, in batches (group commit, see [`crate::batch`]).
    stores: Batcher,
}

impl ResultBackend {
    /// `client` opens the pub/sub connection of [`ResultBackend::wait`]; `in_broker_db` says
    /// whether `conn` is the broker's database (then the broker writes final results itself,
    /// in the script that acknowledges the task).
    pub fn new(
        conn: Conn,
        client: impl Into<RedisUrl>,
        expires: Duration,
        in_broker_db: bool,
    ) -> Self {
        ResultBackend {
            stores: Batcher::new(&STORE_BATCH, conn.clone(), Replication::None),
            conn,
            client: client.into(),
            expires,
            in_broker_db,
        }
    }

    /// The connection to the backend's database.
    pub fn connection(&self) -> &Conn {
        &self.conn
    }

    /// `RESULT_EXPIRES_SECS`: how long results (and chord keys) live; 0 keeps them.
    pub fn expires_secs(&self) -> u64 {
        self.expires.as_secs()
    }

    /// Whether results live in the broker's database.
    pub fn in_broker_db(&self) -> bool {
        self.in_broker_db
    }

    /// The key, JSON and TTL under which `meta` is stored.
    pub fn encode(&self, meta: &ResultMeta) -> Encoded {
        Encoded {
            key: keys::task_meta(&meta.task_id),
            json: meta.to_json(),
            ttl_secs: self.expires.as_secs(),
        }
    }

    /// Writes `meta` and PUBLISHes it in one step; a SUCCESS already stored is never replaced.
    /// Returns whether the value was written.
    pub async fn store(&self, meta: &ResultMeta) -> Result<bool, ResultError> {
        let encoded = self.encode(meta);
        let mut call = Call::default();
        call.key(encoded.key)
            .arg(encoded.json)
            .arg(encoded.ttl_secs);
        let written = self.stores.call_int(call).await?;
        Ok(written == 1)
    }

    /// Stores REVOKED for each of `task_ids` that has not started or finished anywhere (their
    /// stored state is kept), in one script call; returns how many were written. Celery's
    /// `revoke` handler does this for every revoked id a worker is not running itself.
    pub async fn revoke_unstarted(&self, task_ids: &[&str]) -> Result<usize, ResultError> {
        if task_ids.is_empty() {
            return Ok(0);
        }
        let mut invocation = REVOKE_RESULT.prepare_invoke();
        invocation.arg(self.expires.as_secs());
        for id in task_ids {
            let encoded = self.encode(&ResultMeta::revoked(id, "revoked"));
            invocation.key(encoded.key).arg(encoded.json);
        }
        let written: usize = invocation.invoke_async(&mut self.conn.clone()).await?;
        Ok(written)
    }

    /// The stored meta, or PENDING when there is none.
    pub async fn get(&self, task_id: &str) -> Result<ResultMeta, ResultError> {
        let raw: Option<Vec<u8>> = self.conn.clone().get(keys::task_meta(task_id)).await?;
        match raw {
            None => Ok(ResultMeta::pending(task_id)),
            Some(bytes) => decode(&bytes),
        }
    }

    /// Waits for a ready state the way `AsyncResult.get()` does: SUBSCRIBE first, then one GET
    /// (the result may already be there), then only pub/sub messages. No polling.
    pub async fn wait(&self, task_id: &str, timeout: Duration) -> Result<ResultMeta, ResultError> {
        self.wait_for(task_id, timeout, TaskState::is_ready).await
    }

    /// Like [`ResultBackend::wait`], for the first state that satisfies `done` (e.g. STARTED).
    pub async fn wait_for(
        &self,
        task_id: &str,
        timeout: Duration,
        done: impl Fn(&TaskState) -> bool,
    ) -> Result<ResultMeta, ResultError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let channel = keys::task_meta(task_id);
        let resolved = self.client.topology().resolve(self.client.client()).await;
        let client = resolved.map_err(redis::RedisError::from)?;
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(&channel).await?;
        let current = self.get(task_id).await?;
        if done(&current.status) {
            return Ok(current);
        }
        let mut messages = pubsub.on_message();
        loop {
            match tokio::time::timeout_at(deadline, messages.next()).await {
                Err(_) => return Err(ResultError::Timeout(timeout)),
                Ok(None) => {
                    return Err(ResultError::Redis(redis::RedisError::from((
                        redis::ErrorKind::Io,
                        "pub/sub connection closed",
                    ))))
                }
                Ok(Some(msg)) => {
                    let meta = decode(msg.get_payload_bytes())?;
                    if done(&meta.status) {
                        return Ok(meta);
                    }
                }
            }
        }
    }
}

fn decode(bytes: &[u8]) -> Result<ResultMeta, ResultError> {
    if bytes.starts_with(COMPRESSED_PREFIX) {
        return Err(ResultError::Compressed);
    }
    Ok(serde_json::from_slice(bytes)?)
}
