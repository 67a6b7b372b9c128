//! kombu's Redis transport options that name keys (`priority_steps`, `sep`, `global_keyprefix`)
//! as one value, [`Layout`], built once from the configuration and held by everything that
//! names a kombu key; and the order a worker serves its queues in (`queue_order_strategy`).
//!
//! The mapping is kombu's (`kombu/transport/redis.py`): a priority (clamped to 0-9) is served
//! from the list of the highest step not above it (`Channel.priority`), step 0 being the queue's
//! own name and step `n` `<queue><sep><n>` (`_q_for_pri`); the global prefix goes in front of
//! every key and every pub/sub channel the transport uses (`PrefixedStrictRedis`), never inside
//! a value (the queue names in `unacked` entries and binding members stay bare).

use super::{
    DEAD_LETTER, DEAD_LETTER_DROPPED, FLEET_RATE, PRIORITY_STEPS, PROCESSING, REPLY_BINDINGS,
    SCHEDULED, SEP, UNACKED, UNACKED_INDEX, UNACKED_MUTEX,
};

/// The highest Celery priority (kombu's `max_priority`); the lowest is 0.
pub(crate) const MAX_PRIORITY: u8 = 9;
/// Longest separator accepted (kombu's default is two characters).
pub const MAX_SEP_LEN: usize = 4;
/// Longest global key prefix accepted.
pub const MAX_PREFIX_LEN: usize = 64;
/// The separators kombu fleets use: its default, and `:` of Celery's documented priority setup.
/// Keys under either that this layout never reads are reported ([`Layout::foreign_candidates`]).
pub const KNOWN_SEPS: [&str; 2] = [SEP, ":"];

/// Where kombu's keys are for this fleet: its priority steps, its separator and its global key
/// prefix. [`Layout::default`] is kombu's default (`[0, 3, 6, 9]`, `"\x06\x16"`, no prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    steps: Vec<u8>,
    sep: String,
    prefix: String,
    // kombu's fixed keys and the project's fleet-wide broker keys, prefixed once.
    unacked: String,
    unacked_index: String,
    unacked_mutex: String,
    dead_letter: String,
    dead_letter_dropped: String,
    reply_bindings: String,
}

impl Default for Layout {
    fn default() -> Self {
        Layout::build(PRIORITY_STEPS.to_vec(), SEP.to_owned(), String::new())
    }
}

/// The order a worker offers its queues to each claim (kombu's `queue_order_strategy`). Within
/// each priority step every queue comes before the next step of any (kombu's BRPOP key order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueOrder {
    /// `round_robin` (kombu's default): a queue that delivered goes to the back.
    #[default]
    RoundRobin,
    /// `priority`: the configured order, always (a busy first queue starves the others).
    Priority,
    /// `sorted`: alphabetical order, always.
    Sorted,
}

impl QueueOrder {
    /// kombu's name of a strategy.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "round_robin" => Some(QueueOrder::RoundRobin),
            "priority" => Some(QueueOrder::Priority),
            "sorted" => Some(QueueOrder::Sorted),
            _ => None,
        }
    }

    /// kombu's name of this strategy (what [`QueueOrder::parse`] reads).
    pub fn name(self) -> &'static str {
        match self {
            QueueOrder::RoundRobin => "round_robin",
            QueueOrder::Priority => "priority",
            QueueOrder::Sorted => "sorted",
        }
    }
}

