//! Celery's Redis result backend: `celery-task-meta-<id>` values, written with SETEX and
//! PUBLISHed on the channel of the same name, and a client-side wait that subscribes first.

use std::sync::LazyLock;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::protocol::TaskMessage;
use crate::{clock, keys};

static STORE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/store_result.lua")));

/// The prefix of a value compressed by Celery 5.7's `result_compression`.
const COMPRESSED_PREFIX: &[u8] = b"\x00celery-compressed\x00";

/// Celery's task states, upper case on the wire. Custom states are kept as they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum TaskState {
    Pending,
    Received,
    Started,
    Retry,
    Success,
    Failure,
    Revoked,
    Other(String),
}

impl TaskState {
    /// SUCCESS, FAILURE and REVOKED: the task will not change any more.
    pub fn is_ready(&self) -> bool {
        matches!(
            self,
            TaskState::Success | TaskState::Failure | TaskState::Revoked
        )
    }

    pub fn as_str(&self) -> &str {
        match self {
            TaskState::Pending => "PENDING",
            TaskState::Received => "RECEIVED",
            TaskState::Started => "STARTED",
            TaskState::Retry => "RETRY",
            TaskState::Success => "SUCCESS",
            TaskState::Failure => "FAILURE",
            TaskState::Revoked => "REVOKED",
            TaskState::Other(s) => s,
        }
    }
}

impl From<String> for TaskState {
    fn from(s: String) -> Self {
        match s.as_str() {
            "PENDING" => TaskState::Pending,
            "RECEIVED" => TaskState::Received,
            "STARTED" => TaskState::Started,
            "RETRY" => TaskState::Retry,
            "SUCCESS" => TaskState::Success,
            "FAILURE" => TaskState::Failure,
            "REVOKED" => TaskState::Revoked,
            _ => TaskState::Other(s),
        }
    }
}

impl From<TaskState> for String {
    fn from(s: TaskState) -> Self {
        s.as_str().to_owned()
    }
}

/// An exception as Celery serializes it, so a Python client can re-raise it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExceptionInfo {
    pub exc_type: String,
    pub exc_message: Value,
    pub exc_module: String,
}

impl ExceptionInfo {
    /// `module.exc_type(message)`; use `builtins` types (ValueError, RuntimeError...) when
    /// Python callers should be able to `except` them.
    pub fn new(module: &str, exc_type: &str, message: impl Into<String>) -> Self {
        ExceptionInfo {
            exc_type: exc_type.to_owned(),
            exc_message: Value::Array(vec![Value::String(message.into())]),
            exc_module: module.to_owned(),
        }
    }

    pub fn message(&self) -> String {
        match &self.exc_message {
            Value::Array(parts) => parts
                .iter()
                .map(|p| p.as_str().map_or_else(|| p.to_string(), str::to_owned))
                .collect::<Vec<_>>()
                .join(", "),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }
}

/// The value of `celery-task-meta-<id>`, fields in the order Celery writes them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultMeta {
    pub status: TaskState,
    #[serde(default)]
    pub result: Value,
    #[serde(default)]
    pub traceback: Option<String>,
    #[serde(default)]
    pub children: Option<Value>,
    #[serde(default)]
    pub date_done: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    #[serde(default)]
    pub task_id: String,
    /// `result_extended` fields and anything else a writer added.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ResultMeta {
    fn new(task_id: &str, status: TaskState, result: Value, done: bool) -> Self {
        ResultMeta {
            status,
            result,
            traceback: None,
            children: Some(Value::Array(Vec::new())),
            date_done: done.then(clock::now_iso),
            group_id: None,
            parent_id: None,
            task_id: task_id.to_owned(),
            extra: Map::new(),
        }
    }

    /// What a missing key means: Celery reports unknown ids as PENDING.
    pub fn pending(task_id: &str) -> Self {
        let mut meta = Self::new(task_id, TaskState::Pending, Value::Null, false);
        meta.children = None;
        meta
    }

    /// STARTED, with Celery's `{"pid", "hostname"}` result.
    pub fn started(task_id: &str, hostname: &str) -> Self {
        let info = serde_json::json!({"pid": std::process::id(), "hostname": hostname});
        Self::new(task_id, TaskState::Started, info, false)
    }

