//! A node's subscription to remote-control requests: PSUBSCRIBE on `/<db>.celery.pidbox` behind
//! the layout's key prefix, as kombu's consumers do (and on the same channel behind any other
//! prefix, only to refuse what comes there by name: one pattern for both, so nothing arrives
//! twice). The subscription also listens to one `watch` channel (the worker passes its own
//! heartbeat events), so that a connection that went silent is noticed.

use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::PubSub;
use redis::RedisResult;

use crate::conn::RedisUrl;
use crate::keys::{self, Layout, PIDBOX_EXCHANGE};

/// What one subscription yields.
#[derive(Debug)]
pub enum Incoming {
    /// A payload on the pidbox channel.
    Request(Vec<u8>),
    /// A request on the pidbox channel behind another key prefix (a client with another
    /// `global_keyprefix` than this fleet's): the channel, to name in a refusal.
    Prefixed(String),
    /// A message on the watch channel: the connection is alive.
    Alive,
}

/// An open subscription.
pub struct Subscription {
    pubsub: PubSub,
    pidbox: String,
    /// The pidbox channel without any prefix.
    bare: String,
}

/// Subscribes to the pidbox channel of `url`'s database in `layout` and to `watch`.
pub async fn subscribe(
    url: &RedisUrl,
    layout: &Layout,
    watch: &str,
    timeout: Duration,
) -> RedisResult<Subscription> {
    let pidbox = layout.fanout_channel(url.db(), PIDBOX_EXCHANGE, "");
    // Behind every prefix (none included): the bare name has no glob character of its own.
    let bare = keys::fanout_channel(url.db(), PIDBOX_EXCHANGE, "");
    let any_prefix = format!("*{bare}");
    let open = async {
        // For sentinels, the master they name now: a subscription renewed after a failover
        // goes to the new master.
        let client = url.topology().resolve(url.client()).await?;
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.psubscribe(&any_prefix).await?;
        pubsub.psubscribe(watch).await?;
        Ok::<_, redis::RedisError>(pubsub)
    };
    let pubsub = tokio::time::timeout(timeout, open).await.map_err(|_| {
        redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "pidbox subscription timed out",
        ))
    })??;
    Ok(Subscription {
        pubsub,
        pidbox,
        bare,
    })
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
        } else if channel.ends_with(self.bare.as_str()) {
            Incoming::Prefixed(channel.to_owned())
        } else {
            Incoming::Alive
        })
    }
}
