//! Stock per SKU in Redis, and the atomic, once-per-order reservation of an order's items.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock, OnceLock};

use celery_redis::batch::{batched, Batcher, Call, Replication};
use celery_redis::conn::Conn;
use redis::{AsyncCommands, RedisResult, Script};
use serde::{Deserialize, Serialize};

use crate::contracts::{OrderItem, OrderStatus};
use crate::keys;

/// The reservation script in its batched form: orders reserving together share a script call
/// (group commit, [`celery_redis::batch`]); each still runs alone and whole, one after another.
static RESERVE: LazyLock<Script> = LazyLock::new(|| batched(include_str!("lua/reserve.lua")));

/// Largest stock level accepted (kept well inside Lua's exact integer range).
pub const MAX_STOCK: i64 = 1_000_000_000_000;

/// Sets the available stock of `sku` (the order service's `PUT /stock/{sku}`).
pub async fn set_stock(conn: &Conn, sku: &str, available: i64) -> RedisResult<()> {
    conn.clone().set(keys::stock(sku), available).await
}

/// Available stock; an SKU never set has none.
pub async fn get_stock(conn: &Conn, sku: &str) -> RedisResult<i64> {
    let v: Option<i64> = conn.clone().get(keys::stock(sku)).await?;
    Ok(v.unwrap_or(0))
}

// Stored once per order and shown as is by the order service: this type is also its OpenAPI
// schema, so the doc line below is for the API's readers.
/// The stock outcome of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Reservation {
    /// Whether the order's stock was reserved.
    pub status: OrderStatus,
    /// Why it was rejected; null when confirmed.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub reason: Option<String>,
}

/// The reservation outcome of an order, while it is retained (`None`: not processed yet, or
/// longer ago than the retention).
pub async fn reservation(conn: &Conn, order_id: &str) -> RedisResult<Option<Reservation>> {
    let raw: Option<String> = conn.clone().get(keys::order_reservation(order_id)).await?;
    Ok(raw.and_then(|r| serde_json::from_str(&r).ok()))
}

/// Reserves stock for orders; orders reserving at the same moment share a script call (group
/// commit). A task's dependency, registered empty (`Inventory::default()`): its batches go on the
/// connection of its first reservation (a worker's one connection to the broker's database), and
/// clones share them.
#[derive(Clone, Default)]
pub struct Inventory {
    batches: Arc<OnceLock<Batcher>>,
}

impl Inventory {
    /// Reserves every item of an order or none (all SKUs checked, then all decremented, in one
    /// script). Running it again for the same order returns the first outcome and changes
    /// nothing, so a redelivered task never reserves twice. Stock never goes negative.
    pub async fn reserve(
        &self,
        conn: &Conn,
        order_id: &str,
        items: &[OrderItem],
        retention: std::time::Duration,
    ) -> RedisResult<Reservation> {
        let mut per_sku: BTreeMap<&str, i64> = BTreeMap::new();
        for item in items {
            let q = per_sku.entry(item.sku.as_str()).or_insert(0);
            *q = q.saturating_add(item.quantity);
        }
        let mut call = Call::default();
        call.key(keys::order_reservation(order_id));
        for sku in per_sku.keys() {
            call.key(keys::stock(sku));
        }
        for qty in per_sku.values() {
            call.arg(*qty);
        }
        for sku in per_sku.keys() {
            call.arg(*sku);
        }
        call.arg(retention.as_secs().max(1));
        // WAIT for replicas (when the topology asks for it) and fail when short: a reservation
        // lost at a failover would be made twice.
        let batches = self
            .batches
            .get_or_init(|| Batcher::new(&RESERVE, conn.clone(), Replication::Must));
        let record: String = redis::from_redis_value(batches.call(call).await?)?;
        serde_json::from_str(&record).map_err(|e| {
            redis::RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "reservation record is not JSON",
                e.to_string(),
            ))
        })
    }
}