    pub fn success(task_id: &str, result: Value) -> Self {
        Self::new(task_id, TaskState::Success, result, true)
    }

    pub fn failure(task_id: &str, exc: &ExceptionInfo, traceback: Option<String>) -> Self {
        let mut meta = Self::new(task_id, TaskState::Failure, exc_value(exc), true);
        meta.traceback = traceback;
        meta
    }

    /// REVOKED as Celery stores it (`children` is null there).
    pub fn revoked(task_id: &str, reason: &str) -> Self {
        let exc = ExceptionInfo::new("celery.exceptions", "TaskRevokedError", reason);
        let mut meta = Self::new(task_id, TaskState::Revoked, exc_value(&exc), true);
        meta.children = None;
        meta
    }

    /// Copies the request's `parent_id`/`group_id`, as Celery does.
    pub fn with_request(mut self, parent_id: Option<&str>, group_id: Option<&str>) -> Self {
        self.parent_id = parent_id.map(str::to_owned);
        self.group_id = group_id.map(str::to_owned);
        self
    }

    /// Names tasks this one sent: `[[[id, null], null], ...]`.
    pub fn with_children(mut self, ids: &[String]) -> Self {
        self.children = Some(Value::Array(
            ids.iter()
                .map(|id| serde_json::json!([[id, null], null]))
                .collect(),
        ));
        self
    }

    /// The stored exception of a FAILURE/REVOKED/RETRY, if the result is one.
    pub fn exception(&self) -> Option<ExceptionInfo> {
        serde_json::from_value(self.result.clone()).ok()
    }
}

fn exc_value(exc: &ExceptionInfo) -> Value {
    serde_json::to_value(exc).unwrap_or(Value::Null)
}

#[derive(Debug, thiserror::Error)]
pub enum ResultError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("stored result is not Celery JSON: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("stored result is compressed (Celery result_compression); turn it off for this fleet")]
    Compressed,
    #[error("no ready result within {0:?}")]
    Timeout(Duration),
}

/// Reads and writes task results in the backend's Redis database.
#[derive(Clone)]
pub struct ResultBackend {
    conn: ConnectionManager,
    client: redis::Client,
    expires: Duration,
}

impl ResultBackend {
    /// `client` is used to open the pub/sub connection of [`ResultBackend::wait`].
    pub fn new(conn: ConnectionManager, client: redis::Client, expires: Duration) -> Self {
        ResultBackend {
            conn,
            client,
            expires,
        }
    }

    /// GET-check, SETEX and PUBLISH in one step; a SUCCESS already stored is never replaced.
    /// Returns whether the value was written.
    pub async fn store(&self, meta: &ResultMeta) -> Result<bool, ResultError> {
        self.finish(meta, None, &[]).await
    }

    /// A task's end in one step: LPUSH `publish` (the messages it sends on: children, callbacks,
    /// the next chain step), store `meta`, and ack `delivery_tag` (kombu's layout). When a SUCCESS
    /// is already stored nothing is published or written (the run that stored it published them),
    /// but the delivery is still acked. Only for a backend in the broker's database: the queue
    /// and ack keys must be in the same database. Returns whether the result was written.
    pub async fn finish(
        &self,
        meta: &ResultMeta,
        delivery_tag: Option<&str>,
        publish: &[TaskMessage],
    ) -> Result<bool, ResultError> {
        let json = serde_json::to_string(meta)?;
        let mut inv = STORE.key(keys::task_meta(&meta.task_id));
        inv.key(keys::UNACKED)
            .key(keys::UNACKED_INDEX)
            .arg(json)
            .arg(self.expires.as_secs())
            .arg(delivery_tag.unwrap_or_default());
        for msg in publish {
            inv.key(keys::queue_list(&msg.queue, msg.priority))
                .arg(msg.to_envelope().to_json());
        }
        let written: i64 = inv.invoke_async(&mut self.conn.clone()).await?;
        Ok(written == 1)
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
        let mut pubsub = self.client.get_async_pubsub().await?;
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
