//! What Celery stores for a task: its state, result or exception, in the JSON shape of
//! `celery-task-meta-<id>` (fields in the order Celery writes them).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::clock;

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

/// What `result_extended` adds to a stored result, borrowed from the request.
#[derive(Debug, Clone, Copy)]
pub struct Extended<'a> {
    pub name: &'a str,
    pub args: &'a [Value],
    pub kwargs: &'a Map<String, Value>,
    pub worker: &'a str,
    pub retries: i64,
    pub queue: Option<&'a str>,
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

    /// Celery's `result_extended` fields: the task's name, args, kwargs, the worker that ran it,
    /// its retries and its queue (the routing key it was published with), so that
    /// `AsyncResult.name`/`.args`/`.kwargs`/`.worker`/`.queue` read them.
    pub fn with_extended(mut self, request: Extended<'_>) -> Self {
        let fields = [
            ("name", Value::from(request.name)),
            ("args", Value::Array(request.args.to_vec())),
            ("kwargs", Value::Object(request.kwargs.clone())),
            ("worker", Value::from(request.worker)),
            ("retries", Value::from(request.retries)),
            ("queue", request.queue.map_or(Value::Null, Value::from)),
        ];
        for (name, value) in fields {
            self.extra.insert(name.to_owned(), value);
        }
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
