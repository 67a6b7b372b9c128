//! Noticing a failover: after an error that says the master went away or is one no more
//! ([`needs_new_master`]), and when the sentinels announce it (`+switch-master` on a sentinel's
//! pub/sub), instead of when the old master is turned into a replica: Sentinel reconfigures a
//! demoted master that is still up (`SENTINEL FAILOVER`, a partition) only seconds later, and a
//! connection still open to it until then writes where nothing is kept.
//!
//! A process watches each sentinel URL (its sentinels and master name) once, however many
//! connections it makes from it ([`Switches`]): a worker's blocking waits open one connection
//! per queue, and a subscription for each would cost every sentinel that many clients.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use redis::{ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo};

use super::resolve::Sentinels;

/// How long the watch waits for a message before it asks `keep` whether to go on.
const TICK: Duration = Duration::from_secs(2);
/// Pause before trying the next sentinel when none could be subscribed to.
const RETRY: Duration = Duration::from_millis(500);

/// Subscribes to `+switch-master` on the first sentinel that answers (the next one when that
/// subscription ends) and calls `keep(true)` for each failover of `sentinels.master`, and
/// `keep(false)` at least every `TICK`; returns once `keep` answers false.
pub async fn watch(sentinels: Sentinels, mut keep: impl FnMut(bool) -> bool + Send) {
    let mut next = 0usize;
    loop {
        let Some((host, port)) = sentinels.addrs.get(next % sentinels.addrs.len().max(1)) else {
            return;
        };
        next = next.wrapping_add(1);
        let info = ConnectionAddr::Tcp(host.clone(), *port)
            .into_connection_info()
            .map(|i| i.set_redis_settings(RedisConnectionInfo::default().set_skip_set_lib_name()));
        let subscribed = async {
            let client = redis::Client::open(info?)?;
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe("+switch-master").await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let mut pubsub = match tokio::time::timeout(TICK, subscribed).await {
            Ok(Ok(p)) => p,
            _ => {
                if !keep(false) {
                    return;
                }
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        let mut messages = pubsub.on_message();
        loop {
            let switched = match tokio::time::timeout(TICK, messages.next()).await {
                Err(_) => false,
                Ok(None) => break,
                Ok(Some(msg)) => {
                    let payload = String::from_utf8_lossy(msg.get_payload_bytes()).into_owned();
                    payload.split(' ').next() == Some(sentinels.master.as_str())
                }
            };
            if !keep(switched) {
                return;
            }
        }
        // The subscription ended (the sentinel went away): the next one, after a pause.
        tokio::time::sleep(RETRY).await;
    }
}

/// What a connection does when the sentinels announce a failover of its master.
pub(super) trait OnSwitch: Send + Sync {
    /// Forgets the master: the next call asks the sentinels again.
    fn switched(&self);
}

/// The one watch of a sentinel URL, shared by every connection made from it: started by the
/// first resolution of any of them, it tells each one still alive of every failover, and ends
/// once the last is gone.
pub(super) struct Switches {
    sentinels: Sentinels,
    conns: Mutex<Vec<Weak<dyn OnSwitch>>>,
    /// Whether the watch's task runs (false again when it ended, e.g. with its runtime).
    running: AtomicBool,
}

/// Every watch of this process, by sentinel URL; an entry lives as long as a connection uses it.
static SWITCHES: Mutex<Option<HashMap<Sentinels, Weak<Switches>>>> = Mutex::new(None);

impl Switches {
    /// The watch of `sentinels`, shared with every live connection already made for them.
    pub(super) fn of(sentinels: &Sentinels) -> Arc<Switches> {
        let mut all = SWITCHES.lock().unwrap_or_else(PoisonError::into_inner);
        let all = all.get_or_insert_with(HashMap::new);
        if let Some(live) = all.get(sentinels).and_then(Weak::upgrade) {
            return live;
        }
        all.retain(|_, w| w.strong_count() > 0);
        let fresh = Arc::new(Switches {
            sentinels: sentinels.clone(),
            conns: Mutex::default(),
            running: AtomicBool::new(false),
        });
        all.insert(sentinels.clone(), Arc::downgrade(&fresh));
        fresh
    }

    /// Tells `conn` of each failover from now on, while it lives.
    pub(super) fn join(&self, conn: Weak<dyn OnSwitch>) {
        let mut conns = self.conns.lock().unwrap_or_else(PoisonError::into_inner);
        conns.retain(|c| c.strong_count() > 0);
        conns.push(conn);
    }

    /// Starts the watch unless it runs (on the current Tokio runtime).
    pub(super) fn start(self: &Arc<Self>) {
        if self.running.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = Arc::downgrade(self);
        let sentinels = self.sentinels.clone();
        tokio::spawn(async move {
            let _running = Running(this.clone());
            watch(sentinels, move |switched| {
                let Some(switches) = this.upgrade() else {
                    return false;
                };
                if switched {
                    switches.announce();
                }
                true
            })
            .await;
        });
    }

    fn announce(&self) {
        log::warn!("the sentinels announced a failover; asking them for the new master");
        let conns = self.conns.lock().unwrap_or_else(PoisonError::into_inner);
        for conn in conns.iter().filter_map(Weak::upgrade) {
            conn.switched();
        }
    }
}

/// Marks the watch stopped when its task ends or is dropped (a runtime shut down): the next
/// resolution starts it again.
struct Running(Weak<Switches>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(switches) = self.0.upgrade() {
            switches.running.store(false, Ordering::Release);
        }
    }
}

/// Errors after which a connection must ask the sentinels again: the server went away, or it
/// is no longer the master (`READONLY` on a write, `UNBLOCKED` for a blocking call when it was
/// demoted, `MASTERDOWN`/`LOADING` on a replica or a restarted server).
pub fn needs_new_master(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || matches!(
            e.code(),
            Some("READONLY" | "UNBLOCKED" | "MASTERDOWN" | "LOADING")
        )
}
