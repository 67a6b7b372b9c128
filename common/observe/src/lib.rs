//! What every process exposes about itself, below every other layer (it knows nothing about
//! Celery, the shop or HTTP serving):
//! - [`metrics`] — the Prometheus registry and the metric families (celery-exporter's names for
//!   tasks, this project's own for queues, leases and HTTP), encoded in the text format.
//! - [`text`] — Prometheus' text format, which `promtool` lints and celery-exporter serves.
//! - [`trace`] — W3C trace context (`traceparent`, `tracestate`) and the one a task or request
//!   runs in.
//! - [`log`] — the log format (`LOG_FORMAT=text|json`) and the fields a JSON line carries.

#![warn(missing_docs, unreachable_pub)]

pub mod log;
pub mod metrics;
pub mod text;
pub mod trace;
