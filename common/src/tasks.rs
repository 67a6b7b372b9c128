//! Task contracts: the names the fleet registers, their typed payloads and their validation.
//!
//! Payloads travel as Celery keyword arguments, so a Python caller writes
//! `process_order.delay(order_id=..., customer={...}, items=[...])`; positional arguments are
//! mapped onto the parameter names in the order given here.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::validation::{Fields, ValidationErrors};

pub const PROCESS_ORDER: &str = "process_order";
pub const SEND_NOTIFICATION: &str = "send_notification";

/// Items in one order, at most.
pub const MAX_ITEMS: usize = 1000;
/// Units of one item, at most (keeps stock arithmetic exact everywhere, Lua included).
pub const MAX_QUANTITY: i64 = 1_000_000;
const MAX_TEXT: usize = 16 * 1024;
const MAX_URL: usize = 2048;
const MAX_EMAIL: usize = 254;

/// A task contract: its Celery name and its parameters in positional order.
pub trait Contract: Sized + Serialize {
    const NAME: &'static str;
    const PARAMS: &'static [&'static str];

    /// Validates keyword arguments, reporting every problem with its field.
    fn from_kwargs(kwargs: &Map<String, Value>) -> Result<Self, ValidationErrors>;

    /// Validates a Celery call: positional args are mapped onto [`Self::PARAMS`] first.
    fn from_call(args: &[Value], kwargs: &Map<String, Value>) -> Result<Self, ValidationErrors> {
        Self::from_kwargs(&merge_args(Self::PARAMS, args, kwargs)?)
    }

    /// The payload as Celery keyword arguments.
    fn to_kwargs(&self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        }
    }
}

/// Python's binding of `f(*args, **kwargs)` onto named parameters.
pub fn merge_args(
    params: &[&str],
    args: &[Value],
    kwargs: &Map<String, Value>,
) -> Result<Map<String, Value>, ValidationErrors> {
    if args.len() > params.len() {
        return Err(ValidationErrors::single(
            "args",
            format!(
                "takes at most {} positional arguments, got {}",
                params.len(),
                args.len()
            ),
        ));
    }
    let mut merged = kwargs.clone();
    for (name, value) in params.iter().zip(args) {
        if merged.insert((*name).to_owned(), value.clone()).is_some() {
            return Err(ValidationErrors::single(
                *name,
                "given both positionally and by keyword",
            ));
        }
    }
    Ok(merged)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    pub id: String,
    pub email: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderItem {
    pub sku: String,
    pub quantity: i64,
    pub unit_price_cents: i64,
}

/// `process_order(order_id, customer={id, email}, items=[{sku, quantity, unit_price_cents}])`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessOrder {
    pub order_id: String,
    pub customer: Customer,
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
        let customer = match f.object(kw, "", "customer") {
            Some(c) => Customer {
                id: f.id(c, "customer", "id"),
                email: email(&mut f, c, "customer", "email"),
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

fn email(f: &mut Fields, obj: &Map<String, Value>, path: &str, key: &str) -> String {
    let s = f.string(obj, path, key, MAX_EMAIL);
    if !s.is_empty() {
        let valid = s.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        }) && !s.chars().any(char::is_whitespace);
        if !valid {
            f.error(
                crate::validation::join(path, key),
                "must be an email address",
            );
        }
    }
    s
}

/// How a notification is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// Recorded in Redis, readable through the notification service.
    Log,
    /// POSTed as JSON to `url` with an `Idempotency-Key` header.
    Webhook,
}

/// `send_notification(notification_id, recipient, channel, subject, body, url=None)`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendNotification {
    pub notification_id: String,
    pub recipient: String,
    pub channel: Channel,
    pub subject: String,
    pub body: String,
    pub url: Option<String>,
}

impl Contract for SendNotification {
    const NAME: &'static str = SEND_NOTIFICATION;
    const PARAMS: &'static [&'static str] = &[
        "notification_id",
        "recipient",
        "channel",
        "subject",
        "body",
        "url",
    ];

    fn from_kwargs(kw: &Map<String, Value>) -> Result<Self, ValidationErrors> {
        let mut f = Fields::new();
        let notification_id = f.id(kw, "", "notification_id");
        let recipient = f.string(kw, "", "recipient", MAX_EMAIL);
        let channel = match f.string(kw, "", "channel", 32).as_str() {
            "log" => Some(Channel::Log),
            "webhook" => Some(Channel::Webhook),
            "" => None,
            _ => {
                f.error("channel", "must be one of: log, webhook");
                None
            }
        };
        let subject = f.string(kw, "", "subject", 1000);
        let body = f.string(kw, "", "body", MAX_TEXT);
        let url = f.optional_string(kw, "", "url", MAX_URL);
        if let Some(u) = url.as_deref().filter(|u| !u.is_empty()) {
            if !(u.starts_with("http://") || u.starts_with("https://"))
                || u.contains(char::is_whitespace)
            {
                f.error("url", "must be an http:// or https:// URL");
            }
        }
        if channel == Some(Channel::Webhook) && url.is_none() {
            f.error("url", "is required for the webhook channel");
        }
        f.finish(SendNotification {
            notification_id,
            recipient,
            channel: channel.unwrap_or(Channel::Log),
            subject,
            body,
            url,
        })
    }
}

