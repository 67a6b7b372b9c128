//! Counts for operators (`worker stats`) and the metrics: a queue's waiting messages at each
//! priority step of the layout, its schedule, what is held and dead; and its lists laid out
//! another way ([`Foreign`]: another separator, other priority steps, with or without the key
//! prefix), which this layout never reads and which are therefore reported, never ignored.

use redis::RedisResult;
use serde::Serialize;

use super::Broker;
use crate::conn::Transient;
use crate::keys;

/// Queue counts, as `worker stats` prints them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueStats {
    /// The queue counted.
    pub queue: String,
    /// The layout's priority steps (`BROKER_PRIORITY_STEPS`), and how many messages wait at each.
    pub steps: Vec<u8>,
    /// Messages waiting at each of `steps`, in the same order.
    pub waiting: Vec<u64>,
    /// Waiting for their eta (or a retry).
    pub scheduled: u64,
    /// Taken by a worker and not yet acknowledged (all queues: kombu's `unacked` is shared).
    pub in_flight: u64,
    /// Entries in the dead-letter list (all queues: the list is shared).
    pub dead: u64,
    /// Dead letters dropped so far to keep the list within its cap.
    pub dead_dropped: u64,
    /// Lists of this queue in another layout, which nothing here reads.
    pub foreign: Vec<Foreign>,
}

/// A list of a queue in another layout than the configured one: its messages wait where
/// nothing that uses this layout looks (a producer with other `priority_steps`, `sep` or
/// `global_keyprefix`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Foreign {
    /// The key, control characters written `\xNN`.
    pub key: String,
    /// Messages waiting in it.
    pub waiting: u64,
}

impl QueueStats {
    /// The figures the metrics export.
    pub fn reading(&self) -> observe::metrics::QueueReading {
        observe::metrics::QueueReading {
            waiting: self.waiting.iter().fold(0u64, |a, n| a.saturating_add(*n)),
            eta_waiting: self.scheduled,
            unacked: self.in_flight,
            dead_letters: self.dead,
            dead_letters_dropped: self.dead_dropped,
            foreign_keys: u64::try_from(self.foreign.len()).unwrap_or(u64::MAX),
        }
    }
}

/// Sets `fleet`'s gauges from one scrape's counts of several queues (`None`: Redis could not
/// be read).
pub fn export(fleet: &observe::metrics::Fleet, counted: Option<Vec<QueueStats>>) {
    match counted {
        Some(all) => all
            .iter()
            .for_each(|s| fleet.set(&s.queue, Some(s.reading()))),
        None => fleet.set("", None),
    }
}

impl Broker {
    /// Messages waiting in the queue, all priorities.
    pub async fn depth(&self) -> RedisResult<u64> {
        let mut pipe = redis::pipe();
        for list in self.layout.queue_lists(&self.queue) {
            pipe.llen(list);
        }
        let lens: Vec<u64> = pipe.query_async(&mut self.conn.clone()).await?;
        Ok(lens.iter().sum())
    }

    /// [`Broker::stats`] of each of `queues`, in their order; a queue one of whose keys holds
    /// another type of value (another program's key) is left out with a warning, so it does not
    /// blind the counts of the others.
    pub async fn stats_of<Q: AsRef<str>>(&self, queues: &[Q]) -> RedisResult<Vec<QueueStats>> {
        let mut all = Vec::with_capacity(queues.len());
        for queue in queues {
            match self.for_queue(queue.as_ref()).stats().await {
                Ok(stats) => all.push(stats),
                // Redis answered, with an error (a key of another type): that queue alone.
                Err(e) if !e.is_transient() => log::warn!(
                    "not counting queue {}: one of its keys holds another type of value ({})",
                    queue.as_ref(),
                    e.category()
                ),
                Err(e) => return Err(e),
            }
        }
        Ok(all)
    }

    /// Counts for operators: waiting per priority step, scheduled, held, dead, and this queue's
    /// lists in another layout (their types read in the same round trip; their lengths in a
    /// second one, only when there are any).
    pub async fn stats(&self) -> RedisResult<QueueStats> {
        let layout = &self.layout;
        let steps = layout.steps().len();
        let candidates = layout.foreign_candidates(&self.queue);
        let mut pipe = redis::pipe();
        for list in layout.queue_lists(&self.queue) {
            pipe.llen(list);
        }
        pipe.zcard(layout.scheduled(&self.queue))
            .hlen(layout.unacked())
            .llen(layout.processing(&self.queue))
            .llen(layout.dead_letter());
        for key in &candidates {
            pipe.cmd("TYPE").arg(key);
        }
        pipe.cmd("GET").arg(layout.dead_letter_dropped());
        let mut all: Vec<redis::Value> = pipe.query_async(&mut self.conn.clone()).await?;
        let dropped: Option<u64> = all.pop().and_then(|v| redis::from_redis_value(v).ok());
        let types = all.split_off(steps.saturating_add(4).min(all.len()));
        let n: Vec<u64> = redis::from_redis_value(redis::Value::Array(all))?;
        let lists: Vec<&String> = candidates
            .iter()
            .zip(types)
            .filter(|(_, t)| {
                redis::from_redis_value::<String>(t.clone()).is_ok_and(|t| t == "list")
            })
            .map(|(key, _)| key)
            .collect();
        let count = |i: usize| n.get(i).copied().unwrap_or(0);
        Ok(QueueStats {
            queue: self.queue.clone(),
            steps: layout.steps().to_vec(),
            waiting: (0..steps).map(count).collect(),
            scheduled: count(steps),
            in_flight: count(steps + 1).saturating_add(count(steps + 2)),
            dead: count(steps + 3),
            dead_dropped: dropped.unwrap_or(0),
            foreign: self.foreign_lengths(&lists).await?,
        })
    }

    /// The length of each of `lists` (0 for one that changed type meanwhile).
    async fn foreign_lengths(&self, lists: &[&String]) -> RedisResult<Vec<Foreign>> {
        if lists.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for key in lists {
            pipe.cmd("LLEN").arg(*key);
        }
        let lens: Vec<redis::Value> = pipe.query_async(&mut self.conn.clone()).await?;
        Ok(lists
            .iter()
            .zip(lens)
            .map(|(key, len)| Foreign {
                key: keys::shown(key),
                waiting: redis::from_redis_value(len).unwrap_or(0),
            })
            .collect())
    }

    /// Logs a warning for each list of `queues` in another layout (at a worker's start); returns
    /// how many there are. A queue that cannot be counted is left out (as by [`Broker::stats_of`]);
    /// when Redis cannot be read, that is logged and 0 returned (this only informs).
    pub async fn warn_foreign<Q: AsRef<str>>(&self, queues: &[Q]) -> usize {
        let counted = match self.stats_of(queues).await {
            Ok(counted) => counted,
            Err(e) => {
                log::warn!("could not look for lists in another key layout: {e}");
                return 0;
            }
        };
        let mut found = 0usize;
        for stats in counted {
            for f in &stats.foreign {
                found = found.saturating_add(1);
                log::warn!(
                    "queue {}: {} holds {} message(s) in another key layout than this fleet's ({}): nothing here reads it; give every producer and worker the same priority_steps, sep and global_keyprefix (docs/celery.md)",
                    stats.queue,
                    f.key,
                    f.waiting,
                    self.layout.describe()
                );
            }
        }
        found
    }
}
