//! Every Redis key the shop reads or writes, in one place (all with the `fleet:` prefix), joined
//! with `concat` (a `format!` is a formatting pass per key, on every task). The
//! Celery layer's keys are in `celery_redis::keys`. Callers validate the ids first
//! (`validation::is_id`), so no key name carries a separator, a space or a wildcard.

/// Available stock of one SKU (an integer).
pub fn stock(sku: &str) -> String {
    ["fleet:stock:", sku].concat()
}

/// The task accepted for an id of a kind (`order`, `notification`): written once, with the
/// message, when the submission is accepted.
pub fn submitted_task(kind: &str, id: &str) -> String {
    ["fleet:", kind, ":", id, ":task"].concat()
}

/// The stock reservation outcome of an order (written once, with the stock change).
pub fn order_reservation(order_id: &str) -> String {
    ["fleet:order:", order_id, ":reservation"].concat()
}

/// The delivery record of a notification (written once, when it is delivered).
pub fn notification_delivery(notification_id: &str) -> String {
    ["fleet:notification:", notification_id, ":delivery"].concat()
}

/// Delivered notification ids of a recipient, newest first.
pub fn recipient_deliveries(recipient: &str) -> String {
    ["fleet:recipient:", recipient, ":deliveries"].concat()
}

/// How many ids were ever pushed onto a recipient's list (the listing's cursor numbers its
/// entries by it).
pub fn recipient_pushed(recipient: &str) -> String {
    ["fleet:recipient:", recipient, ":pushed"].concat()
}
