//! `process_order(order_id, customer={id, email}, items=[{sku, quantity, unit_price_cents}])`
//! and its outcome.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Contract, Submission, PROCESS_ORDER};
#[cfg(feature = "openapi")]
use crate::schema::{Email, Id};
use crate::validation::{Fields, ValidationErrors};

/// Items in one order, at most.
pub const MAX_ITEMS: usize = 1000;
/// Longest order id: its confirmation's id (`order-<id>-confirmed`) must be a valid id too.
pub const MAX_ORDER_ID_LEN: usize = crate::validation::MAX_ID_LEN - 16;
/// Units of one item, at most (keeps stock arithmetic exact everywhere, Lua included).
pub const MAX_QUANTITY: i64 = 1_000_000;

/// Who placed an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Customer {
    /// The customer's id.
    #[cfg_attr(feature = "openapi", schema(value_type = Id))]
    pub id: String,
    /// Where the order's confirmation goes.
    #[cfg_attr(feature = "openapi", schema(value_type = Email))]
    pub email: String,
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrderItem {
    /// The stock-keeping unit ordered (its stock is reserved).
    #[cfg_attr(feature = "openapi", schema(value_type = Id))]
    pub sku: String,
    /// Units ordered, 1 to [`MAX_QUANTITY`].
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1_000_000))]
    pub quantity: i64,
    /// With the quantities, the order total must fit in 64-bit cents.
    #[cfg_attr(feature = "openapi", schema(minimum = 0))]
    pub unit_price_cents: i64,
}

/// `process_order(order_id, customer={id, email}, items=[{sku, quantity, unit_price_cents}])`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessOrder {
    /// The order's id, also its task's idempotency key.
    pub order_id: String,
    /// Who placed it.
    pub customer: Customer,
    /// What was ordered, at least one line.
    pub items: Vec<OrderItem>,
}

impl ProcessOrder {
    /// The order total in cents; `None` when it overflows (validation rejects such orders).
    pub fn total_cents(&self) -> Option<i64> {
        order_total(&self.items)
    }
}

fn order_total(items: &[OrderItem]) -> Option<i64> {
    items.iter().try_fold(0i64, |acc, item| {
        item.quantity
            .checked_mul(item.unit_price_cents)
            .and_then(|line| acc.checked_add(line))
    })
}

impl Contract for ProcessOrder {
    const NAME: &'static str = PROCESS_ORDER;
    const PARAMS: &'static [&'static str] = &["order_id", "customer", "items"];

    fn from_kwargs(kw: &Map<String, Value>) -> Result<Self, ValidationErrors> {
        let mut f = Fields::new();
        let order_id = f.id(kw, "", "order_id");
        if order_id.len() > MAX_ORDER_ID_LEN {
            f.error(
                "order_id",
                format!(
                    "must be at most {MAX_ORDER_ID_LEN} characters (its confirmation's id adds 16)"
                ),
            );
        }
        let customer = match f.object(kw, "", "customer") {
            Some(c) => Customer {
                id: f.id(c, "customer", "id"),
                email: f.email(c, "customer", "email"),
            },
            None => Customer {
                id: String::new(),
                email: String::new(),
            },
        };
        let mut items = Vec::new();
        if let Some(list) = f.array(kw, "", "items") {
            if list.is_empty() {
                f.error("items", "must contain at least one item");
            } else if list.len() > MAX_ITEMS {
                f.error("items", format!("must contain at most {MAX_ITEMS} items"));
            }
            for (i, entry) in list.iter().enumerate().take(MAX_ITEMS) {
                let path = format!("items[{i}]");
                let Value::Object(item) = entry else {
                    f.error(path, "must be an object");
                    continue;
                };
                let sku = f.id(item, &path, "sku");
                let quantity = f.integer(item, &path, "quantity");
                match quantity {
                    Some(q) if q <= 0 => {
                        f.error(format!("{path}.quantity"), "must be greater than 0")
                    }
                    Some(q) if q > MAX_QUANTITY => f.error(
                        format!("{path}.quantity"),
                        format!("must be at most {MAX_QUANTITY}"),
                    ),
                    _ => {}
                }
                let unit_price_cents = f.integer(item, &path, "unit_price_cents");
                if unit_price_cents.is_some_and(|p| p < 0) {
                    f.error(format!("{path}.unit_price_cents"), "must not be negative");
                }
                let (quantity, unit_price_cents) =
                    (quantity.unwrap_or(0), unit_price_cents.unwrap_or(0));
                items.push(OrderItem {
                    sku,
                    quantity,
                    unit_price_cents,
                });
            }
            if order_total(&items).is_none() {
                f.error("items", "order total overflows 64-bit cents");
            }
        }
        f.finish(ProcessOrder {
            order_id,
            customer,
            items,
        })
    }
}

impl Submission for ProcessOrder {
    const KIND: &'static str = "order";
    const ID_FIELD: &'static str = "order_id";
    fn id(&self) -> &str {
        &self.order_id
    }
}

/// The body of `POST /orders`: a `process_order` whose `order_id` may be left out (one is then
/// generated). Unknown fields are ignored; the order total must fit in 64-bit cents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewOrder {
    /// Absent or null: a UUID is generated. Submitting an id again returns the task accepted for
    /// it.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<OrderId>))]
    pub order_id: Option<String>,
    /// Who places it.
    pub customer: Customer,
    /// What is ordered: 1 to 1,000 lines.
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 1000))]
    pub items: Vec<OrderItem>,
}

/// The schema of an order id: an [`Id`] of at most [`MAX_ORDER_ID_LEN`] characters. Only a
/// schema (no value has this type).
#[cfg(feature = "openapi")]
pub enum OrderId {}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for OrderId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::schema::id(
            MAX_ORDER_ID_LEN,
            &format!(
                "An id (at most {MAX_ORDER_ID_LEN} characters, so that its confirmation's id is \
                 one too)."
            ),
        )
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for OrderId {}

/// What `process_order` returns (the `result` of its SUCCESS).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrderOutcome {
    /// The order's id.
    pub order_id: String,
    /// Whether its stock was reserved.
    pub status: OrderStatus,
    /// The order total in cents.
    pub total_cents: i64,
    /// Why it was rejected (absent when confirmed).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
}

/// The outcome of an order's stock reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum OrderStatus {
    /// Every line's stock was reserved.
    Confirmed,
    /// Some line lacked stock: nothing was reserved.
    Rejected,
}
