//! A node's subscription to remote-control requests: PSUBSCRIBE on `/<db>.celery.pidbox`, as
//! kombu's consumers do (and on any prefixed form of it, only to refuse what comes there by
//! name). The subscription also listens to one `watch` channel (the worker
//! passes its own heartbeat events), so that a connection that went silent is noticed.

use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::PubSub;
use redis::RedisResult;

use crate::config::RedisUrl;
use crate::keys::{self, PIDBOX_EXCHANGE};

/// What one subscription yields.
#[derive(Debug)]
pub enum Incoming {
    /// A payload on the pidbox channel.
    Request(Vec<u8>),
    /// A request on a prefixed pidbox channel (a client with kombu's `global_keyprefix`, which
    /// this fleet does not support): the channel, to name in a refusal.
    Prefixed(String),
    /// A message on the watch channel: the connection is alive.
    Alive,
}

/// An open subscription.
pub struct Subscription {
    pubsub: PubSub,
    pidbox: String,
}

/// Subscribes to the pidbox channel of `url`'s database and to `watch`.
pub async fn subscribe(
    url: &RedisUrl,
    watch: &str,
    timeout: Duration,
) -> RedisResult<Subscription> {
    let pidbox = keys::fanout_channel(url.db(), PIDBOX_EXCHANGE, "");
    let open = async {
        // For sentinels, the master they name now: a subscription renewed after a failover
        // goes to the new master.
        let client = url.topology().resolve(url.client()).await?;
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.psubscribe(&pidbox).await?;
        pubsub.psubscribe(format!("?*{pidbox}")).await?;
        pubsub.psubscribe(watch).await?;
        Ok::<_, redis::RedisError>(pubsub)
    };
    let pubsub = tokio::time::timeout(timeout, open).await.map_err(|_| {
        redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "pidbox subscription timed out",
        ))
    })??;
    Ok(Subscription { pubsub, pidbox })
}

impl Subscription {
    /// The next message, `None` when the connection closed or nothing (not even the watch
    /// channel) arrived within `silence`.
    pub async fn next(&mut self, silence: Duration) -> Option<Incoming> {
        let pidbox = self.pidbox.clone();
        let mut stream = self.pubsub.on_message();
        let msg = tokio::time::timeout(silence, stream.next()).await.ok()??;
        let channel = msg.get_channel_name();
        Some(if channel == pidbox {
            Incoming::Request(msg.get_payload_bytes().to_vec())
        } else if channel.ends_with(pidbox.as_str()) {
            Incoming::Prefixed(channel.to_owned())
        } else {
            Incoming::Alive
        })
    }
}