impl Layout {
    /// A layout from kombu's options; `Err` says what is wrong with which one: `steps` 1-10
    /// distinct values of 0-9 in ascending order starting at 0 (without 0 kombu's bisect
    /// sends priority 0 to the last step), `sep` 1-4 ASCII characters none of them a letter,
    /// digit, space or NUL, `prefix` empty or up to 64 of `A-Z a-z 0-9 . _ : - /`.
    pub fn new(steps: &[u8], sep: &str, prefix: &str) -> Result<Self, LayoutError> {
        if steps.first() != Some(&0)
            || steps.iter().any(|&s| s > MAX_PRIORITY)
            || steps.windows(2).any(|w| w[0] >= w[1])
        {
            return Err(LayoutError::Steps);
        }
        let sep_ok = (1..=MAX_SEP_LEN).contains(&sep.len())
            && sep
                .bytes()
                .all(|b| b.is_ascii() && b != 0 && b != b' ' && !b.is_ascii_alphanumeric());
        if !sep_ok {
            return Err(LayoutError::Sep);
        }
        let prefix_ok = prefix.len() <= MAX_PREFIX_LEN
            && prefix.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-' | b'/')
            });
        if !prefix_ok {
            return Err(LayoutError::Prefix);
        }
        Ok(Layout::build(
            steps.to_vec(),
            sep.to_owned(),
            prefix.to_owned(),
        ))
    }

    fn build(steps: Vec<u8>, sep: String, prefix: String) -> Self {
        let p = |key: &str| format!("{prefix}{key}");
        Layout {
            unacked: p(UNACKED),
            unacked_index: p(UNACKED_INDEX),
            unacked_mutex: p(UNACKED_MUTEX),
            dead_letter: p(DEAD_LETTER),
            dead_letter_dropped: p(DEAD_LETTER_DROPPED),
            reply_bindings: p(REPLY_BINDINGS),
            steps,
            sep,
            prefix,
        }
    }

    /// The priority steps, ascending (kombu serves 0 first).
    pub fn steps(&self) -> &[u8] {
        &self.steps
    }

    /// The separator between a queue's name and its step, and inside binding members.
    pub fn sep(&self) -> &str {
        &self.sep
    }

    /// The global key prefix (empty: none), in front of every key and channel.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// kombu's `priority()`: the step whose list holds a message of `priority` (clamped to 0-9
    /// first, as kombu's `_get_message_priority`): the highest step not above it.
    pub fn step(&self, priority: i64) -> u8 {
        // Clamped to 0..=9 first, so the conversion cannot fail.
        let p = u8::try_from(priority.clamp(0, i64::from(MAX_PRIORITY))).unwrap_or(0);
        self.steps
            .iter()
            .copied()
            .take_while(|&s| s <= p)
            .last()
            .unwrap_or(0)
    }

    /// The list of `queue` that holds messages of `priority` (kombu's `_q_for_pri`, prefixed).
    pub fn queue_list(&self, queue: &str, priority: i64) -> String {
        self.step_list(queue, self.step(priority))
    }

    /// The list of `queue` for `step` (one of [`Layout::steps`]).
    pub fn step_list(&self, queue: &str, step: u8) -> String {
        match step {
            0 => [self.prefix.as_str(), queue].concat(),
            step => format!("{}{queue}{}{step}", self.prefix, self.sep),
        }
    }

    /// Every list of `queue`, in the order kombu's BRPOP serves them (step 0 first).
    pub fn queue_lists(&self, queue: &str) -> Vec<String> {
        self.steps
            .iter()
            .map(|&s| self.step_list(queue, s))
            .collect()
    }

    /// kombu's hash of held messages ([`UNACKED`], prefixed).
    pub fn unacked(&self) -> &str {
        &self.unacked
    }

    /// kombu's index of held messages by lease time ([`UNACKED_INDEX`], prefixed).
    pub fn unacked_index(&self) -> &str {
        &self.unacked_index
    }

    /// kombu's restore lock ([`UNACKED_MUTEX`], prefixed).
    pub fn unacked_mutex(&self) -> &str {
        &self.unacked_mutex
    }

    /// The dead-letter list ([`DEAD_LETTER`], prefixed).
    pub fn dead_letter(&self) -> &str {
        &self.dead_letter
    }

    /// The count of dead letters dropped ([`DEAD_LETTER_DROPPED`], prefixed).
    pub fn dead_letter_dropped(&self) -> &str {
        &self.dead_letter_dropped
    }

    /// The set binding each waiting control client's reply list (kombu's
    /// `_kombu.binding.reply.celery.pidbox`).
    pub fn reply_bindings(&self) -> &str {
        &self.reply_bindings
    }

    /// `key` (a name kombu gives a key, like a reply list's) with the prefix.
    pub fn key(&self, key: &str) -> String {
        [self.prefix.as_str(), key].concat()
    }

    /// [`super::processing`] of `queue`, prefixed (one allocation: a claim names it).
    pub fn processing(&self, queue: &str) -> String {
        [self.prefix.as_str(), PROCESSING, queue].concat()
    }

    /// [`super::scheduled`] of `queue`, prefixed.
    pub fn scheduled(&self, queue: &str) -> String {
        [self.prefix.as_str(), SCHEDULED, queue].concat()
    }

    /// [`super::fleet_rate`] of `task`, prefixed.
    pub fn fleet_rate(&self, task: &str) -> String {
        [self.prefix.as_str(), FLEET_RATE, task].concat()
    }

    /// kombu's binding table of `exchange` (members `routing_key SEP pattern SEP queue`).
    pub fn binding_table(&self, exchange: &str) -> String {
        format!("{}_kombu.binding.{exchange}", self.prefix)
    }

    /// A binding member as kombu writes it: the three parts joined by the separator.
    pub fn binding_member(&self, routing_key: &str, pattern: &str, queue: &str) -> String {
        [routing_key, pattern, queue].join(&self.sep)
    }

    /// A binding member's `(routing_key, pattern, queue)`; `None` unless it has exactly three
    /// parts (kombu unpacks exactly three).
    pub fn binding_parts<'a>(&self, member: &'a str) -> Option<(&'a str, &'a str, &'a str)> {
        let mut parts = member.split(self.sep.as_str());
        let found = (parts.next()?, parts.next()?, parts.next()?);
        parts.next().is_none().then_some(found)
    }

    /// The pub/sub channel of a fanout exchange ([`super::fanout_channel`]), prefixed as kombu's
    /// prefixed client PUBLISHes and (P)SUBSCRIBEs it.
    pub fn fanout_channel(&self, db: i64, exchange: &str, routing_key: &str) -> String {
        match routing_key {
            "" => format!("{}/{db}.{exchange}", self.prefix),
            rk => format!("{}/{db}.{exchange}/{rk}", self.prefix),
        }
    }

    /// The lists of `queue` in another layout than this one that this one never reads: steps
    /// 1-9 under kombu's default separator, `:` and this separator, with this prefix and
    /// without, and the bare queue when this layout has a prefix. At most 55 names (a prefix
    /// other than this one cannot be guessed).
    pub fn foreign_candidates(&self, queue: &str) -> Vec<String> {
        let ours = self.queue_lists(queue);
        let mut prefixes = vec![self.prefix.as_str()];
        if !self.prefix.is_empty() {
            prefixes.push("");
        }
        let mut seps: Vec<&str> = KNOWN_SEPS.to_vec();
        if !seps.contains(&self.sep.as_str()) {
            seps.push(&self.sep);
        }
        let mut found: Vec<String> = Vec::new();
        for prefix in prefixes {
            let names =
                std::iter::once(format!("{prefix}{queue}")).chain(seps.iter().flat_map(|sep| {
                    (1..=MAX_PRIORITY).map(move |n| format!("{prefix}{queue}{sep}{n}"))
                }));
            for name in names {
                if !ours.contains(&name) && !found.contains(&name) {
                    found.push(name);
                }
            }
        }
        found
    }

    /// These options as the variables that set them (for a log line a person reads).
    pub fn describe(&self) -> String {
        let steps: Vec<String> = self.steps.iter().map(u8::to_string).collect();
        format!(
            "BROKER_PRIORITY_STEPS={} BROKER_KEY_SEP={} BROKER_KEY_PREFIX={}",
            steps.join(","),
            shown(&self.sep),
            self.prefix
        )
    }
}

