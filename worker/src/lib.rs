//! The worker: takes Celery tasks off the Redis queue and runs them.
//!
//! Read in this order: [`consumer`] (fetch loop, concurrency, leases, shutdown), [`execute`]
//! (one delivery from decode to acknowledgement), [`tasks`] (what each task does), [`canvas`]
//! (callbacks and chain steps a task sends on).

pub mod admin;
pub mod canvas;
pub mod consumer;
pub mod execute;
pub mod tasks;
pub mod webhook;

pub use consumer::run;
