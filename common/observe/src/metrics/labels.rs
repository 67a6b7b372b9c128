//! The label sets of the metric families: celery-exporter's for tasks and workers, this
//! project's for queues and HTTP. Every value is bounded by the caller (task names the worker
//! registered, route templates, a fixed set of reasons), so a hostile message or request
//! cannot create series without end.

use prometheus_client::encoding::EncodeLabelSet;

/// Labels of celery-exporter's task counters and runtime histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TaskLabels {
    /// `name`: the task's name (`process_order`; a worker counts names it has not registered
    /// as `unregistered`).
    pub name: String,
    /// `hostname`: the host part of the node name (`box` for `w1@box`), as celery-exporter's.
    pub hostname: String,
    /// `queue_name`: the queue the task was routed to or taken from.
    pub queue_name: String,
}

/// Labels of `celery_task_failed_total`: the task's, and the exception's class name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailedLabels {
    /// `name`: the task's name, as in [`TaskLabels::name`].
    pub name: String,
    /// `hostname`: the host part of the worker's node name.
    pub hostname: String,
    /// `exception`: the class name of the error the task failed with (e.g. `ValueError`).
    pub exception: String,
    /// `queue_name`: the queue the task was taken from.
    pub queue_name: String,
}

/// Labels of a worker's own gauges (`celery_worker_up`, `celery_worker_tasks_active`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HostLabels {
    /// `hostname`: the host part of the worker's node name.
    pub hostname: String,
}

/// Labels of the gauges of one queue's keys in Redis.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct QueueLabels {
    /// `queue_name`: the Celery queue (not its Redis key).
    pub(super) queue_name: String,
}

/// One HTTP exchange: the route's template (never the raw path), method and status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// `route`: the route template (`/orders/{id}`), or `unmatched`.
    pub route: String,
    /// `method`: `GET`, `POST`, `PUT`, `DELETE`, `HEAD`, or `other`.
    pub method: String,
    /// `status`: the status code answered, as digits (`201`).
    pub status: String,
}

/// Labels of `fleet_http_request_duration_seconds`: an exchange's route template and method.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// `route`: the route template (`/orders/{id}`), or `unmatched`.
    pub route: String,
    /// `method`: `GET`, `POST`, `PUT`, `DELETE`, `HEAD`, or `other`.
    pub method: String,
}

/// Labels of `fleet_submissions_refused_total`: why a submission was refused.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// `reason`: `backpressure` (answered 429) or `redis` (answered 503).
    pub reason: String,
}
