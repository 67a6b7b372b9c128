//! A task's end in one step ([`Broker::finish`]): what it sends on, its result and its ack,
//! and for a chord header member that completed the join, the chord's body (or the body's
//! FAILURE and errbacks) too ([`Broker::finish_with`]).

use super::dead::fail_dead;
use super::settle::refused;
use super::Broker;
use crate::batch::Call;
use crate::keys;
use crate::protocol::TaskMessage;
use crate::result::{ChordEnd, ResultBackend, ResultError, ResultMeta};
use crate::scripts::FINISH;

/// A message a finishing task sends on, where it goes: its queue's list, or the dead-letter
/// list when it cannot be routed there.
struct Outgoing<'a> {
    msg: &'a TaskMessage,
    list: String,
    value: String,
    /// Why it was dead-lettered instead of published.
    dead: Option<String>,
}

impl Broker {
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
        self.finish_in_step(results, tag, result, publish, None)
            .await
    }

    /// [`Broker::finish`] of a chord header member that completed the join: `chord`'s messages
    /// and the body's result go in the same step, only while the chord's `.c` key still names
    /// this member (another run of it did them otherwise), which then becomes `done`. With
    /// results in another database, the check, the chord's messages and the rest are separate
    /// steps: a worker lost between them publishes the body again when the member runs again.
    pub async fn finish_with(
        &self,
        results: &ResultBackend,
        tag: Option<&str>,
        result: Option<&ResultMeta>,
        publish: &[TaskMessage],
        chord: Option<&ChordEnd>,
    ) -> Result<bool, ResultError> {
        let one_step = results.in_broker_db();
        if let (false, Some(end)) = (one_step, chord) {
            return self.finish_apart(results, tag, result, publish, end).await;
        }
        self.finish_in_step(results, tag, result, publish, chord)
            .await
    }

    /// The finish script (with the chord's part when results share the broker's database).
    async fn finish_in_step(
        &self,
        results: &ResultBackend,
        tag: Option<&str>,
        result: Option<&ResultMeta>,
        publish: &[TaskMessage],
        chord: Option<&ChordEnd>,
    ) -> Result<bool, ResultError> {
        let one_step = results.in_broker_db();
        let chord_msgs = chord.map_or(&[][..], |c| c.publish.as_slice());
        let mut sends: Vec<Outgoing> = chord_msgs
            .iter()
            .chain(publish)
            .map(|m| self.outgoing(m))
            .collect();
        let one_step = result.is_none() || one_step;
        let mut encoded = result.filter(|_| one_step).map(|meta| results.encode(meta));
        let body = chord
            .and_then(|c| c.body_result.as_ref())
            .map(|meta| results.encode(meta));
        let script_tag = if one_step { tag } else { None };
        // The arguments' bytes: the result, the chord body's result and the envelopes sent on,
        // with room for the few short ones (tag, TTL, counts).
        let room = sends
            .iter()
            .map(|send| send.value.len())
            .chain(encoded.iter().map(|e| e.json.len()))
            .chain(body.iter().map(|b| b.json.len()))
            .fold(256usize, usize::saturating_add);
        let written = loop {
            let mut call = Call::with_room(room);
            call.key(self.layout.unacked());
            call.key(self.layout.unacked_index());
            let (key, json) = encoded.as_ref().map_or((self.layout.unacked(), ""), |e| {
                (e.key.as_str(), e.json.as_str())
            });
            call.key(key)
                .arg(script_tag.unwrap_or_default())
                .arg(json)
                .arg(results.expires_secs());
            // A chord member's six keys; a plain task passes none.
            match chord {
                Some(c) => {
                    let k = &c.keys;
                    let unacked = self.layout.unacked();
                    let body_key = body.as_ref().map_or(unacked, |b| b.key.as_str());
                    call.key(&k.claim).key(body_key);
                    call.key(&k.join).key(&k.counter).key(&k.size).key(&k.dedup);
                    call.arg(&c.member);
                }
                None => {
                    call.arg("");
                }
            }
            call.arg(body.as_ref().map_or("", |b| b.json.as_str()))
                .arg(chord_msgs.len());
            for send in &sends {
                call.key(&send.list).arg(&send.value);
            }
            let reply = self.finisher.call_int(call).await?;
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
        self.report_dead_sends(results, &sends).await?;
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

    /// Stores a FAILURE for each message that was dead-lettered instead of sent.
    async fn report_dead_sends(
        &self,
        results: &ResultBackend,
        sends: &[Outgoing<'_>],
    ) -> Result<(), ResultError> {
        for send in sends {
            if let Some(reason) = &send.dead {
                log::warn!(
                    "dead-lettered task {} [{}]: {reason}",
                    send.msg.task,
                    send.msg.id
                );
                fail_dead(results, &send.msg.id, reason).await?;
            }
        }
        Ok(())
    }

    /// [`Broker::finish_with`] with results in another database than the broker's: the chord's
    /// messages are published while `.c` names the member, then the body's result, `done` and
    /// the member's result are written in the results' database, then the rest as
    /// [`Broker::finish`] does.
    async fn finish_apart(
        &self,
        results: &ResultBackend,
        tag: Option<&str>,
        result: Option<&ResultMeta>,
        publish: &[TaskMessage],
        chord: &ChordEnd,
    ) -> Result<bool, ResultError> {
        use redis::AsyncCommands;
        let claim: Option<String> = match results.connection().clone().get(&chord.keys.claim).await
        {
            Ok(claim) => claim,
            // A claim of another type (put there since the join) names nobody.
            Err(e) if e.code() == Some("WRONGTYPE") => None,
            Err(e) => return Err(e.into()),
        };
        if claim.as_deref() == Some(chord.member.as_str()) {
            self.finish_in_step(results, None, None, &chord.publish, None)
                .await?;
            // In the results' database: the body's result and `done`, while `.c` names it.
            let body = chord.body_result.as_ref().map(|meta| results.encode(meta));
            let k = &chord.keys;
            let key = body.as_ref().map_or(k.claim.as_str(), |b| b.key.as_str());
            let _: i64 = FINISH
                .key(&k.claim)
                .key(&k.claim)
                .key(&k.claim)
                .key(&k.claim)
                .key(key)
                .key(&k.join)
                .key(&k.counter)
                .key(&k.size)
                .key(&k.dedup)
                .arg("")
                .arg("")
                .arg(results.expires_secs())
                .arg(&chord.member)
                .arg(body.as_ref().map_or("", |b| b.json.as_str()))
                .arg(0)
                .invoke_async(&mut results.connection().clone())
                .await?;
        }
        self.finish_in_step(results, tag, result, publish, None)
            .await
    }
}

impl<'a> Outgoing<'a> {
    fn dead(msg: &'a TaskMessage, reason: String, envelope: String, dead_letter: &str) -> Self {
        let mut entry = super::DeadLetter::new(reason.clone(), envelope);
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
