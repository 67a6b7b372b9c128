//! The Prometheus metrics of every process, in one registry per process, encoded in the text
//! exposition format. Task metrics keep celery-exporter's names and labels (so the Grafana
//! dashboards Celery teams have keep working); this project's own carry the `fleet_` prefix.
//! Counting is in memory only; gauges that need Redis are set by the caller just before a
//! scrape is encoded (see [`Fleet`]).

use std::sync::Arc;

use prometheus_client::encoding::text::encode;
pub use prometheus_client::metrics::counter::Counter;
pub use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
pub use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use labels::QueueLabels;
pub use labels::{FailedLabels, HostLabels, HttpLabels, ReasonLabels, RouteLabels, TaskLabels};

pub use crate::text::CONTENT_TYPE;

mod labels;

/// A histogram family with fixed buckets.
pub type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Task lifecycle counters and runtimes (celery-exporter's names).
#[derive(Clone)]
pub struct Tasks {
    /// `celery_task_sent_total`: tasks a service published.
    pub sent: Family<TaskLabels, Counter>,
    /// `celery_task_received_total`: tasks a worker received (once each, not per putting-off).
    pub received: Family<TaskLabels, Counter>,
    /// `celery_task_started_total`: tasks a worker began to run.
    pub started: Family<TaskLabels, Counter>,
    /// `celery_task_succeeded_total`: tasks that returned a result.
    pub succeeded: Family<TaskLabels, Counter>,
    /// `celery_task_failed_total`: tasks that failed for good, by exception class.
    pub failed: Family<FailedLabels, Counter>,
    /// `celery_task_retried_total`: failed runs scheduled to be retried.
    pub retried: Family<TaskLabels, Counter>,
    /// `celery_task_revoked_total`: tasks refused as revoked or expired, or terminated.
    pub revoked: Family<TaskLabels, Counter>,
    /// `celery_task_rejected_total`: messages dead-lettered instead of run.
    pub rejected: Family<TaskLabels, Counter>,
    /// `celery_task_runtime` (seconds): how long each successful run took.
    pub runtime: Histograms<TaskLabels>,
}

/// A worker's own state (celery-exporter's names).
#[derive(Clone, Default)]
pub struct Worker {
    /// `celery_worker_up`: 1 from the worker's start until it stops, then 0.
    pub up: Family<HostLabels, Gauge>,
    /// `celery_worker_tasks_active`: tasks the worker is running, read at scrape time.
    pub tasks_active: Family<HostLabels, Gauge>,
    /// `fleet_leases_restored_total`: dead workers' unacknowledged messages this worker put
    /// back in their queue.
    pub leases_restored: Counter,
}

/// What the queues in Redis hold, read at scrape time.
#[derive(Clone, Default)]
pub struct Fleet {
    /// `celery_queue_length`: messages waiting in the queue, all priorities.
    queue_length: Family<QueueLabels, Gauge>,
    /// `fleet_unacked_messages`: messages taken and not yet acknowledged.
    unacked: Gauge,
    /// `fleet_eta_waiting`: tasks of the queue waiting for their eta or retry.
    eta_waiting: Family<QueueLabels, Gauge>,
    /// `fleet_dead_letters`: messages in the dead-letter list.
    dead_letters: Gauge,
    /// `fleet_dead_letters_dropped`: dead letters dropped to keep the list within its cap.
    dead_letters_dropped: Gauge,
    /// Lists of a queue in another key layout than the configured one (nothing reads them).
    foreign_keys: Family<QueueLabels, Gauge>,
    /// 1 when the last scrape could read Redis, 0 when it could not (the gauges above then keep
    /// their last values).
    redis_up: Gauge,
}

/// One scrape's reading of a queue's keys in Redis.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueueReading {
    /// Messages waiting in the queue's lists, all priorities.
    pub waiting: u64,
    /// Tasks of the queue in the schedule, waiting for their eta or retry.
    pub eta_waiting: u64,
    /// Messages taken by a worker and not yet acknowledged (kombu's unacked hash, all queues).
    pub unacked: u64,
    /// Messages in the dead-letter list.
    pub dead_letters: u64,
    /// Dead letters dropped so far to keep the list within its cap.
    pub dead_letters_dropped: u64,
    /// Lists of the queue in another key layout than the configured one.
    pub foreign_keys: u64,
}

