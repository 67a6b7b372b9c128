//! The ways a held delivery ends, all here (the broker is the only owner of acknowledgement):
//! plain ack, a task's finish (follow-up messages, result and ack together), hand-back,
//! schedule, retry and dead letter. Each is one script, and does nothing when the lease was lost.

use std::time::Duration;

use redis::RedisResult;

use super::{Broker, DeadLetter, Delivery};
use crate::keys;
use crate::protocol::{Envelope, TaskMessage};
use crate::result::{ResultBackend, ResultError, ResultMeta};
use crate::scripts::{FINISH, SETTLE};

impl Broker {
    async fn settle(
        &self,
        tag: &str,
        action: &str,
        dest: &str,
        value: &str,
        score: f64,
    ) -> RedisResult<bool> {
        let settled: i64 = SETTLE
            .key(keys::UNACKED)
            .key(keys::UNACKED_INDEX)
            .key(dest)
            .arg(tag)
            .arg(action)
            .arg(value)
            .arg(score)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(settled == 1)
    }

    /// Acknowledges a delivery (kombu's ZREM + HDEL). Returns false if the lease had been lost.
    pub async fn ack(&self, tag: &str) -> RedisResult<bool> {
        self.settle(tag, "ack", keys::UNACKED, "", 0.0).await
    }

    /// A task's end: publishes `publish` (what it sends on: children, callbacks, the next chain
    /// step), stores `result` (none for `ignore_result`) and acknowledges `tag` (none when it
    /// was acknowledged early). When results share the broker's database this is one script:
    /// none happens without the others, and when a SUCCESS is already stored nothing is
    /// published or written (the run that stored it did that) but the delivery is acked. With
    /// results elsewhere the steps go in Celery's order: publish, store, ack. Returns whether
    /// the result was written.
    pub async fn finish(
        &self,
        results: &ResultBackend,
        tag: Option<&str>,
        result: Option<&ResultMeta>,
        publish: &[TaskMessage],
    ) -> Result<bool, ResultError> {
        let encoded = result.map(|meta| results.encode(meta)).transpose()?;
        if encoded.is_some() && !results.in_broker_db() {
            if !publish.is_empty() {
                self.publish_many(publish).await?;
            }
            let written = match result {
                Some(meta) => results.store(meta).await?,
                None => true,
            };
            if let Some(tag) = tag {
                self.ack(tag).await?;
            }
            return Ok(written);
        }
        let mut inv = FINISH.key(keys::UNACKED);
        inv.key(keys::UNACKED_INDEX);
        match &encoded {
            Some(e) => inv
                .key(&e.key)
                .arg(tag.unwrap_or_default())
                .arg(&e.json)
                .arg(e.ttl_secs),
            // Not touched by the script without a result; any key name will do.
            None => inv
                .key(keys::UNACKED)
                .arg(tag.unwrap_or_default())
                .arg("")
                .arg(0),
        };
        for msg in publish {
            inv.key(keys::queue_list(&msg.queue, msg.priority))
                .arg(self.envelope_json(msg));
        }
        let written: i64 = inv.invoke_async(&mut self.conn.clone()).await?;
        Ok(written == 1)
    }

    /// Hands a held message back to the consuming end of its queue, to be delivered next.
    pub async fn requeue(&self, delivery: &Delivery) -> RedisResult<bool> {
        let list = self.list_of(&delivery.raw);
        self.settle(&delivery.tag, "rpush", &list, &delivery.raw, 0.0)
            .await
    }

    /// Parks a held message until `due` (Unix seconds, server clock) in the schedule.
    pub async fn schedule(&self, delivery: &Delivery, due: f64) -> RedisResult<bool> {
        let dest = keys::scheduled(&self.queue);
        self.settle(&delivery.tag, "zadd", &dest, &delivery.raw, due)
            .await
    }

    /// Acknowledges a held message and, in the same step, schedules `replacement` (a retry of
    /// it) to run `delay` from now by the server's clock.
    pub async fn retry(
        &self,
        delivery: &Delivery,
        replacement: &str,
        delay: Duration,
    ) -> RedisResult<bool> {
        let dest = keys::scheduled(&self.queue);
        self.settle(
            &delivery.tag,
            "zadd_in",
            &dest,
            replacement,
            delay.as_secs_f64(),
        )
        .await
    }

    /// Moves a held message to the dead-letter list with the reason, and acknowledges it.
    pub async fn dead_letter(&self, delivery: &Delivery, entry: &DeadLetter) -> RedisResult<bool> {
        self.settle(
            &delivery.tag,
            "lpush",
            keys::DEAD_LETTER,
            &entry.to_json(),
            0.0,
        )
        .await
    }

    /// The list a message goes back to: its routing key (or this queue) and priority.
    pub(super) fn list_of(&self, raw: &str) -> String {
        match Envelope::from_json(raw.as_bytes()) {
            Ok(env) => keys::queue_list(env.routing_key().unwrap_or(&self.queue), env.priority()),
            Err(_) => self.queue.clone(),
        }
    }
}
