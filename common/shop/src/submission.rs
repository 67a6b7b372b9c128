//! A contract accepted once per id: the one submit and read path both services use.

use celery_redis::broker::{Broker, Submitted};
use celery_redis::conn::Conn;
use celery_redis::protocol::TaskMessage;
use redis::{AsyncCommands, RedisResult};

use crate::contracts::Submission;
use crate::keys;

/// Enqueues the contract's task unless its id was accepted before or the queue is full; the
/// idempotency key and the message are written in one step, or neither.
pub async fn submit<C: Submission>(broker: &Broker, contract: &C) -> RedisResult<Submitted> {
    submit_with_headers(broker, contract, Vec::<(&str, String)>::new()).await
}

/// [`submit`], with headers beyond Celery's own on the message (the W3C trace context of the
/// request that submits it: `traceparent`, `tracestate`).
pub async fn submit_with_headers<C: Submission, K: Into<String>>(
    broker: &Broker,
    contract: &C,
    headers: impl IntoIterator<Item = (K, String)>,
) -> RedisResult<Submitted> {
    let msg = TaskMessage::new(C::NAME, broker.route(C::NAME), contract.to_kwargs())
        .with_headers(headers);
    broker
        .publish_once(&keys::submitted_task(C::KIND, contract.id()), &msg)
        .await
}

/// The task accepted for this id, if it was ever accepted.
pub async fn task_of<C: Submission>(conn: &Conn, id: &str) -> RedisResult<Option<String>> {
    conn.clone().get(keys::submitted_task(C::KIND, id)).await
}