impl Fleet {
    /// Sets the gauges from a reading of `queue`, or marks Redis down (`None`).
    pub fn set(&self, queue: &str, reading: Option<QueueReading>) {
        let Some(r) = reading else {
            self.redis_up.set(0);
            return;
        };
        let as_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let q = QueueLabels {
            queue_name: queue.to_owned(),
        };
        self.queue_length.get_or_create(&q).set(as_i64(r.waiting));
        self.eta_waiting
            .get_or_create(&q)
            .set(as_i64(r.eta_waiting));
        self.unacked.set(as_i64(r.unacked));
        self.dead_letters.set(as_i64(r.dead_letters));
        self.dead_letters_dropped
            .set(as_i64(r.dead_letters_dropped));
        self.foreign_keys
            .get_or_create(&q)
            .set(as_i64(r.foreign_keys));
        self.redis_up.set(1);
    }
}

/// HTTP requests served (the services).
#[derive(Clone)]
pub struct Http {
    /// `fleet_http_requests_total`: exchanges answered, by route template, method and status.
    pub requests: Family<HttpLabels, Counter>,
    /// `fleet_http_request_duration_seconds`: time to answer, by route template and method.
    pub duration: Histograms<RouteLabels>,
    /// `fleet_submissions_refused_total`: submissions refused, by reason.
    pub submissions_refused: Family<ReasonLabels, Counter>,
}

/// Seconds: task runtimes (Prometheus client's default buckets, as celery-exporter's).
const RUNTIME_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
/// Seconds: HTTP latencies (most answers take well under a millisecond).
const HTTP_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5,
];

fn runtime_histogram() -> Histogram {
    Histogram::new(RUNTIME_BUCKETS)
}

fn http_histogram() -> Histogram {
    Histogram::new(HTTP_BUCKETS)
}

impl Default for Http {
    fn default() -> Self {
        Http {
            requests: Family::default(),
            duration: Family::new_with_constructor(http_histogram),
            submissions_refused: Family::default(),
        }
    }
}

impl Default for Tasks {
    fn default() -> Self {
        Tasks {
            sent: Family::default(),
            received: Family::default(),
            started: Family::default(),
            succeeded: Family::default(),
            failed: Family::default(),
            retried: Family::default(),
            revoked: Family::default(),
            rejected: Family::default(),
            runtime: Family::new_with_constructor(runtime_histogram),
        }
    }
}

