//! The ways a held delivery ends, all here (the broker is the only owner of acknowledgement):
//! plain ack, a task's finish (follow-up messages, result and ack together), hand-back,
//! schedule, retry and dead letter. Each is one script that checks every key it writes before
//! the first write, and does nothing when the lease was lost.

use std::time::Duration;

use redis::RedisResult;

use super::dead::fail_dead;
use super::{Broker, DeadLetter, Delivery};
use crate::keys;
use crate::protocol::{Envelope, TaskMessage};
use crate::result::{ResultBackend, ResultError, ResultMeta};
use crate::scripts::{FINISH, SETTLE};

/// A message a finishing task sends on, where it goes: its queue's list, or the dead-letter
/// list when it cannot be routed there.
struct Outgoing<'a> {
    msg: &'a TaskMessage,
    list: String,
    value: String,
    /// Why it was dead-lettered instead of published.
    dead: Option<String>,
}

fn refused(what: &str) -> redis::RedisError {
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

    fn outgoing<'a>(&self, msg: &'a TaskMessage) -> Outgoing<'a> {
        let value = self.envelope_json(msg);
        if keys::is_queue_name(&msg.queue) {
            return Outgoing {
                msg,
                list: self.layout.queue_list(&msg.queue, msg.priority),
                value,
                dead: None,
            };
        }
        let reason = format!("{:?} is not a usable queue name", msg.queue);
        Outgoing::dead(msg, reason, value, self.layout.dead_letter())
    }

    /// A task's end: publishes `publish` (what it sends on: children, callbacks, the next chain
    /// step), stores `result` (none for `ignore_result`) and acknowledges `tag` (none when it
    /// was acknowledged early). When results share the broker's database this is one script:
    /// none happens without the others, and when a SUCCESS is already stored nothing is
    /// published or written (the run that stored it did that) but the delivery is acked. With
    /// results elsewhere the steps go in Celery's order: publish, store, ack.
    ///
    /// A message that cannot go to its queue (a reserved or invalid name, or a key of another
    /// type) goes to the dead-letter list instead, in the same step, and its id gets a FAILURE.
    /// Returns whether the result was written.
    pub async fn finish(
        &self,
        results: &ResultBackend,
        tag: Option<&str>,
        result: Option<&ResultMeta>,
        publish: &[TaskMessage],
    ) -> Result<bool, ResultError> {
        let mut sends: Vec<Outgoing> = publish.iter().map(|m| self.outgoing(m)).collect();
        let one_step = result.is_none() || results.in_broker_db();
        let mut encoded = match result {
            Some(meta) if one_step => Some(results.encode(meta)?),
            _ => None,
        };
        let script_tag = if one_step { tag } else { None };
        let written = loop {
            let mut inv = FINISH.key(self.layout.unacked());
            inv.key(self.layout.unacked_index());
            match &encoded {
                Some(e) => inv
                    .key(&e.key)
                    .arg(script_tag.unwrap_or_default())
                    .arg(&e.json)
                    .arg(e.ttl_secs),
                // Not touched by the script without a result; any key name will do.
                None => inv
                    .key(self.layout.unacked())
                    .arg(script_tag.unwrap_or_default())
                    .arg("")
                    .arg(0),
            };
            for send in &sends {
                inv.key(&send.list).arg(&send.value);
            }
            let reply: i64 = inv.invoke_async(&mut self.conn.should_replicate()).await?;
            match reply {
                -1 => {
                    log::error!(
                        "the result key of task {} holds another type of value; its result is not stored",
                        result.map_or("", |m| m.task_id.as_str())
                    );
                    encoded = None;
                }
                n if n < -1 => {
                    let i = usize::try_from(-n - 2).unwrap_or(usize::MAX);
                    let Some(send) = sends.get_mut(i).filter(|s| s.dead.is_none()) else {
                        return Err(refused(self.layout.dead_letter()).into());
                    };
                    let reason = format!("queue {:?} holds another type of value", send.msg.queue);
                    let dead = self.layout.dead_letter();
                    *send = Outgoing::dead(send.msg, reason, send.value.clone(), dead);
                }
                n => break n == 1,
            }
        };
        for send in &sends {
            if let Some(reason) = &send.dead {
                log::warn!(
                    "dead-lettered task {} [{}]: {reason}",
                    send.msg.task,
                    send.msg.id
                );
                fail_dead(results, &send.msg.id, reason).await?;
            }
        }
        if one_step {
            return Ok(written);
        }
        let written = match result {
            Some(meta) => results.store(meta).await?,
            None => written,
        };
        if let Some(tag) = tag {
            self.ack(tag).await?;
        }
        Ok(written)
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

impl<'a> Outgoing<'a> {
    fn dead(msg: &'a TaskMessage, reason: String, envelope: String, dead_letter: &str) -> Self {
        let mut entry = DeadLetter::new(reason.clone(), envelope);
        entry.task = Some(msg.task.clone());
        entry.task_id = Some(msg.id.clone());
        entry.queue = keys::is_queue_name(&msg.queue).then(|| msg.queue.clone());
        Outgoing {
            msg,
            list: dead_letter.to_owned(),
            value: entry.to_json(),
            dead: Some(reason),
        }
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
