//! What Celery stores for a task: its state, result or exception, in the JSON shape of
//! `celery-task-meta-<id>` (fields in the order Celery writes them).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::clock;

/// Celery's task states, upper case on the wire. Custom states are kept as they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum TaskState {
    /// Waiting, or unknown: what a task without a stored result reads as.
    Pending,
    /// Received by a worker, not started.
    Received,
    /// Running on a worker (`task_track_started`); the result is `{"pid", "hostname"}`.
    Started,
    /// Failed and sent again; the result is the exception.
    Retry,
    /// Done; the result is the task's return value.
    Success,
    /// Failed for good; the result is the exception.
    Failure,
    /// Revoked before or while it ran; the result is a `TaskRevokedError`.
    Revoked,
    /// A custom state a task set (`update_state`), kept as written.
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

    /// The state as Celery writes it (`SUCCESS`, ...).
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
    /// The exception's class name, e.g. `ValueError`.
    pub exc_type: String,
    /// Its arguments: a list, usually of one message string.
    pub exc_message: Value,
    /// The module of its class, e.g. `builtins`.
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

    /// The message for a person: `exc_message`'s parts joined by `, `.
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
    /// The task's name.
    pub name: &'a str,
    /// Its positional arguments.
    pub args: &'a [Value],
    /// Its keyword arguments.
    pub kwargs: &'a Map<String, Value>,
    /// The node name of the worker that ran it.
    pub worker: &'a str,
    /// How many times it was retried before this run.
    pub retries: i64,
    /// The routing key it was published with.
    pub queue: Option<&'a str>,
}

/// The value of `celery-task-meta-<id>`, fields in the order Celery writes them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultMeta {
    /// The task's state.
    pub status: TaskState,
    /// The return value (SUCCESS), the exception as [`ExceptionInfo`] (FAILURE, RETRY,
    /// REVOKED), or what the state carries.
    #[serde(default)]
    pub result: Value,
    /// The failure's traceback text, when there is one.
    #[serde(default)]
    pub traceback: Option<String>,
    /// The results of tasks this one sent, as Celery's tuples (see
    /// [`ResultMeta::with_children`]).
    #[serde(default)]
    pub children: Option<Value>,
    /// When the task reached a ready state (ISO 8601, UTC); `None` before.
    #[serde(default)]
    pub date_done: Option<String>,
    /// The id of the group it ran in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// The id of the task that sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    /// The task's id.
    #[serde(default)]
    pub task_id: String,
    /// `result_extended` fields and anything else a writer added.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ResultMeta {
    /// The stored value's JSON: serde's text (its derive is the reference the tests hold this
    /// to), written by hand for speed (`protocol::json`).
    pub fn to_json(&self) -> String {
        use crate::protocol::json;
        // Celery's fields and ids take ~250 bytes before the result: room for a small result.
        let mut out = String::with_capacity(512);
        let mut o = json::Object::new(&mut out);
        json::string(o.key("status"), self.status.as_str());
        json::value(o.key("result"), &self.result);
        json::opt_string(o.key("traceback"), self.traceback.as_deref());
        json::opt_value(o.key("children"), self.children.as_ref());
        json::opt_string(o.key("date_done"), self.date_done.as_deref());
        if let Some(group_id) = &self.group_id {
            json::string(o.key("group_id"), group_id);
        }
        if let Some(parent_id) = &self.parent_id {
            json::string(o.key("parent_id"), parent_id);
        }
        json::string(o.key("task_id"), &self.task_id);
        o.rest(&self.extra);
        o.end();
        out
    }

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
        let info = serde_json::json!({"pid": crate::node::pid(), "hostname": hostname});
        Self::new(task_id, TaskState::Started, info, false)
    }

    /// SUCCESS with the task's return value.
    pub fn success(task_id: &str, result: Value) -> Self {
        Self::new(task_id, TaskState::Success, result, true)
    }

    /// FAILURE with the exception and its traceback text.
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
