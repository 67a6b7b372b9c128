//! Every Redis key name of the Celery-on-Redis layer, in one place, and the one priority mapping.
//!
//! Celery/kombu keys keep kombu's names exactly (so Python workers and clients share them); keys
//! that only this project uses carry the `fleet:` prefix. Rust computes every key a script
//! touches and passes it in `KEYS`. The shop's own keys are in `shop::keys`.
//!
//! The names here are kombu's defaults; what a process uses is its [`Layout`] (the fleet's
//! priority steps, separator and global key prefix, from the configuration), which every broker,
//! control and event sender holds. The free functions below name the default layout's keys
//! (for tests and tools); production code asks its `Layout`.

mod layout;

pub use layout::{shown, Layout, LayoutError, QueueOrder, KNOWN_SEPS, MAX_PREFIX_LEN, MAX_SEP_LEN};

/// kombu's default separator between a queue name and its priority step, and inside binding
/// members (its `sep` transport option).
pub const SEP: &str = "\x06\x16";
/// kombu's default priority steps on Redis (its `priority_steps`); 0 is served first.
pub const PRIORITY_STEPS: [u8; 4] = [0, 3, 6, 9];
/// kombu's hash of delivered-but-unacknowledged messages: delivery tag -> `[envelope, exchange, routing_key]`.
pub const UNACKED: &str = "unacked";
/// kombu's sorted set of unacknowledged delivery tags, scored by when their lease was last taken.
pub const UNACKED_INDEX: &str = "unacked_index";
/// kombu's lock that lets one worker at a time restore expired unacknowledged messages.
pub const UNACKED_MUTEX: &str = "unacked_mutex";
/// Ends the field under which this project's workers record a delivery they hold in `unacked`
/// (the message's delivery tag, then this): they renew its lease while they run, kombu's
/// workers do not, so a restore gives theirs back after the lease (`VISIBILITY_TIMEOUT_SECS`)
/// and anybody else's only after the fleet's kombu visibility timeout. kombu restores either
/// kind by field name, whatever it is.
pub const LEASE_SUFFIX: &str = "~lease";
/// Messages that cannot be run (undecodable, poison): JSON entries with the reason.
pub const DEAD_LETTER: &str = "fleet:dead_letter";
/// How many dead letters were dropped (oldest first) to keep the list within its cap.
pub const DEAD_LETTER_DROPPED: &str = "fleet:dead_letter:dropped";

/// The prefix of a redelivered message's delivery counter; the claim script appends the SHA-1
/// of its delivery tag (only that script reads the tag).
pub const DELIVERIES_PREFIX: &str = "fleet:deliveries:";

/// Fleet-wide revoked task ids, scored by when they were revoked (server time, seconds). The one
/// key of the broker's that no global key prefix changes: task ids are unique whichever fleet
/// sent them, so a revoke holds wherever its task lands.
pub const REVOKED: &str = "fleet:revoked";

/// kombu's exchange of events (a fanout: Redis pub/sub).
pub const EVENT_EXCHANGE: &str = "celeryev";
/// kombu's exchange of remote-control requests (a fanout).
pub const PIDBOX_EXCHANGE: &str = "celery.pidbox";
/// kombu's direct exchange of remote-control replies.
pub const REPLY_EXCHANGE: &str = "reply.celery.pidbox";
/// The set binding each waiting client's reply list to its routing key (`rk SEP pattern SEP queue`).
pub const REPLY_BINDINGS: &str = "_kombu.binding.reply.celery.pidbox";
/// How every pidbox queue name ends (requests `<node>.celery.pidbox`, replies
/// `<oid>.reply.celery.pidbox`): never a task queue.
const PIDBOX_SUFFIX: &str = ".celery.pidbox";

/// The pub/sub channel of a fanout exchange: `/<db>.<exchange>[/<routing key>]` (kombu), without
/// a key prefix ([`Layout::fanout_channel`] puts the fleet's in front).
pub fn fanout_channel(db: i64, exchange: &str, routing_key: &str) -> String {
    if routing_key.is_empty() {
        format!("/{db}.{exchange}")
    } else {
        format!("/{db}.{exchange}/{routing_key}")
    }
}

/// Whether a binding names a reply list a worker may push to: `<oid>.reply.celery.pidbox` with a
/// plain oid (a forged binding cannot point a reply at a task queue or any other key).
pub fn is_reply_queue(queue: &str) -> bool {
    queue
        .strip_suffix(".reply.celery.pidbox")
        .is_some_and(is_key_part)
}

/// Longest name accepted inside a key (queue names here; ids and SKUs in the shop).
pub const MAX_NAME_LEN: usize = 128;

/// [`is_key_part`]'s rule but its length (at most [`MAX_NAME_LEN`]) as a regular expression, for
/// schemas (the same in ECMA 262 and in Rust's `regex`).
pub const KEY_PART_PATTERN: &str = "^[A-Za-z0-9._:-]*[A-Za-z0-9][A-Za-z0-9._:-]*$";

