//! Every Redis key name the fleet reads or writes, in one place.
//!
//! Celery/kombu keys keep kombu's names exactly (so Python workers and clients share them); keys
//! that only this project uses carry the `fleet:` prefix.

/// kombu's separator between a queue name and its priority step, and inside binding members.
pub const SEP: &str = "\x06\x16";
/// kombu's priority steps on Redis; 0 is served first.
pub const PRIORITY_STEPS: [u8; 4] = [0, 3, 6, 9];
/// kombu's hash of delivered-but-unacknowledged messages: delivery tag -> `[envelope, exchange, routing_key]`.
pub const UNACKED: &str = "unacked";
/// kombu's sorted set of unacknowledged delivery tags, scored by when their lease was last taken.
pub const UNACKED_INDEX: &str = "unacked_index";
/// kombu's lock that lets one worker at a time restore expired unacknowledged messages.
pub const UNACKED_MUTEX: &str = "unacked_mutex";
/// Messages that cannot be run (undecodable, poison): JSON entries with the reason.
pub const DEAD_LETTER: &str = "fleet:dead_letter";

/// Rounds a Celery priority down to kombu's Redis step (0-2 -> 0, 3-5 -> 3, 6-8 -> 6, 9 -> 9).
pub fn priority_step(priority: i64) -> u8 {
    let p = priority.clamp(0, 9) as u8;
    p - p % 3
}

/// The Redis list that holds a queue's messages of the given priority.
pub fn queue_list(queue: &str, priority: i64) -> String {
    match priority_step(priority) {
        0 => queue.to_owned(),
        step => format!("{queue}{SEP}{step}"),
    }
}

/// All lists of a queue in the order kombu's BRPOP serves them.
pub fn queue_lists(queue: &str) -> Vec<String> {
    PRIORITY_STEPS
        .iter()
        .map(|&p| queue_list(queue, i64::from(p)))
        .collect()
}

/// The short-lived list a blocking fetch moves a message into before it is claimed (see `queue`).
pub fn processing(queue: &str) -> String {
    format!("fleet:processing:{queue}")
}

/// Messages with a future `eta`, scored by when they are due (server time, seconds).
pub fn scheduled(queue: &str) -> String {
    format!("fleet:scheduled:{queue}")
}

/// kombu's binding set of the anonymous exchange a producer declares once.
pub fn binding(exchange: &str) -> String {
    format!("_kombu.binding.{exchange}")
}

/// Celery's result key (and the pub/sub channel of the same name).
pub fn task_meta(task_id: &str) -> String {
    format!("celery-task-meta-{task_id}")
}

/// Available stock of one SKU (an integer).
pub fn stock(sku: &str) -> String {
    format!("fleet:stock:{sku}")
}

/// The task that processes an order (written once, when the order is accepted).
pub fn order_task(order_id: &str) -> String {
    format!("fleet:order:{order_id}:task")
}

/// The stock reservation outcome of an order (written once, with the stock change).
pub fn order_reservation(order_id: &str) -> String {
    format!("fleet:order:{order_id}:reservation")
}

/// The task that sends a notification (written once, when the notification is accepted).
pub fn notification_task(notification_id: &str) -> String {
    format!("fleet:notification:{notification_id}:task")
}

/// The delivery record of a notification (written once, when it is delivered).
pub fn notification_delivery(notification_id: &str) -> String {
    format!("fleet:notification:{notification_id}:delivery")
}

/// Delivered notification ids of a recipient, newest first.
pub fn recipient_deliveries(recipient: &str) -> String {
    format!("fleet:recipient:{recipient}:deliveries")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_round_down_to_kombu_steps() {
        let steps: Vec<u8> = (-1..=10).map(priority_step).collect();
        assert_eq!(steps, vec![0, 0, 0, 0, 3, 3, 3, 6, 6, 6, 9, 9]);
        assert_eq!(queue_list("celery", 5), "celery\x06\x163");
        assert_eq!(queue_list("celery", 0), "celery");
        assert_eq!(
            queue_lists("q"),
            vec!["q", "q\x06\x163", "q\x06\x166", "q\x06\x169"]
        );
    }
}
