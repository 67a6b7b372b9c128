//! Task routing: the queue each task goes to, by name (Celery's `task_routes`), and the list of
//! queues a worker consumes (Celery's `-Q`). Parsed once from the environment, checked whole.
//!
//! `TASK_ROUTES` is `pattern=queue` entries separated by commas; a pattern is a task name or a
//! glob where `*` stands for any run of characters. The first matching entry wins; a task no entry
//! matches goes to the default queue (`CELERY_QUEUE`), as in Celery.
//!
//! ```
//! use celery_redis::routes::Routes;
//! let routes = Routes::parse("send_*=notifications, process_order=orders", "celery").unwrap();
//! assert_eq!(routes.queue_for("send_notification"), "notifications");
//! assert_eq!(routes.queue_for("process_order"), "orders");
//! assert_eq!(routes.queue_for("anything_else"), "celery");
//! ```

use crate::glob::Glob;
use crate::keys;

/// Most entries in a route table, and most queues one worker consumes.
pub const MAX_ENTRIES: usize = 64;

/// Where tasks go, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routes {
    default: String,
    rules: Vec<(Glob, String)>,
}

impl Routes {
    /// Every task to `default`.
    pub fn to(default: impl Into<String>) -> Self {
        Routes {
            default: default.into(),
            rules: Vec::new(),
        }
    }

    /// Reads a `TASK_ROUTES` value (see the module documentation); `default` must already be a
    /// valid queue name. The error says which entry is wrong and why.
    pub fn parse(spec: &str, default: &str) -> Result<Self, String> {
        if spec.split(',').nth(MAX_ENTRIES).is_some() {
            return Err(format!("more than {MAX_ENTRIES} entries"));
        }
        let mut rules: Vec<(Glob, String)> = Vec::new();
        for entry in spec.split(',') {
            let entry = entry.trim();
            let Some((pattern, queue)) = entry.split_once('=') else {
                return Err(format!("{entry:?} is not pattern=queue"));
            };
            let (pattern, queue) = (pattern.trim(), queue.trim());
            if !is_pattern(pattern) {
                return Err(format!(
                    "{pattern:?} is not a task name or a glob (1-{} characters of letters, digits, '.', '_', ':', '-', '*')",
                    keys::MAX_NAME_LEN
                ));
            }
            if !keys::is_queue_name(queue) {
                return Err(format!("{queue:?} is not a usable queue name"));
            }
            if rules.iter().any(|(p, _)| p.as_str() == pattern) {
                return Err(format!("{pattern:?} is routed twice"));
            }
            rules.push((Glob::new(pattern), queue.to_owned()));
        }
        Ok(Routes {
            default: default.to_owned(),
            rules,
        })
    }

    /// Routes `task` to `queue` unless an entry already matches it: a task's own default
    /// queue (its `queue` option), after the table's entries, as Celery's `task_routes` win
    /// over a task's `queue`. `Err` when `queue` is not a usable queue name.
    pub fn or_route(mut self, task: &str, queue: &str) -> Result<Self, String> {
        if !keys::is_queue_name(queue) {
            return Err(format!(
                "{queue:?} (the queue of task {task}) is not a usable queue name"
            ));
        }
        if self.explicit(task).is_none() {
            self.rules.push((Glob::new(task), queue.to_owned()));
        }
        Ok(self)
    }

    /// The queue a task named `task` goes to.
    pub fn queue_for(&self, task: &str) -> &str {
        self.explicit(task).unwrap_or(&self.default)
    }

    /// The queue an entry of the table names for `task`, if one matches.
    pub fn explicit(&self, task: &str) -> Option<&str> {
        self.rules
            .iter()
            .find(|(pattern, _)| pattern.is_match(task))
            .map(|(_, queue)| queue.as_str())
    }

    /// The entries, `(pattern, queue)`, in the order they are tried.
    pub fn rules(&self) -> impl Iterator<Item = (&str, &str)> {
        self.rules.iter().map(|(p, q)| (p.as_str(), q.as_str()))
    }

    /// The queue of tasks no entry matches (`CELERY_QUEUE`).
    pub fn default_queue(&self) -> &str {
        &self.default
    }

    /// Every queue a task can be routed to: the default first, then each named once.
    pub fn queues(&self) -> Vec<&str> {
        let mut all = vec![self.default.as_str()];
        for (_, queue) in &self.rules {
            if !all.contains(&queue.as_str()) {
                all.push(queue);
            }
        }
        all
    }
}

/// Reads a `WORKER_QUEUES` value: queue names separated by commas, each once, at most
/// [`MAX_ENTRIES`].
pub fn parse_queues(spec: &str) -> Result<Vec<String>, String> {
    if spec.split(',').nth(MAX_ENTRIES).is_some() {
        return Err(format!("more than {MAX_ENTRIES} queues"));
    }
    let mut queues: Vec<String> = Vec::new();
    for queue in spec.split(',').map(str::trim) {
        if !keys::is_queue_name(queue) {
            return Err(format!("{queue:?} is not a usable queue name"));
        }
        if queues.iter().any(|q| q == queue) {
            return Err(format!("{queue:?} is listed twice"));
        }
        queues.push(queue.to_owned());
    }
    Ok(queues)
}

/// A task name, or a glob of one: what [`keys::is_key_part`] allows, plus `*`.
fn is_pattern(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= keys::MAX_NAME_LEN
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-' | b'*'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hostile_name_costs_no_more_than_its_length_times_the_pattern() {
        let text = "a".repeat(100_000);
        let r = Routes::parse("*a*a*a*a*a*a*a*b=slow", "celery").unwrap();
        assert_eq!(r.queue_for(&text), "celery");
    }

    #[test]
    fn the_first_match_wins_and_the_rest_go_to_the_default() {
        let r = Routes::parse("process_order=orders,*=bulk", "celery").unwrap();
        assert_eq!(r.queue_for("process_order"), "orders");
        assert_eq!(r.queue_for("other"), "bulk");
        assert_eq!(r.queues(), ["celery", "orders", "bulk"]);
        assert_eq!(Routes::to("q").queue_for("x"), "q");
    }

    #[test]
    fn bad_tables_are_refused_with_the_entry() {
        for bad in [
            "",
            "a",
            "a=",
            "=q",
            "a=b,",
            "a b=q",
            "a=unacked",
            "a=fleet:x",
            "a=q1,a=q2",
            "a=x.celery.pidbox",
            "a=celery-task-meta-x",
        ] {
            assert!(Routes::parse(bad, "celery").is_err(), "{bad:?}");
        }
        let many: Vec<String> = (0..=MAX_ENTRIES).map(|i| format!("t{i}=q")).collect();
        assert!(Routes::parse(&many.join(","), "celery").is_err());
    }

    #[test]
    fn worker_queues_are_names_each_once() {
        assert_eq!(parse_queues("a, b").unwrap(), ["a", "b"]);
        for bad in ["", "a,,b", "a,a", "a b", "unacked", "_kombu.binding.x"] {
            assert!(parse_queues(bad).is_err(), "{bad:?}");
        }
    }
}