/// A process's metrics: what it registered, and the registry that encodes them.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// Task lifecycle counters (workers count runs, services count tasks sent).
    pub tasks: Tasks,
    /// A worker's own gauges and counters (unused in the services).
    pub worker: Worker,
    /// The gauges of the queues in Redis, set at scrape time with [`Fleet::set`].
    pub fleet: Fleet,
    /// The services' HTTP accounting (unused in a worker).
    pub http: Http,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every family, registered under its exposition name.
    pub fn new() -> Self {
        let tasks = Tasks::default();
        let (worker, fleet, http) = (Worker::default(), Fleet::default(), Http::default());
        let mut r = Registry::default();
        let t = &tasks;
        r.register(
            "celery_task_sent",
            "Sent when a task message is published",
            t.sent.clone(),
        );
        r.register(
            "celery_task_received",
            "Sent when the worker receives a task",
            t.received.clone(),
        );
        r.register(
            "celery_task_started",
            "Sent just before the worker executes the task",
            t.started.clone(),
        );
        r.register(
            "celery_task_succeeded",
            "Sent if the task executed successfully",
            t.succeeded.clone(),
        );
        r.register(
            "celery_task_failed",
            "Sent if the execution of the task failed",
            t.failed.clone(),
        );
        r.register(
            "celery_task_retried",
            "Sent if the task failed, but will be retried in the future",
            t.retried.clone(),
        );
        r.register(
            "celery_task_revoked",
            "Sent if the task has been revoked",
            t.revoked.clone(),
        );
        r.register("celery_task_rejected", "The task was rejected by the worker, possibly to be re-queued or moved to a dead letter queue", t.rejected.clone());
        r.register(
            "celery_task_runtime",
            "Histogram of task runtime measurements",
            t.runtime.clone(),
        );
        r.register(
            "celery_worker_up",
            "Indicates if a worker has recently sent a heartbeat",
            worker.up.clone(),
        );
        r.register(
            "celery_worker_tasks_active",
            "The number of tasks the worker is currently processing",
            worker.tasks_active.clone(),
        );
        r.register(
            "fleet_leases_restored",
            "Unacknowledged messages of dead workers restored to their queue by this worker",
            worker.leases_restored.clone(),
        );
        r.register(
            "celery_queue_length",
            "The number of message in broker queue",
            fleet.queue_length.clone(),
        );
        r.register(
            "fleet_unacked_messages",
            "Messages taken by a worker and not yet acknowledged (kombu's unacked hash)",
            fleet.unacked.clone(),
        );
        r.register(
            "fleet_eta_waiting",
            "Tasks waiting for their eta or retry in the schedule",
            fleet.eta_waiting.clone(),
        );
        r.register(
            "fleet_dead_letters",
            "Messages in the dead-letter list",
            fleet.dead_letters.clone(),
        );
        r.register(
            "fleet_dead_letters_dropped",
            "Dead letters dropped so far to keep the list within its cap",
            fleet.dead_letters_dropped.clone(),
        );
        r.register(
            "fleet_queue_foreign_keys",
            "Lists of the queue in another key layout (priority steps, separator, key prefix) that nothing here reads",
            fleet.foreign_keys.clone(),
        );
        r.register(
            "fleet_redis_up",
            "1 when the last scrape could read the broker's Redis, else 0",
            fleet.redis_up.clone(),
        );
        r.register(
            "fleet_http_requests",
            "HTTP requests answered, by route template, method and status",
            http.requests.clone(),
        );
        r.register(
            "fleet_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template and method",
            http.duration.clone(),
        );
        r.register(
            "fleet_submissions_refused",
            "Submissions refused: backpressure (429) or Redis unavailable (503)",
            http.submissions_refused.clone(),
        );
        Metrics {
            registry: Arc::new(r),
            tasks,
            worker,
            fleet,
            http,
        }
    }

    /// Every family in Prometheus' text format (0.0.4): what Prometheus scrapes, what
    /// `promtool check metrics` lints, and the form celery-exporter serves (a counter's HELP and
    /// TYPE name its `_total` series).
    pub fn encode(&self) -> String {
        let mut open = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut open, &self.registry);
        crate::text::from_openmetrics(&open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_celery_exporters() {
        let m = Metrics::new();
        let labels = TaskLabels {
            name: "process_order".into(),
            hostname: "w1@box".into(),
            queue_name: "celery".into(),
        };
        m.tasks.received.get_or_create(&labels).inc();
        m.tasks.runtime.get_or_create(&labels).observe(0.02);
        let text = m.encode();
        assert!(
            text.contains("celery_task_received_total{name=\"process_order\",hostname=\"w1@box\",queue_name=\"celery\"} 1"),
            "{text}"
        );
        assert!(text.contains("celery_task_runtime_bucket{"), "{text}");
        assert!(
            text.contains("# TYPE celery_task_received_total counter"),
            "{text}"
        );
        assert!(!text.contains("# EOF"));
    }
}