/// `key` with control characters written `\xNN`, as `BROKER_KEY_SEP` takes them (kombu's
/// default separator is two of them).
pub fn shown(key: &str) -> String {
    key.chars()
        .map(|c| match c {
            '\\' => "\\\\".to_owned(),
            c if c.is_ascii_control() => format!("\\x{:02x}", u32::from(c)),
            c => c.to_string(),
        })
        .collect()
}

/// Which option of a [`Layout`] is not usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// `BROKER_PRIORITY_STEPS`, kombu's `priority_steps`.
    #[error(
        "priority steps must be 1 to 10 distinct whole numbers from 0 to 9, ascending, the first 0"
    )]
    Steps,
    /// `BROKER_KEY_SEP`, kombu's `sep`.
    #[error("the separator must be 1 to 4 ASCII characters, none a letter, digit, space or NUL")]
    Sep,
    /// `BROKER_KEY_PREFIX`, kombu's `global_keyprefix`.
    #[error("the key prefix must be at most 64 of A-Z a-z 0-9 . _ : - /")]
    Prefix,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ten_colon() -> Layout {
        Layout::new(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], ":", "").unwrap()
    }

    /// kombu's `_q_for_pri(queue, pri)` for pri 0..9 (and out-of-range values, clamped first as
    /// `_get_message_priority` does), under both step sets.
    #[test]
    fn priorities_map_as_kombus() {
        let default = Layout::default();
        let lists: Vec<String> = (-1..=10).map(|p| default.queue_list("celery", p)).collect();
        let s = |n: u8| format!("celery\x06\x16{n}");
        let want = [
            "celery".to_owned(),
            "celery".to_owned(),
            "celery".to_owned(),
            "celery".to_owned(),
            s(3),
            s(3),
            s(3),
            s(6),
            s(6),
            s(6),
            s(9),
            s(9),
        ];
        assert_eq!(lists, want);
        let ten = ten_colon();
        let lists: Vec<String> = (0..=9).map(|p| ten.queue_list("celery", p)).collect();
        assert_eq!(lists[0], "celery");
        for (p, list) in lists.iter().enumerate().skip(1) {
            assert_eq!(*list, format!("celery:{p}"));
        }
        assert_eq!(ten.queue_list("celery", 42), "celery:9");
        assert_eq!(
            default.queue_lists("q"),
            ["q", "q\x06\x163", "q\x06\x166", "q\x06\x169"]
        );
        assert_eq!(ten.queue_lists("q").len(), 10);
        // Uneven steps: the highest step not above the priority (kombu's bisect).
        let odd = Layout::new(&[0, 5], "\x06\x16", "").unwrap();
        let steps: Vec<u8> = (0..=9).map(|p| odd.step(p)).collect();
        assert_eq!(steps, [0, 0, 0, 0, 0, 5, 5, 5, 5, 5]);
    }

    #[test]
    fn the_prefix_goes_in_front_of_every_key_and_channel() {
        let l = Layout::new(&[0, 3, 6, 9], ":", "app:").unwrap();
        assert_eq!(l.queue_list("celery", 0), "app:celery");
        assert_eq!(l.queue_list("celery", 4), "app:celery:3");
        assert_eq!(
            (l.unacked(), l.unacked_index(), l.unacked_mutex()),
            ("app:unacked", "app:unacked_index", "app:unacked_mutex")
        );
        assert_eq!(l.reply_bindings(), "app:_kombu.binding.reply.celery.pidbox");
        assert_eq!(l.binding_table("shop"), "app:_kombu.binding.shop");
        assert_eq!(l.processing("q"), "app:fleet:processing:q");
        assert_eq!(l.scheduled("q"), "app:fleet:scheduled:q");
        assert_eq!(l.dead_letter(), "app:fleet:dead_letter");
        assert_eq!(l.fleet_rate("shop.x"), "app:fleet:rate:shop.x");
        assert_eq!(
            l.fanout_channel(0, "celery.pidbox", ""),
            "app:/0.celery.pidbox"
        );
        // Values name queues bare, as kombu writes them.
        assert_eq!(l.binding_member("rk", "", "q"), "rk::q");
        assert_eq!(l.binding_parts("rk::q"), Some(("rk", "", "q")));
        assert_eq!(l.binding_parts("rk::q:x"), None);
        let d = Layout::default();
        assert_eq!((d.unacked(), d.dead_letter()), (UNACKED, DEAD_LETTER));
        assert_eq!(d.binding_member("a", "", "b"), "a\x06\x16\x06\x16b");
    }

    #[test]
    fn foreign_candidates_are_every_other_layout_this_one_never_reads() {
        let d = Layout::default();
        let c = d.foreign_candidates("celery");
        assert!(c.contains(&"celery:5".to_owned()));
        assert!(c.contains(&"celery\x06\x161".to_owned()));
        for ours in d.queue_lists("celery") {
            assert!(!c.contains(&ours), "{ours:?}");
        }
        assert_eq!(c.len(), 9 + 6);
        let ten = ten_colon();
        let c = ten.foreign_candidates("celery");
        assert!(c.contains(&"celery\x06\x163".to_owned()));
        assert!(!c.contains(&"celery:3".to_owned()));
        let p = Layout::new(&[0, 3, 6, 9], "\x06\x16", "app:").unwrap();
        let c = p.foreign_candidates("celery");
        assert!(c.contains(&"celery".to_owned()));
        assert!(c.contains(&"celery\x06\x163".to_owned()));
        assert!(c.contains(&"app:celery:5".to_owned()));
        assert!(!c.contains(&"app:celery\x06\x163".to_owned()));
        assert!(c.len() <= 55);
    }

    #[test]
    fn hostile_options_are_refused() {
        for steps in [
            &[][..],
            &[3, 6, 9],
            &[0, 3, 3],
            &[0, 6, 3],
            &[0, 10],
            &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9],
        ] {
            assert_eq!(
                Layout::new(steps, SEP, ""),
                Err(LayoutError::Steps),
                "{steps:?}"
            );
        }
        for sep in ["", "abcde", "x", "5", " ", "\0", "é", ":::::"] {
            assert_eq!(Layout::new(&[0], sep, ""), Err(LayoutError::Sep), "{sep:?}");
        }
        for prefix in ["a b", "a*", "a\n", "{x}", &"p".repeat(65)] {
            assert_eq!(
                Layout::new(&[0], SEP, prefix),
                Err(LayoutError::Prefix),
                "{prefix:?}"
            );
        }
        assert!(Layout::new(&[0], ":", "team/app.v1:").is_ok());
    }

    #[test]
    fn separators_are_shown_escaped() {
        assert_eq!(shown("celery\x06\x163"), "celery\\x06\\x163");
        assert_eq!(
            Layout::default().describe(),
            "BROKER_PRIORITY_STEPS=0,3,6,9 BROKER_KEY_SEP=\\x06\\x16 BROKER_KEY_PREFIX="
        );
        assert_eq!(QueueOrder::parse("sorted"), Some(QueueOrder::Sorted));
        assert_eq!(QueueOrder::parse("fair"), None);
        assert_eq!(QueueOrder::default().name(), "round_robin");
    }
}
