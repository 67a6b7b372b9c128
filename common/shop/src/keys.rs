//! Every Redis key the shop reads or writes, in one place (all with the `fleet:` prefix). The
//! Celery layer's keys are in `celery_redis::keys`. Callers validate the ids first
//! (`validation::is_id`), so no key name carries a separator, a space or a wildcard.

/// Available stock of one SKU (an integer).
pub fn stock(sku: &str) -> String {
    format!("fleet:stock:{sku}")
}

/// The task accepted for an id of a kind (`order`, `notification`): written once, with the
/// message, when the submission is accepted.
pub fn submitted_task(kind: &str, id: &str) -> String {
    format!("fleet:{kind}:{id}:task")
}

/// The stock reservation outcome of an order (written once, with the stock change).
pub fn order_reservation(order_id: &str) -> String {
    format!("fleet:order:{order_id}:reservation")
}

/// The delivery record of a notification (written once, when it is delivered).
pub fn notification_delivery(notification_id: &str) -> String {
    format!("fleet:notification:{notification_id}:delivery")
}

/// Delivered notification ids of a recipient, newest first.
pub fn recipient_deliveries(recipient: &str) -> String {
    format!("fleet:recipient:{recipient}:deliveries")
}

/// How many ids were ever pushed onto a recipient's list (the listing's cursor numbers its
/// entries by it).
pub fn recipient_pushed(recipient: &str) -> String {
    format!("fleet:recipient:{recipient}:pushed")
}
