//! One delivery, from the raw envelope to its acknowledgement: decode, eta and expiry, run
//! (within its time limit), send on children, store the result, ack; or re-send it the Celery
//! way for a retry. Redis failures leave the message unacknowledged (it comes back after the
//! visibility timeout); nothing here can crash the worker.

use std::sync::Arc;
use std::time::Duration;

use common::clock;
use common::protocol::{DecodeError, Envelope, Message, TaskMessage};
use common::queue::{Broker, DeadLetter, Delivery};
use common::result::{ExceptionInfo, ResultBackend, ResultMeta, TaskState};
use redis::aio::ConnectionManager;
use serde_json::Value;
use time::OffsetDateTime;
use tokio::sync::Notify;

use crate::canvas;
use crate::tasks::{self, Output, Request, TaskError};

/// Longest delay between two attempts of a retried task.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(600);

/// What every task run needs, shared by all of them.
pub struct Context {
    pub broker: Broker,
    pub results: ResultBackend,
    /// The broker's database (stock, notifications, idempotency records).
    pub redis: ConnectionManager,
    pub http: reqwest::Client,
    pub webhook_timeout: Duration,
    pub queue: String,
    pub node: String,
    pub acks_late: bool,
    /// Results live in the broker's database: a final result and its ack are one step.
    pub results_in_broker_db: bool,
    pub track_started: bool,
    pub max_retries: u32,
    pub retry_backoff: Duration,
    /// Wakes the scheduler when this worker parks a message (an eta task or a retry).
    pub scheduled: Arc<Notify>,
}

/// Why a delivery could not be finished; the message stays in `unacked`.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("result backend: {0}")]
    Result(#[from] common::result::ResultError),
    #[error("task {0} hit a transient error: {1}")]
    Transient(String, String),
}

/// Handles one delivery taken at `now` (server clock, Unix seconds).
pub async fn handle(ctx: &Context, delivery: &Delivery, now: f64) -> Result<(), ExecuteError> {
    let msg = match Message::decode(delivery.raw.as_bytes()) {
        Ok(msg) => msg,
        Err(e) => return poison(ctx, delivery, e).await,
    };
    let headers = &msg.envelope.headers;
    if let Some(eta) = msg.eta() {
        let due = clock::unix_seconds(eta);
        if due > now {
            log::info!(
                "task {} [{}] scheduled for {}",
                msg.task(),
                msg.id(),
                headers.eta.as_deref().unwrap_or_default()
            );
            ctx.broker.schedule(delivery, due).await?;
            ctx.scheduled.notify_one();
            return Ok(());
        }
    }
    if msg.expires().is_some_and(|t| clock::unix_seconds(t) < now) {
        log::info!(
            "task {} [{}] expired; storing REVOKED",
            msg.task(),
            msg.id()
        );
        let revoked = ResultMeta::revoked(msg.id(), "expired");
        store(ctx, &msg, revoked, Some(&delivery.tag), &[]).await?;
        return Ok(());
    }
    let req = Request {
        id: msg.id().to_owned(),
        root_id: headers
            .root_id
            .clone()
            .unwrap_or_else(|| msg.id().to_owned()),
    };
    if ctx.track_started {
        store(
            ctx,
            &msg,
            ResultMeta::started(msg.id(), &ctx.node),
            None,
            &[],
        )
        .await?;
    }
    if !ctx.acks_late {
        ctx.broker.ack(&delivery.tag).await?;
    }
    // With acks_late the final result and the ack go together, after the task.
    let ack = ctx.acks_late.then_some(delivery.tag.as_str());
    match run_within_limit(ctx, &msg, &req).await {
        Ok(output) => succeed(ctx, &msg, output, ack).await?,
        Err(TaskError::Failed(exc)) => fail(ctx, &msg, &exc, ack).await?,
        Err(TaskError::Retry(exc)) => return retry_or_give_up(ctx, &msg, delivery, exc).await,
        Err(TaskError::Transient(why)) => {
            return Err(ExecuteError::Transient(msg.id().to_owned(), why))
        }
    }
    Ok(())
}

