//! The one submit and read path of both services, generic over a `shop` contract:
//! `POST /<kind>s` accepts a contract once per id, `GET /<kind>s/{id}` shows its task's state.

use celery_redis::broker::Submitted;
use celery_redis::conn::{bounded, retry_once};
use celery_redis::refusal::nothing_written;
use celery_redis::result::{ResultError, ResultMeta, TaskState};
use serde_json::{json, Map, Value};
use shop::contracts::Submission;
use shop::submission;
use shop::validation::is_id;
use warp::http::StatusCode;
use warp::Rejection;

use crate::body::json_reply;
use crate::error::ApiError;
use crate::service::AppState;

type Reply = Result<warp::reply::Response, Rejection>;

/// Validates a submission (generating its id when none is given) and enqueues it once per id:
/// 202 for a new id, 200 with the same task for an id seen before, 429 with `Retry-After` when
/// the queue is full. Nothing is enqueued when the request is refused, nor while the Redis it
/// would go to is not confirmed to keep every key (`celery_redis::eviction`): 503
/// `redis_unavailable`. A write Redis refused before writing anything (out of memory, a
/// replica...) is `redis_unavailable` too; only a write that may have happened is
/// `outcome_unknown` (see `celery_redis::refusal::nothing_written`).
pub async fn create<C: Submission>(body: Map<String, Value>, state: AppState) -> Reply {
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
    let mut reply = json!({"task_id": task_id, "status_url": status_path::<C>(id)});
    reply[C::ID_FIELD] = Value::String(id.to_owned());
    Ok(json_reply(status, &reply))
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

/// Answers a read: 404 when no task is known for `id`, else the task's state from the result
/// backend (`{<id field>, task_id, state, result, error?, date_done}`) with `extra` fields.
pub async fn task_reply<C: Submission>(
    id: &str,
    task_id: Option<String>,
    state: &AppState,
    extra: Map<String, Value>,
) -> Reply {
    let mut view = task_state::<C>(id, task_id, state).await?;
    for (k, v) in extra {
        view[k] = v;
    }
    Ok(json_reply(StatusCode::OK, &view))
}

/// The view of a read (see [`task_reply`]), for a handler that adds to it.
pub async fn task_state<C: Submission>(
    id: &str,
    task_id: Option<String>,
    state: &AppState,
) -> Result<Value, Rejection> {
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
    let mut view = task_view(&meta);
    view[C::ID_FIELD] = Value::String(id.to_owned());
    Ok(view)
}

fn not_found<C: Submission>(id: &str) -> Rejection {
    ApiError::not_found(format!("no {} {id:?}", C::KIND)).reject()
}

/// The public view of a task's state: `{"task_id", "state", "result", "error"?, "date_done"}`.
pub fn task_view(meta: &ResultMeta) -> Value {
    let mut view = json!({
        "task_id": meta.task_id,
        "state": meta.status.as_str(),
        "date_done": meta.date_done,
    });
    match meta.status {
        TaskState::Failure | TaskState::Revoked => {
            if let Some(exc) = meta.exception() {
                view["error"] = json!({"type": exc.exc_type, "message": exc.message()});
            }
            view["result"] = Value::Null;
        }
        TaskState::Success => view["result"] = meta.result.clone(),
        _ => view["result"] = Value::Null,
    }
    view
}
