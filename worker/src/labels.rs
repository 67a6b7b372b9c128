//! The metric labels of a worker's tasks, made once at start (the hot path only borrows them).

use observe::metrics::TaskLabels;

/// The metric labels of this worker's tasks, made once: one set per registered name, and one for
/// every other name (`unregistered`: names come from messages, labels must stay few).
pub struct Labels {
    known: Vec<TaskLabels>,
    unregistered: TaskLabels,
}

impl Labels {
    /// Labels for `names` (the registered tasks) run by `node` from `queue`.
    pub fn new(names: &[&str], node: &str, queue: &str) -> Self {
        let make = |name: &str| TaskLabels {
            name: name.to_owned(),
            hostname: node.to_owned(),
            queue_name: queue.to_owned(),
        };
        Labels {
            known: names.iter().map(|n| make(n)).collect(),
            unregistered: make("unregistered"),
        }
    }

    /// The labels of a task named `name`.
    pub fn of(&self, name: &str) -> &TaskLabels {
        self.known
            .iter()
            .find(|l| l.name == name)
            .unwrap_or(&self.unregistered)
    }
}