/// Runs the task; an unknown name is Celery's NotRegistered, and `timelimit` ([hard, soft]
/// seconds) stops the task with (Soft)TimeLimitExceeded, as billiard names them.
async fn run_within_limit(
    ctx: &Context,
    msg: &Message,
    req: &Request,
) -> Result<Output, TaskError> {
    let run = async {
        if msg.body.embed.chord.as_ref().is_some_and(|c| !c.is_null()) {
            // The chord's body would need Celery's chord counter; refusing beats never running it.
            return Err(TaskError::Failed(ExceptionInfo::new(
                "builtins",
                "NotImplementedError",
                "chords are not supported by the Rust worker; use a chain or a group",
            )));
        }
        match tasks::dispatch(ctx, msg.task(), req, &msg.body).await {
            Some(outcome) => outcome,
            None => Err(TaskError::Failed(ExceptionInfo::new(
                "celery.exceptions",
                "NotRegistered",
                msg.task(),
            ))),
        }
    };
    let [hard, soft] = msg
        .envelope
        .headers
        .timelimit
        .map(|l| l.filter(|s| *s > 0.0 && s.is_finite()));
    let (limit, name) = match (hard, soft) {
        (Some(h), Some(s)) if s < h => (s, "SoftTimeLimitExceeded"),
        (Some(h), _) => (h, "TimeLimitExceeded"),
        (None, Some(s)) => (s, "SoftTimeLimitExceeded"),
        (None, None) => return run.await,
    };
    match tokio::time::timeout(Duration::from_secs_f64(limit), run).await {
        Ok(outcome) => outcome,
        Err(_) => {
            log::warn!(
                "task {} [{}] exceeded its time limit of {limit}s",
                msg.task(),
                msg.id()
            );
            Err(TaskError::Failed(ExceptionInfo {
                exc_type: name.to_owned(),
                exc_message: Value::Array(vec![serde_json::json!(limit)]),
                exc_module: "billiard.exceptions".to_owned(),
            }))
        }
    }
}

/// Stores the task's result unless the message asked for none (`ignore_result`), publishes
/// `publish` (the messages the task sends on) before it, and acknowledges `ack` after it. When
/// the results share the broker's database all of that is one step.
async fn store(
    ctx: &Context,
    msg: &Message,
    meta: ResultMeta,
    ack: Option<&str>,
    publish: &[TaskMessage],
) -> Result<(), ExecuteError> {
    let headers = &msg.envelope.headers;
    if ctx.results_in_broker_db && !headers.ignore_result {
        let meta = meta.with_request(headers.parent_id.as_deref(), headers.group.as_deref());
        ctx.results.finish(&meta, ack, publish).await?;
        return Ok(());
    }
    for next in publish {
        ctx.broker.publish(next).await?;
    }
    if !headers.ignore_result {
        let meta = meta.with_request(headers.parent_id.as_deref(), headers.group.as_deref());
        ctx.results.store(&meta).await?;
    }
    if let Some(tag) = ack {
        ctx.broker.ack(tag).await?;
    }
    Ok(())
}

/// Stores SUCCESS naming what the task sends on (its own children, then callbacks and the next
/// chain step), which is published first, as Celery does.
async fn succeed(
    ctx: &Context,
    msg: &Message,
    output: Output,
    ack: Option<&str>,
) -> Result<(), ExecuteError> {
    let mut children = output.children;
    children.extend(canvas::on_success(msg, &output.value));
    let ids: Vec<String> = children.iter().map(|c| c.id.clone()).collect();
    let meta = ResultMeta::success(msg.id(), output.value).with_children(&ids);
    store(ctx, msg, meta, ack, &children).await?;
    log::info!("task {} [{}] succeeded", msg.task(), msg.id());
    Ok(())
}

/// Publishes the errbacks, then stores FAILURE.
async fn fail(
    ctx: &Context,
    msg: &Message,
    exc: &ExceptionInfo,
    ack: Option<&str>,
) -> Result<(), ExecuteError> {
    log::warn!(
        "task {} [{}] failed: {}: {}",
        msg.task(),
        msg.id(),
        exc.exc_type,
        exc.message()
    );
    let traceback = Some(format!("{}: {}", exc.exc_type, exc.message()));
    let meta = ResultMeta::failure(msg.id(), exc, traceback);
    store(ctx, msg, meta, ack, &canvas::on_failure(msg)).await
}

