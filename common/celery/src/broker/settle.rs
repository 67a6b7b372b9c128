//! The ways a held delivery ends, all here (the broker is the only owner of acknowledgement):
//! plain ack, hand-back, schedule, retry and dead letter; a task's finish (follow-up
//! messages, result and ack together) is [`super::finish`]. Each is one script that checks every key it writes before
//! the first write, and does nothing when the lease was lost.

use std::time::Duration;

use redis::RedisResult;

use super::{Broker, DeadLetter, Delivery};
use crate::keys;
use crate::protocol::Envelope;
use crate::scripts::SETTLE;

pub(super) fn refused(what: &str) -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::Client,
        "refused",
        format!("{what} holds another type of value; nothing was written"),
    ))
}

impl Broker {
    /// Runs the settle script: 1 settled, 0 lease lost, -1 refused (destination of another type).
    async fn settle(
        &self,
        tag: &[u8],
        action: &str,
        dest: &str,
        value: &str,
        score: f64,
    ) -> RedisResult<i64> {
        SETTLE
            .key(self.layout.unacked())
            .key(self.layout.unacked_index())
            .key(dest)
            .arg(tag)
            .arg(action)
            .arg(value)
            .arg(score)
            .invoke_async(&mut self.conn.should_replicate())
            .await
    }

    /// Settles into one of the broker's own keys, which only a foreign writer could have
    /// given another type: that is an error, not a routing decision.
    async fn settle_own(
        &self,
        tag: &[u8],
        action: &str,
        dest: &str,
        value: &str,
        score: f64,
    ) -> RedisResult<bool> {
        match self.settle(tag, action, dest, value, score).await? {
            -1 => Err(refused(dest)),
            n => Ok(n == 1),
        }
    }

    /// Acknowledges a delivery (kombu's ZREM + HDEL). Returns false if the lease had been lost.
    pub async fn ack(&self, tag: &str) -> RedisResult<bool> {
        self.settle_own(tag.as_bytes(), "ack", self.layout.unacked(), "", 0.0)
            .await
    }

    /// Hands a held message back to the consuming end of its queue, to be delivered next (to
    /// the dead-letter list when that queue's key holds another type of value).
    pub async fn requeue(&self, delivery: &Delivery) -> RedisResult<bool> {
        let list = self.list_of(&delivery.raw, &delivery.queue);
        match self
            .settle(
                delivery.tag.as_bytes(),
                "rpush",
                &list,
                &not_lost(&delivery.raw),
                0.0,
            )
            .await?
        {
            -1 => {
                let entry =
                    DeadLetter::about("its queue's key holds another type of value", &delivery.raw)
                        .in_queue(&delivery.queue);
                let dead = self.dead_letter(delivery, &entry).await?;
                if dead {
                    self.report_dead(std::slice::from_ref(&entry)).await;
                }
                Ok(dead)
            }
            n => Ok(n == 1),
        }
    }

    /// Parks a held message until `due` (Unix seconds, server clock) in the schedule of the
    /// queue it came from.
    pub async fn schedule(&self, delivery: &Delivery, due: f64) -> RedisResult<bool> {
        let dest = self.layout.scheduled(&delivery.queue);
        self.settle_own(
            delivery.tag.as_bytes(),
            "zadd",
            &dest,
            &not_lost(&delivery.raw),
            due,
        )
        .await
    }

    /// Acknowledges a held message and, in the same step, schedules `replacement` (a retry of
    /// it) to run `delay` from now by the server's clock, in the schedule of its queue.
    pub async fn retry(
        &self,
        delivery: &Delivery,
        replacement: &str,
        delay: Duration,
    ) -> RedisResult<bool> {
        let dest = self.layout.scheduled(&delivery.queue);
        self.settle_own(
            delivery.tag.as_bytes(),
            "zadd_in",
            &dest,
            replacement,
            delay.as_secs_f64(),
        )
        .await
    }

    /// Moves a held message to the dead-letter list with the reason, and acknowledges it.
    pub async fn dead_letter(&self, delivery: &Delivery, entry: &DeadLetter) -> RedisResult<bool> {
        self.settle_dead(delivery.tag.as_bytes(), entry).await
    }

    /// [`Broker::dead_letter`] with `raw` in the entry instead of `entry.raw`: the delivery's
    /// text, or what is kept of it ([`super::dead::prefix`]), borrowed rather than copied.
    pub async fn dead_letter_holding(
        &self,
        delivery: &Delivery,
        entry: &DeadLetter,
        raw: &str,
    ) -> RedisResult<bool> {
        let json = entry.json_holding(raw);
        self.settle_own(
            delivery.tag.as_bytes(),
            "lpush",
            keys::DEAD_LETTER,
            &json,
            0.0,
        )
        .await
    }

    /// Dead-letters an entry a claim found not to be UTF-8 ([`super::Claim::Unreadable`]),
    /// taken from `queue`.
    pub async fn dead_letter_unreadable(
        &self,
        tag: &[u8],
        raw: &str,
        queue: &str,
    ) -> RedisResult<bool> {
        let entry = DeadLetter::new("the entry is not valid UTF-8 (raw shown lossily)", raw)
            .in_queue(queue);
        self.settle_dead(tag, &entry).await
    }

    /// Moves any `unacked` entry (held here or not) to the dead-letter list.
    pub(super) async fn settle_dead(&self, tag: &[u8], entry: &DeadLetter) -> RedisResult<bool> {
        self.settle_own(
            tag,
            "lpush",
            self.layout.dead_letter(),
            &entry.to_json(),
            0.0,
        )
        .await
    }
}

impl Broker {
    /// The list a held message goes back to: the one of its priority in `queue`, where it was
    /// taken from (not its routing key: a message published to a named exchange carries that
    /// exchange's routing key, which need not be a queue's name).
    fn list_of(&self, raw: &str, queue: &str) -> String {
        let priority = Envelope::from_json(raw.as_bytes()).map_or(0, |env| env.priority());
        self.layout.queue_list(queue, priority)
    }
}

/// `raw` as a live worker hands it back or parks it: kombu's `"redelivered": true` flags (set
/// by a restore, which the claim counts toward `MESSAGE_MAX_DELIVERIES`) turned false, since
/// this message was not lost. Left set, each later claim of a message restored once (after an
/// eta wait, a webhook deferral, a hand-back) counted as one more lost delivery.
fn not_lost(raw: &str) -> std::borrow::Cow<'_, str> {
    if !raw.contains("\"redelivered\"") {
        return std::borrow::Cow::Borrowed(raw);
    }
    std::borrow::Cow::Owned(
        raw.replace("\"redelivered\": true", "\"redelivered\": false")
            .replace("\"redelivered\":true", "\"redelivered\":false"),
    )
}
