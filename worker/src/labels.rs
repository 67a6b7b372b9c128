//! The metric labels of a worker's tasks, made once at start (the hot path only borrows them).

use observe::metrics::TaskLabels;

/// The metric labels of this worker's tasks, made once: one set per registered name and
/// consumed queue, and one per queue for every other name (`unregistered`: names come from
/// messages, labels must stay few). A queue it does not consume counts as its first queue.
pub struct Labels {
    known: Vec<TaskLabels>,
    unregistered: Vec<TaskLabels>,
    /// `unregistered` in the first queue.
    other: TaskLabels,
}

impl Labels {
    /// Labels for `names` (the registered tasks) run by `node` from `queues` (at least one).
    pub fn new(names: &[&str], node: &str, queues: &[String]) -> Self {
        let make = |name: &str, queue: &str| TaskLabels {
            name: name.to_owned(),
            hostname: celery_redis::node::host_of(node).to_owned(),
            queue_name: queue.to_owned(),
        };
        let first = queues.first().map_or("celery", String::as_str);
        Labels {
            other: make("unregistered", first),
            known: queues
                .iter()
                .flat_map(|q| names.iter().map(move |n| (*n, q)))
                .map(|(n, q)| make(n, q))
                .collect(),
            unregistered: queues.iter().map(|q| make("unregistered", q)).collect(),
        }
    }

    /// The labels of a task named `name` taken from `queue`.
    pub fn of(&self, name: &str, queue: Option<&str>) -> &TaskLabels {
        let in_queue = |l: &&TaskLabels| queue.is_some_and(|q| l.queue_name == q);
        let named = |l: &&TaskLabels| l.name == name;
        self.known
            .iter()
            .filter(named)
            .find(in_queue)
            .or_else(|| self.known.iter().find(named))
            .or_else(|| self.unregistered.iter().find(in_queue))
            .unwrap_or(&self.other)
    }
}
