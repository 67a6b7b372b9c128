//! The Prometheus metrics of every process, in one registry per process, encoded in the text
//! exposition format. Task metrics keep celery-exporter's names and labels (so the Grafana
//! dashboards Celery teams have keep working); this project's own carry the `fleet_` prefix.
//! Counting is in memory only; gauges that need Redis are set by the caller just before a
//! scrape is encoded (see [`Fleet`]).

use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
pub use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

pub use crate::text::CONTENT_TYPE;

/// Labels of celery-exporter's task counters and runtime histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TaskLabels {
    pub name: String,
    pub hostname: String,
    pub queue_name: String,
}

/// Labels of `celery_task_failed_total`: the task's, and the exception's class name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailedLabels {
    pub name: String,
    pub hostname: String,
    pub exception: String,
    pub queue_name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HostLabels {
    pub hostname: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    pub queue_name: String,
}

/// One HTTP exchange: the route's template (never the raw path), method and status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub route: String,
    pub method: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
    pub method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

/// A histogram family with fixed buckets.
pub type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Task lifecycle counters and runtimes (celery-exporter's names).
#[derive(Clone)]
pub struct Tasks {
    pub sent: Family<TaskLabels, Counter>,
    pub received: Family<TaskLabels, Counter>,
    pub started: Family<TaskLabels, Counter>,
    pub succeeded: Family<TaskLabels, Counter>,
    pub failed: Family<FailedLabels, Counter>,
    pub retried: Family<TaskLabels, Counter>,
    pub revoked: Family<TaskLabels, Counter>,
    pub rejected: Family<TaskLabels, Counter>,
    pub runtime: Histograms<TaskLabels>,
}

/// A worker's own state (celery-exporter's names).
#[derive(Clone, Default)]
pub struct Worker {
    pub up: Family<HostLabels, Gauge>,
    pub tasks_active: Family<HostLabels, Gauge>,
    pub leases_restored: Counter,
}

/// What the queues in Redis hold, read at scrape time.
#[derive(Clone, Default)]
pub struct Fleet {
    pub queue_length: Family<QueueLabels, Gauge>,
    pub unacked: Gauge,
    pub eta_waiting: Family<QueueLabels, Gauge>,
    pub dead_letters: Gauge,
    pub dead_letters_dropped: Gauge,
    /// Lists of a queue in another key layout than the configured one (nothing reads them).
    pub foreign_keys: Family<QueueLabels, Gauge>,
    /// 1 when the last scrape could read Redis, 0 when it could not (the gauges above then keep
    /// their last values).
    pub redis_up: Gauge,
}

/// One scrape's reading of a queue's keys in Redis.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueueReading {
    pub waiting: u64,
    pub eta_waiting: u64,
    pub unacked: u64,
    pub dead_letters: u64,
    pub dead_letters_dropped: u64,
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
    pub requests: Family<HttpLabels, Counter>,
    pub duration: Histograms<RouteLabels>,
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
    pub tasks: Tasks,
    pub worker: Worker,
    pub fleet: Fleet,
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
