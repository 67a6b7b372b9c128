//! One delivery, from the raw envelope to its acknowledgement: decode, eta and expiry, run,
//! send on children, store the result, ack. Redis failures leave the message unacknowledged
//! (it comes back after the visibility timeout); nothing here can crash the worker.

use common::protocol::{DecodeError, Envelope, Message};
use common::queue::{Broker, DeadLetter, Delivery};
use common::result::{ExceptionInfo, ResultBackend, ResultMeta};
use redis::aio::ConnectionManager;

use crate::canvas;
use crate::tasks::{self, Request, TaskError};
use crate::webhook;

/// What every task run needs, shared by all of them.
pub struct Context {
    pub broker: Broker,
    pub results: ResultBackend,
    /// The broker's database (stock, notifications, idempotency records).
    pub redis: ConnectionManager,
    pub http: reqwest::Client,
    pub webhook: webhook::Policy,
    pub queue: String,
    pub node: String,
    pub acks_late: bool,
    pub track_started: bool,
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
        let due = common::clock::unix_seconds(eta);
        if due > now {
            log::info!(
                "task {} [{}] scheduled for {}",
                msg.task(),
                msg.id(),
                headers.eta.as_deref().unwrap_or_default()
            );
            ctx.broker.schedule(delivery, due).await?;
            return Ok(());
        }
    }
    let store = |meta: ResultMeta| {
        let meta = meta.with_request(headers.parent_id.as_deref(), headers.group.as_deref());
        async move {
            if headers.ignore_result {
                return Ok(true);
            }
            ctx.results.store(&meta).await
        }
    };
    if msg
        .expires()
        .is_some_and(|t| common::clock::unix_seconds(t) < now)
    {
        log::info!(
            "task {} [{}] expired; storing REVOKED",
            msg.task(),
            msg.id()
        );
        store(ResultMeta::revoked(msg.id(), "expired")).await?;
        ctx.broker.ack(&delivery.tag).await?;
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
        store(ResultMeta::started(msg.id(), &ctx.node)).await?;
    }
    if !ctx.acks_late {
        ctx.broker.ack(&delivery.tag).await?;
    }
    let outcome = match tasks::dispatch(ctx, msg.task(), &req, &msg.body).await {
        Some(outcome) => outcome,
        None => Err(TaskError::Failed(ExceptionInfo::new(
            "celery.exceptions",
            "NotRegistered",
            msg.task(),
        ))),
    };
    match outcome {
        Ok(output) => {
            let mut children = output.children;
            children.extend(canvas::on_success(&msg, &output.value));
            for child in &children {
                ctx.broker.publish(child).await?;
            }
            let ids: Vec<String> = children.iter().map(|c| c.id.clone()).collect();
            store(ResultMeta::success(msg.id(), output.value).with_children(&ids)).await?;
            log::info!("task {} [{}] succeeded", msg.task(), msg.id());
        }
        Err(TaskError::Failed(exc)) => {
            for errback in canvas::on_failure(&msg) {
                ctx.broker.publish(&errback).await?;
            }
            log::warn!(
                "task {} [{}] failed: {}: {}",
                msg.task(),
                msg.id(),
                exc.exc_type,
                exc.message()
            );
            store(ResultMeta::failure(
                msg.id(),
                &exc,
                Some(format!("{}: {}", exc.exc_type, exc.message())),
            ))
            .await?;
        }
        Err(TaskError::Transient(why)) => {
            return Err(ExecuteError::Transient(msg.id().to_owned(), why));
        }
    }
    if ctx.acks_late {
        ctx.broker.ack(&delivery.tag).await?;
    }
    Ok(())
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