/// Whether `s` may stand inside a key name: 1 to [`MAX_NAME_LEN`] characters of
/// `A-Z a-z 0-9 . _ : -` with at least one letter or digit (no separators, spaces, wildcards,
/// control characters, and no `.` or `..`).
pub fn is_key_part(s: &str) -> bool {
    s.len() <= MAX_NAME_LEN
        && s.bytes().any(|b| b.is_ascii_alphanumeric())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Whether `name` may be a queue: a plain key part that is none of kombu's, Celery's or this
/// project's own keys. A message naming any other queue (in its routing key, or a callback's
/// `options.queue`) is dead-lettered rather than pushed onto, say, `unacked` or a chord's join
/// list.
pub fn is_queue_name(name: &str) -> bool {
    is_key_part(name)
        && ![UNACKED, UNACKED_INDEX, UNACKED_MUTEX].contains(&name)
        && !name.starts_with("fleet:")
        && !name.starts_with("celery-task-meta-")
        // The result backend's group results and chord join lists, and Celery's chord unlock.
        && !name.starts_with("celery-taskset-meta-")
        && !name.starts_with("chord-unlock-")
        && !name.starts_with("_kombu.")
        && !name.ends_with(PIDBOX_SUFFIX)
}

/// kombu's default layout (no prefix, steps 0/3/6/9, its separator).
static DEFAULT: std::sync::LazyLock<Layout> = std::sync::LazyLock::new(Layout::default);

/// kombu's default layout, made once.
pub fn default_layout() -> &'static Layout {
    &DEFAULT
}

/// The list of the default layout that holds a queue's messages of the given priority.
pub fn queue_list(queue: &str, priority: i64) -> String {
    DEFAULT.queue_list(queue, priority)
}

/// All lists of a queue in the default layout, in the order kombu's BRPOP serves them.
pub fn queue_lists(queue: &str) -> Vec<String> {
    DEFAULT.queue_lists(queue)
}

/// How the name of a queue's processing list and schedule begin.
const PROCESSING: &str = "fleet:processing:";
const SCHEDULED: &str = "fleet:scheduled:";

/// The short-lived list a blocking fetch moves a message into before it is claimed (see `broker`).
pub fn processing(queue: &str) -> String {
    [PROCESSING, queue].concat()
}

/// Messages with a future `eta`, scored by when they are due (server time, seconds).
pub fn scheduled(queue: &str) -> String {
    [SCHEDULED, queue].concat()
}

/// How the key of a task's fleet-wide rate limit begins (its task name follows): the earliest
/// time the fleet may start that task again, a string expiring then (`task::fleet`).
const FLEET_RATE: &str = "fleet:rate:";

/// The key of `task`'s fleet-wide rate limit in the default layout.
pub fn fleet_rate(task: &str) -> String {
    [FLEET_RATE, task].concat()
}

/// Celery's result key (and the pub/sub channel of the same name).
pub fn task_meta(task_id: &str) -> String {
    ["celery-task-meta-", task_id].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_layout_is_kombus() {
        assert_eq!(queue_list("celery", 5), "celery\x06\x163");
        assert_eq!(queue_list("celery", 0), "celery");
        assert_eq!(
            queue_lists("q"),
            vec!["q", "q\x06\x163", "q\x06\x166", "q\x06\x169"]
        );
    }

    #[test]
    fn the_key_part_pattern_is_the_rule_of_is_key_part() {
        let pattern = regex::Regex::new(KEY_PART_PATTERN).unwrap();
        for s in [
            "a", "A-1", "o.1", "n:1", "_x_", "-.-9", "", ".", "..", "-", "a b", "a/b", "a*", "é",
            "a\n", "a\nb", "x:", ":x",
        ] {
            assert_eq!(pattern.is_match(s), is_key_part(s), "{s:?}");
        }
    }

    #[test]
    fn queues_cannot_take_reserved_names() {
        assert!(is_queue_name("celery"));
        assert!(is_queue_name("orders.fast"));
        for bad in [
            "unacked",
            "unacked_index",
            "unacked_mutex",
            "fleet:stock:A",
            "fleet:dead_letter",
            "celery-task-meta-x",
            "_kombu.binding.celery",
            "a.reply.celery.pidbox",
            "w@h.celery.pidbox",
            "",
            "a b",
        ] {
            assert!(!is_queue_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn replies_go_only_to_reply_lists() {
        assert!(is_reply_queue(
            "59e647f3-bfcd-3581-8701-838b1c556721.reply.celery.pidbox"
        ));
        for bad in [
            "celery",
            "unacked",
            ".reply.celery.pidbox",
            "a b.reply.celery.pidbox",
        ] {
            assert!(!is_reply_queue(bad), "{bad:?}");
        }
        assert_eq!(fanout_channel(0, PIDBOX_EXCHANGE, ""), "/0.celery.pidbox");
        assert_eq!(
            fanout_channel(3, EVENT_EXCHANGE, "task.multi"),
            "/3.celeryev/task.multi"
        );
    }

    #[test]
    fn key_parts_are_plain() {
        assert!(is_key_part("order-1.a_b:c"));
        for bad in [
            "",
            ".",
            "..",
            "-",
            "a b",
            "a*",
            "a\r\n",
            "a\0",
            &"x".repeat(129),
        ] {
            assert!(!is_key_part(bad), "{bad:?}");
        }
    }
}
