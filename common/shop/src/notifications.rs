//! Notification deliveries: recorded once per notification id, listed per recipient.

use std::sync::LazyLock;

use celery_redis::connection::Conn;
use redis::{AsyncCommands, RedisResult, Script};
use serde::{Deserialize, Serialize};

use crate::contracts::Channel;
use crate::keys;

static RECORD: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/record_delivery.lua")));

/// Most deliveries one listing returns.
pub const LIST_LIMIT: isize = 100;

/// What was delivered, kept in Redis and shown by the notification service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub notification_id: String,
    pub recipient: String,
    pub channel: Channel,
    pub subject: String,
    pub body: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub task_id: String,
    pub delivered_at: String,
}

/// Most ids a recipient's list keeps (older deliveries expire with the retention anyway).
pub const RECIPIENT_KEEP: isize = 1000;

/// Records a delivery once, kept for `retention`; returns false when it had already been
/// recorded.
pub async fn record(
    conn: &Conn,
    d: &Delivery,
    retention: std::time::Duration,
) -> RedisResult<bool> {
    let json = serde_json::to_string(d).unwrap_or_default();
    let recorded: i64 = RECORD
        .key(keys::notification_delivery(&d.notification_id))
        .key(keys::recipient_deliveries(&d.recipient))
        .arg(json)
        .arg(&d.notification_id)
        .arg(retention.as_secs().max(1))
        .arg(RECIPIENT_KEEP)
        .invoke_async(&mut conn.must_replicate())
        .await?;
    Ok(recorded == 1)
}

/// The delivery of a notification, if it was delivered.
pub async fn delivery(conn: &Conn, notification_id: &str) -> RedisResult<Option<Delivery>> {
    let raw: Option<String> = conn
        .clone()
        .get(keys::notification_delivery(notification_id))
        .await?;
    Ok(raw.and_then(|r| serde_json::from_str(&r).ok()))
}

/// Deliveries to a recipient, newest first.
pub async fn delivered_to(conn: &Conn, recipient: &str) -> RedisResult<Vec<Delivery>> {
    let mut conn = conn.clone();
    let ids: Vec<String> = conn
        .lrange(keys::recipient_deliveries(recipient), 0, LIST_LIMIT - 1)
        .await?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<String> = ids
        .iter()
        .map(|id| keys::notification_delivery(id))
        .collect();
    let raw: Vec<Option<String>> = redis::cmd("MGET").arg(keys).query_async(&mut conn).await?;
    Ok(raw
        .into_iter()
        .flatten()
        .filter_map(|r| serde_json::from_str(&r).ok())
        .collect())
}
