//! The metric labels of a worker's tasks, made once at start (the hot path only borrows them),
//! each with the series it counts on every task, found in their families once.

use std::sync::OnceLock;

use observe::metrics::{Counter, Family, Histogram, MetricConstructor, TaskLabels, Tasks};

/// The labels of one task name and queue, and the series every task of them counts in, each
/// looked up in its family at its first use and kept: a family hashes the labels (SipHash) and
/// takes a lock at every lookup, ~600 instructions a count and three counts a task. A series
/// still appears in the scrape when first counted, as before.
pub struct TaskSeries {
    /// The labels.
    pub labels: TaskLabels,
    received: OnceLock<Counter>,
    started: OnceLock<Counter>,
    succeeded: OnceLock<Counter>,
    runtime: OnceLock<Histogram>,
}

impl TaskSeries {
    fn new(labels: TaskLabels) -> Self {
        TaskSeries {
            labels,
            received: OnceLock::new(),
            started: OnceLock::new(),
            succeeded: OnceLock::new(),
            runtime: OnceLock::new(),
        }
    }

    /// `celery_task_received_total` of these labels.
    pub fn received(&self, tasks: &Tasks) -> &Counter {
        kept(&self.received, &tasks.received, &self.labels)
    }

    /// `celery_task_started_total` of these labels.
    pub fn started(&self, tasks: &Tasks) -> &Counter {
        kept(&self.started, &tasks.started, &self.labels)
    }

    /// `celery_task_succeeded_total` of these labels.
    pub fn succeeded(&self, tasks: &Tasks) -> &Counter {
        kept(&self.succeeded, &tasks.succeeded, &self.labels)
    }

    /// `celery_task_runtime` of these labels.
    pub fn runtime(&self, tasks: &Tasks) -> &Histogram {
        kept(&self.runtime, &tasks.runtime, &self.labels)
    }
}

/// `family`'s series of `labels`, kept in `cell` (a clone shares the series' value).
fn kept<'a, M: Clone, C: MetricConstructor<M>>(
    cell: &'a OnceLock<M>,
    family: &Family<TaskLabels, M, C>,
    labels: &TaskLabels,
) -> &'a M {
    cell.get_or_init(|| family.get_or_create(labels).clone())
}

/// The metric labels of this worker's tasks, made once: one set per registered name and
/// consumed queue, and one per queue for every other name (`unregistered`: names come from
/// messages, labels must stay few). A queue it does not consume counts as its first queue.
pub struct Labels {
    known: Vec<TaskSeries>,
    unregistered: Vec<TaskSeries>,
    /// `unregistered` in the first queue.
    other: TaskSeries,
}

impl Labels {
    /// Labels for `names` (the registered tasks) run by `node` from `queues` (at least one).
    pub fn new(names: &[&str], node: &str, queues: &[String]) -> Self {
        let make = |name: &str, queue: &str| {
            TaskSeries::new(TaskLabels {
                name: name.to_owned(),
                hostname: celery_redis::node::host_of(node).to_owned(),
                queue_name: queue.to_owned(),
            })
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
    pub fn of(&self, name: &str, queue: Option<&str>) -> &TaskSeries {
        let in_queue = |s: &&TaskSeries| queue.is_some_and(|q| s.labels.queue_name == q);
        let named = |s: &&TaskSeries| s.labels.name == name;
        self.known
            .iter()
            .filter(named)
            .find(in_queue)
            .or_else(|| self.known.iter().find(named))
            .or_else(|| self.unregistered.iter().find(in_queue))
            .unwrap_or(&self.other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(queues: &[&str]) -> Labels {
        let queues: Vec<String> = queues.iter().map(|q| (*q).to_owned()).collect();
        Labels::new(&["add", "mul"], "w1@box", &queues)
    }

    /// `(name, queue)` of the labels `of` picks; the hostname is checked on its own.
    fn picked<'a>(l: &'a Labels, name: &str, queue: Option<&str>) -> (&'a str, &'a str) {
        let t = &l.of(name, queue).labels;
        (t.name.as_str(), t.queue_name.as_str())
    }

    #[test]
    fn a_registered_name_from_a_consumed_queue_keeps_both() {
        let l = labels(&["fast", "slow"]);
        assert_eq!(picked(&l, "add", Some("fast")), ("add", "fast"));
        assert_eq!(picked(&l, "mul", Some("slow")), ("mul", "slow"));
        assert_eq!(picked(&l, "add", Some("slow")), ("add", "slow"));
    }

    #[test]
    fn a_registered_name_from_no_queue_or_another_counts_in_the_first_queue() {
        let l = labels(&["fast", "slow"]);
        assert_eq!(picked(&l, "mul", None), ("mul", "fast"));
        assert_eq!(picked(&l, "mul", Some("elsewhere")), ("mul", "fast"));
    }

    #[test]
    fn any_other_name_is_unregistered_in_its_queue_or_the_first() {
        let l = labels(&["fast", "slow"]);
        assert_eq!(picked(&l, "evil.x", Some("slow")), ("unregistered", "slow"));
        assert_eq!(picked(&l, "evil.x", None), ("unregistered", "fast"));
        assert_eq!(
            picked(&l, "evil.x", Some("elsewhere")),
            ("unregistered", "fast")
        );
        // A name is matched exactly: a registered one's prefix is another name.
        assert_eq!(picked(&l, "ad", Some("fast")), ("unregistered", "fast"));
    }

    #[test]
    fn the_hostname_is_the_nodes_host_and_no_queue_means_celery() {
        let l = labels(&[]);
        let t = &l.of("add", None).labels;
        assert_eq!(t.hostname, "box");
        assert_eq!(
            (t.name.as_str(), t.queue_name.as_str()),
            ("unregistered", "celery")
        );
        let l = labels(&["fast"]);
        assert!(["add", "nope"]
            .iter()
            .all(|n| l.of(n, Some("fast")).labels.hostname == "box"));
    }
}