/// What `process_order` returns (the `result` of its SUCCESS).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderOutcome {
    pub order_id: String,
    pub status: OrderStatus,
    pub total_cents: i64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderStatus {
    Confirmed,
    Rejected,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kwargs(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    fn fields(err: ValidationErrors) -> Vec<String> {
        err.0.into_iter().map(|e| e.field).collect()
    }

    fn order() -> Value {
        json!({"order_id": "o-1", "customer": {"id": "c-1", "email": "a@b.example"},
               "items": [{"sku": "A", "quantity": 2, "unit_price_cents": 250},
                         {"sku": "B", "quantity": 1, "unit_price_cents": 1000}],
               "unknown": "tolerated"})
    }

    #[test]
    fn valid_order_parses_and_totals() {
        let o = ProcessOrder::from_kwargs(&kwargs(order())).unwrap();
        assert_eq!(o.total_cents(), Some(1500));
        assert_eq!(o.items.len(), 2);
    }

    #[test]
    fn every_problem_is_reported_with_its_field() {
        let bad = json!({"customer": {"id": 5, "email": "nope"},
                         "items": [{"sku": "A", "quantity": 0, "unit_price_cents": -1}, 7]});
        let err = ProcessOrder::from_kwargs(&kwargs(bad)).unwrap_err();
        assert_eq!(
            fields(err),
            vec![
                "order_id",
                "customer.id",
                "customer.email",
                "items[0].quantity",
                "items[0].unit_price_cents",
                "items[1]"
            ]
        );
    }

    #[test]
    fn empty_items_and_overflow_are_refused() {
        let mut v = order();
        v["items"] = json!([]);
        assert_eq!(
            fields(ProcessOrder::from_kwargs(&kwargs(v)).unwrap_err()),
            vec!["items"]
        );
        let mut v = order();
        v["items"] = json!([{"sku": "A", "quantity": 4, "unit_price_cents": i64::MAX / 2}]);
        assert_eq!(
            fields(ProcessOrder::from_kwargs(&kwargs(v)).unwrap_err()),
            vec!["items"]
        );
        let mut v = order();
        v["items"][0]["quantity"] = json!(1.5);
        assert_eq!(
            fields(ProcessOrder::from_kwargs(&kwargs(v)).unwrap_err()),
            vec!["items[0].quantity"]
        );
    }

    #[test]
    fn positional_args_map_onto_parameters() {
        let o = order();
        let args = vec![
            o["order_id"].clone(),
            o["customer"].clone(),
            o["items"].clone(),
        ];
        let parsed = ProcessOrder::from_call(&args, &Map::new()).unwrap();
        assert_eq!(parsed.order_id, "o-1");
        let dup = ProcessOrder::from_call(&args[..1], &kwargs(o)).unwrap_err();
        assert_eq!(fields(dup), vec!["order_id"]);
    }

    #[test]
    fn notification_rules() {
        let ok = json!({"notification_id": "n-1", "recipient": "a@b.example", "channel": "log",
                        "subject": "s", "body": "b"});
        assert_eq!(
            SendNotification::from_kwargs(&kwargs(ok.clone()))
                .unwrap()
                .channel,
            Channel::Log
        );
        let mut hook = ok.clone();
        hook["channel"] = json!("webhook");
        assert_eq!(
            fields(SendNotification::from_kwargs(&kwargs(hook)).unwrap_err()),
            vec!["url"]
        );
        let mut sms = ok;
        sms["channel"] = json!("sms");
        assert_eq!(
            fields(SendNotification::from_kwargs(&kwargs(sms)).unwrap_err()),
            vec!["channel"]
        );
    }

    #[test]
    fn kwargs_roundtrip() {
        let o = ProcessOrder::from_kwargs(&kwargs(order())).unwrap();
        assert_eq!(ProcessOrder::from_kwargs(&o.to_kwargs()).unwrap(), o);
    }
}
