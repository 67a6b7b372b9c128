//! Notification deliveries: recorded once per notification id, listed per recipient a bounded
//! page at a time.

use std::sync::LazyLock;

use celery_redis::conn::Conn;
use redis::{AsyncCommands, RedisResult, Script};
use serde::{Deserialize, Serialize};

use crate::contracts::Channel;
use crate::keys;

static RECORD: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/record_delivery.lua")));
static LIST: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/list_deliveries.lua")));

/// Deliveries a listing page holds when the caller does not say.
pub const PAGE_DEFAULT: usize = 20;

/// Most deliveries a listing page holds.
pub const PAGE_MAX: usize = 100;

/// Most bytes of delivery records a page holds (a record is up to ~20 KB: a page of
/// [`PAGE_MAX`] of them would be 2 MB): a page ends before the record that would pass it, and
/// always holds at least one.
pub const PAGE_BYTES: usize = 256 * 1024;

/// Records read from Redis per `MGET` while a page fills (a page passing [`PAGE_BYTES`] stops
/// the reading after the batch in hand).
const BATCH: usize = 25;

// Kept in Redis and shown as is by the notification service: this type is also its OpenAPI
// schema (`DeliveryRecord`), so the doc line below is for the API's readers.
/// What was delivered.
/// A notification as delivered: one entry of its recipient's listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = DeliveryRecord))]
pub struct Delivery {
    /// The notification's id.
    pub notification_id: String,
    /// The e-mail address it went to.
    pub recipient: String,
    /// How it was delivered.
    pub channel: Channel,
    /// Its subject line.
    pub subject: String,
    /// Its text.
    pub body: String,
    /// The receiver it was POSTed to (webhooks only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The id of the `send_notification` task that delivered it.
    pub task_id: String,
    /// When, in UTC, as Celery writes a result's `date_done`.
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
        .key(keys::recipient_pushed(&d.recipient))
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

/// One page of what a recipient was sent, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    /// The page's deliveries, newest first.
    pub deliveries: Vec<Delivery>,
    /// Where the next (older) page starts, `None` after the oldest kept: the number of an
    /// entry of the recipient's list, which new deliveries (pushed at its head) do not change.
    pub next: Option<u64>,
}

/// The newest deliveries to a recipient (the first page of [`PAGE_MAX`]).
pub async fn delivered_to(conn: &Conn, recipient: &str) -> RedisResult<Vec<Delivery>> {
    Ok(page(conn, recipient, None, PAGE_MAX).await?.deliveries)
}

/// At most `limit` (1 to [`PAGE_MAX`]) deliveries to `recipient`, newest first, starting at
/// `cursor` (a [`Page::next`]; `None` for the newest) and within [`PAGE_BYTES`]. Entries whose
/// record has expired are passed over.
pub async fn page(
    conn: &Conn,
    recipient: &str,
    cursor: Option<u64>,
    limit: usize,
) -> RedisResult<Page> {
    let mut conn = conn.clone();
    let (pushed, len, start, ids): (i64, i64, i64, Vec<String>) = LIST
        .key(keys::recipient_deliveries(recipient))
        .key(keys::recipient_pushed(recipient))
        .arg(cursor.map(|c| c.to_string()).unwrap_or_default())
        .arg(limit.clamp(1, PAGE_MAX))
        .invoke_async(&mut conn)
        .await?;
    let mut deliveries = Vec::new();
    let (mut bytes, mut taken) = (0usize, 0usize);
    'fill: for batch in ids.chunks(BATCH) {
        let keys: Vec<String> = batch
            .iter()
            .map(|id| keys::notification_delivery(id))
            .collect();
        let raw: Vec<Option<String>> = redis::cmd("MGET").arg(keys).query_async(&mut conn).await?;
        for record in raw {
            if let Some(record) = record {
                bytes = bytes.saturating_add(record.len());
                if bytes > PAGE_BYTES && !deliveries.is_empty() {
                    break 'fill;
                }
                deliveries.extend(serde_json::from_str::<Delivery>(&record).ok());
            }
            taken = taken.saturating_add(1);
        }
    }
    // The entry after the last one taken, numbered as the script numbers them.
    let after = i64::try_from(taken).map_or(len, |t| start.saturating_add(t));
    let next = if ids.is_empty() || after >= len {
        None
    } else {
        u64::try_from(pushed.saturating_sub(1).saturating_sub(after)).ok()
    };
    Ok(Page { deliveries, next })
}
