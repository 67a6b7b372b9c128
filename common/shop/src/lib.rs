//! The shop, on top of the Celery layer (`celery_redis`): what the tasks mean, and the tasks
//! themselves. It serves no HTTP (its one client posts webhooks); the services and the worker
//! both use it.
//!
//! Map, bottom up:
//! - [`keys`] — every Redis key the shop writes (`fleet:` prefix).
//! - [`validation`] — field-by-field checks of JSON payloads.
//! - `schema` — the OpenAPI schemas of an id and an e-mail address (from `validation`'s
//!   patterns); with the other OpenAPI derives of the contracts and records, behind the
//!   `openapi` feature (utoipa), which only the HTTP services enable.
//! - [`contracts`] — the task names, their typed payloads and their rules (`process_order`,
//!   `send_notification`).
//! - [`submission`] — a contract accepted once per id and enqueued (both services use it).
//! - [`inventory`] — stock per SKU and the once-per-order reservation.
//! - [`notifications`] — delivery records, once per notification id, listed per recipient.
//! - [`webhook`] — the webhook client (its destination policy, its bounded concurrency) and its
//!   settings (`WEBHOOK_*`, read by the worker binary that registers the tasks).
//! - [`tasks`] — `process_order` and `send_notification`, written with `celery_redis::task`
//!   and registered by the worker binary.

#![warn(missing_docs)]

pub mod contracts;
pub mod inventory;
pub mod keys;
pub mod notifications;
#[cfg(feature = "openapi")]
pub mod schema;
pub mod submission;
pub mod tasks;
pub mod validation;
pub mod webhook;