/// A transient failure: while the budget lasts, store RETRY and, in one step, acknowledge this
/// message and schedule its retry (same id, `retries + 1`, `parent_id` = its own id, a new
/// delivery tag, an eta after a full-jitter exponential delay). After the last attempt: FAILURE,
/// and the message goes to the dead-letter list with the reason and the attempt count.
async fn retry_or_give_up(
    ctx: &Context,
    msg: &Message,
    delivery: &Delivery,
    exc: ExceptionInfo,
) -> Result<(), ExecuteError> {
    let retries = msg.envelope.headers.retries.max(0);
    if retries >= i64::from(ctx.max_retries) {
        fail(ctx, msg, &exc, None).await?;
        let entry = DeadLetter {
            reason: format!(
                "gave up after {} attempts: {}: {}",
                retries + 1,
                exc.exc_type,
                exc.message()
            ),
            queue: Some(ctx.queue.clone()),
            task: Some(msg.task().to_owned()),
            task_id: Some(msg.id().to_owned()),
            raw: delivery.raw.clone(),
            at: delivery.taken_at,
            attempts: Some(retries + 1),
        };
        ctx.broker.dead_letter(delivery, &entry).await?;
        return Ok(());
    }
    let delay = backoff(ctx.retry_backoff, retries);
    let replacement = retry_envelope(msg, OffsetDateTime::now_utc() + delay);
    log::info!(
        "task {} [{}] retry {} in {delay:?}: {}",
        msg.task(),
        msg.id(),
        retries + 1,
        exc.message()
    );
    let mut meta = ResultMeta::failure(
        msg.id(),
        &exc,
        Some(format!("Retry in {delay:?}: {}", exc.message())),
    );
    meta.status = TaskState::Retry;
    meta.date_done = None;
    store(
        ctx,
        msg,
        meta.with_children(&[msg.id().to_owned()]),
        None,
        &[],
    )
    .await?;
    ctx.broker
        .retry(delivery, &replacement.to_json(), delay)
        .await?;
    ctx.scheduled.notify_one();
    Ok(())
}

/// The message Celery's `Task.retry` sends.
fn retry_envelope(msg: &Message, eta: OffsetDateTime) -> Envelope {
    let mut env = msg.envelope.clone();
    env.headers.retries = env.headers.retries.max(0) + 1;
    env.headers.eta = Some(clock::to_celery_iso(eta));
    env.headers.parent_id = Some(msg.id().to_owned());
    env.headers.extra.remove("redelivered");
    if let Some(info) = env.properties.delivery_info.as_mut() {
        info.extra.remove("redelivered");
    }
    env.properties.delivery_tag = Some(uuid::Uuid::new_v4().to_string());
    env
}

/// Full jitter: random in [0, min(cap, base * 2^retries)].
fn backoff(base: Duration, retries: i64) -> Duration {
    let exp = u32::try_from(retries.clamp(0, 20)).unwrap_or(20);
    let cap = base
        .saturating_mul(2u32.saturating_pow(exp))
        .min(MAX_RETRY_DELAY);
    cap.mul_f64(fastrand::f64())
}

/// A message that cannot be run goes to the dead-letter list with the reason (and is acked in
/// the same step); if its task id is readable, the id gets a FAILURE so no caller waits forever.
async fn poison(ctx: &Context, delivery: &Delivery, err: DecodeError) -> Result<(), ExecuteError> {
    let env = Envelope::from_json(delivery.raw.as_bytes()).ok();
    let task = env.as_ref().map(|e| e.headers.task.clone());
    let task_id = env
        .as_ref()
        .map(|e| e.headers.id.clone())
        .filter(|id| !id.is_empty());
    log::warn!("dead-lettering message {}: {err}", delivery.tag);
    let entry = DeadLetter {
        reason: err.to_string(),
        queue: Some(ctx.queue.clone()),
        task,
        task_id: task_id.clone(),
        raw: delivery.raw.clone(),
        at: delivery.taken_at,
        attempts: None,
    };
    if let Some(id) = task_id {
        let exc_type = match err {
            DecodeError::ContentType(_) => "ContentDisallowed",
            _ => "DecodeError",
        };
        let exc = ExceptionInfo::new("kombu.exceptions", exc_type, err.to_string());
        ctx.results
            .store(&ResultMeta::failure(&id, &exc, None))
            .await?;
    }
    ctx.broker.dead_letter(delivery, &entry).await?;
    Ok(())
}
