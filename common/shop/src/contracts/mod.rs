//! Task contracts: the names the fleet registers, their typed payloads and their validation.
//!
//! Payloads travel as Celery keyword arguments, so a Python caller writes
//! `process_order.delay(order_id=..., customer={...}, items=[...])`; positional arguments are
//! mapped onto the parameter names in the order given by [`Contract::PARAMS`].
//!
//! - this file: the [`Contract`] trait (and [`Submission`], a contract the services accept);
//! - [`order`] — `process_order` and what it returns;
//! - [`notification`] — `send_notification`.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::validation::ValidationErrors;

pub mod notification;
pub mod order;

pub use notification::{Channel, NewNotification, SendNotification};
pub use order::{Customer, NewOrder, OrderItem, OrderOutcome, OrderStatus, ProcessOrder};

/// The Celery name of the order task (`process_order` in a Python fleet too).
pub const PROCESS_ORDER: &str = "process_order";
/// The Celery name of the notification task.
pub const SEND_NOTIFICATION: &str = "send_notification";

/// A task contract: its Celery name and its parameters in positional order.
pub trait Contract: Sized + Serialize {
    /// The task's Celery name.
    const NAME: &'static str;
    /// Its parameter names in positional order (how positional `args` are bound).
    const PARAMS: &'static [&'static str];

    /// Validates keyword arguments, reporting every problem with its field.
    fn from_kwargs(kwargs: &Map<String, Value>) -> Result<Self, ValidationErrors>;

    /// Validates a Celery call: positional args are mapped onto [`Self::PARAMS`] first.
    fn from_call(args: &[Value], kwargs: &Map<String, Value>) -> Result<Self, ValidationErrors> {
        Self::from_kwargs(&*merge_args(Self::PARAMS, args, kwargs)?)
    }

    /// The payload as Celery keyword arguments.
    fn to_kwargs(&self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        }
    }
}

/// Python's binding of `f(*args, **kwargs)` onto named parameters (the keywords as they are,
/// uncopied, when there are no positional arguments: the usual call).
pub fn merge_args<'k>(
    params: &[&str],
    args: &[Value],
    kwargs: &'k Map<String, Value>,
) -> Result<Cow<'k, Map<String, Value>>, ValidationErrors> {
    if args.is_empty() {
        return Ok(Cow::Borrowed(kwargs));
    }
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
    Ok(Cow::Owned(merged))
}

/// A contract the HTTP services accept: one task per id, submitted once.
pub trait Submission: Contract {
    /// What an id names: `order`, `notification` (the idempotency key's namespace).
    const KIND: &'static str;
    /// The field that holds the id.
    const ID_FIELD: &'static str;
    /// The submission's id (the value of [`Self::ID_FIELD`]).
    fn id(&self) -> &str;

    /// Rules for a submission from outside that a task run from the queue does not have (e.g.
    /// ids reserved for what the shop sends itself).
    fn check_submitted(&self) -> Result<(), ValidationErrors> {
        Ok(())
    }
}

/// Validates a submission from outside as the services accept it: an absent or null id is
/// generated (a UUID v4), then the contract's rules field by field, then
/// [`Submission::check_submitted`].
pub fn submitted<C: Submission>(body: &Map<String, Value>) -> Result<C, ValidationErrors> {
    let mut body = body.clone();
    if body.get(C::ID_FIELD).is_none_or(Value::is_null) {
        body.insert(
            C::ID_FIELD.into(),
            Value::String(uuid::Uuid::new_v4().to_string()),
        );
    }
    let contract = C::from_kwargs(&body)?;
    contract.check_submitted()?;
    Ok(contract)
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
