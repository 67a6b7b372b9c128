//! Everything the services and the worker share: the task contracts, the Celery protocol v2 wire
//! format, the Redis queue and result backend, configuration and the web plumbing.
//!
//! The path of one task through this crate: a service validates a payload against a contract in
//! [`tasks`], builds a [`protocol::TaskMessage`], and [`queue::Broker::publish`] pushes it as a
//! kombu envelope; the worker [`queue::Broker::claim`]s it, decodes it with [`protocol`], runs it,
//! stores the outcome through [`result::ResultBackend`] and acknowledges it.

pub mod clock;
pub mod config;
pub mod connection;
pub mod inventory;
pub mod keys;
pub mod notifications;
pub mod orders;
pub mod protocol;
pub mod queue;
pub mod result;
pub mod service;
pub mod shutdown;
pub mod tasks;
pub mod validation;
pub mod web;

#[cfg(any(test, feature = "test-support"))]
pub mod testing;
