//! Noticing a failover: after an error that says the master went away or is one no more
//! ([`needs_new_master`]), and when the sentinels announce it (`+switch-master` on a sentinel's
//! pub/sub), instead of when the old master is turned into a replica: Sentinel reconfigures a
//! demoted master that is still up (`SENTINEL FAILOVER`, a partition) only seconds later, and a
//! connection still open to it until then writes where nothing is kept.

use std::time::Duration;

use futures_util::StreamExt;
use redis::{ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo};

use crate::sentinel::Sentinels;

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
