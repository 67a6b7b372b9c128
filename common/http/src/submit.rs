//! The one submit and read path of both services, generic over a `shop` contract:
//! `POST /<kind>s` accepts a contract once per id, `GET /<kind>s/{id}` shows its task's state.

use celery_redis::broker::Submitted;
use celery_redis::conn::{bounded, retry_once};
use celery_redis::refusal::nothing_written;
use celery_redis::result::{ResultError, ResultMeta, TaskState};
use serde_json::{Map, Value};
use shop::contracts::Submission;
use shop::submission;
use shop::validation::is_id;
use warp::http::StatusCode;
use warp::Rejection;

use crate::error::ApiError;
use crate::openapi::TaskError;
use crate::service::AppState;

/// A submission accepted (now or before): the parts of the service's accepted reply (a typed
/// `<Kind>Accepted` of the service, which names `id` after its id field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The contract's id (`order_id`, `notification_id`).
    pub id: String,
    /// The Celery task id of its task (to read its state with).
    pub task_id: String,
    /// Where its state is read: [`status_path`].
    pub status_url: String,
}

/// A task's state from the result backend, the common part of a service's typed view (which
/// adds its id field and its own fields).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskView {
    /// The Celery task id whose state this is.
    pub task_id: String,
    /// Celery's state: PENDING, STARTED, RETRY, SUCCESS, FAILURE, REVOKED, ...
    pub state: String,
    /// What the task returned (SUCCESS only; `None` answers `null`).
    pub result: Option<Value>,
    /// Why it failed (FAILURE, REVOKED, when the backend says); absent otherwise.
    pub error: Option<TaskError>,
    /// When the task ended.
    pub date_done: Option<String>,
}

/// Validates a submission (generating its id when none is given) and enqueues it once per id:
/// 202 for a new id, 200 with the same task for an id seen before, 429 with `Retry-After` when
/// the queue is full. Nothing is enqueued when the request is refused, nor while the Redis it
/// would go to is not confirmed to keep every key (`celery_redis::eviction`): 503
/// `redis_unavailable`. A write Redis refused before writing anything (out of memory, a
/// replica...) is `redis_unavailable` too; only a write that may have happened is
/// `outcome_unknown` (see `celery_redis::refusal::nothing_written`). Returns the status (202 or
/// 200) and what the service's accepted reply says.
pub async fn create<C: Submission>(
    body: Map<String, Value>,
    state: AppState,
) -> Result<(StatusCode, Accepted), Rejection> {
    let contract =
        shop::contracts::submitted::<C>(&body).map_err(|e| ApiError::validation(e).reject())?;
    let id = contract.id();
    let unavailable = |e: &dyn std::fmt::Display| {
        ApiError {
            context: Some((C::ID_FIELD, id.to_owned())),
            ..ApiError::unavailable(e)
        }
        .reject()
    };
    // Asked once per connection; a connection found dead is asked again on a fresh one.
    let confirm = || async {
        state
            .stores
            .confirm()
            .await
            .map_err(redis::RedisError::from)
    };
    bounded(state.timeout, retry_once(confirm))
        .await
        .map_err(|e| unavailable(&e))?;
    // The task continues the request's trace (a new span of the same trace id).
    let trace = observe::trace::current()
        .map(|t| t.child().headers())
        .unwrap_or_default();
    let outcome = bounded(
        state.timeout,
        retry_once(|| submission::submit_with_headers(&state.broker, &contract, trace.clone())),
    )
    .await
    .map_err(|e| {
        if nothing_written(&e) {
            unavailable(&e)
        } else {
            ApiError::outcome_unknown(&e, C::ID_FIELD, id).reject()
        }
    })?;
    let (status, task_id) = match outcome {
        Submitted::Created(task) => {
            log::info!("{} {id} accepted as task {task}", C::KIND);
            let routes = state.broker.routes();
            crate::metrics::sent(&state.metrics, &state.origin, routes, C::NAME);
            (StatusCode::ACCEPTED, task)
        }
        Submitted::Existing(task) => (StatusCode::OK, task),
        Submitted::QueueFull(depth) => {
            return Err(ApiError {
                retry_after: Some(1),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "queue_full",
                    format!("{depth} tasks are waiting; try again later"),
                )
            }
            .reject())
        }
    };
    let accepted = Accepted {
        id: id.to_owned(),
        task_id,
        status_url: status_path::<C>(id),
    };
    Ok((status, accepted))
}

/// `/<kind>s/<id>`, where a submission's state is read.
pub fn status_path<C: Submission>(id: &str) -> String {
    format!("/{}s/{id}", C::KIND)
}

/// The task accepted for `id`, if any (a 404 for an id that cannot exist).
pub async fn accepted_task<C: Submission>(
    id: &str,
    state: &AppState,
) -> Result<Option<String>, Rejection> {
    if !is_id(id) {
        return Err(not_found::<C>(id));
    }
    state
        .call(|| submission::task_of::<C>(&state.redis, id))
        .await
        .map_err(ApiError::reject)
}

/// The state of the task accepted for `id` (404 when `task_id` is `None`), read from the result
/// backend, for the service's view to add its own fields to.
pub async fn task_state<C: Submission>(
    id: &str,
    task_id: Option<String>,
    state: &AppState,
) -> Result<TaskView, Rejection> {
    let task_id = task_id.ok_or_else(|| not_found::<C>(id))?;
    let meta = tokio::time::timeout(state.timeout, retry_once(|| state.results.get(&task_id)))
        .await
        .map_err(|_| ApiError::unavailable(&"result backend timed out").reject())?
        .map_err(|e| match e {
            ResultError::Redis(e) => ApiError::unavailable(&e).reject(),
            // Retrying will not help: say so instead of "try again".
            other => {
                log::error!("stored result of task {task_id} is unreadable: {other}");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "result_unreadable",
                    format!("the stored result of task {task_id} cannot be read: {other}"),
                )
                .reject()
            }
        })?;
    Ok(task_view(&meta))
}

fn not_found<C: Submission>(id: &str) -> Rejection {
    ApiError::not_found(format!("no {} {id:?}", C::KIND)).reject()
}

/// The public view of a task's state: `result` only on SUCCESS, `error` only on FAILURE or
/// REVOKED (when the backend holds the exception).
pub fn task_view(meta: &ResultMeta) -> TaskView {
    let (result, error) = match meta.status {
        TaskState::Failure | TaskState::Revoked => {
            let error = meta.exception().map(|exc| TaskError {
                message: exc.message(),
                kind: exc.exc_type,
            });
            (None, error)
        }
        TaskState::Success => (Some(meta.result.clone()), None),
        _ => (None, None),
    };
    TaskView {
        task_id: meta.task_id.clone(),
        state: meta.status.as_str().to_owned(),
        result,
        error,
        date_done: meta.date_done.clone(),
    }
}
