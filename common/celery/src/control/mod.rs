//! Celery's remote control (kombu's pidbox) on Redis: requests are PUBLISHed on
//! `/<db>.celery.pidbox`, replies LPUSHed onto the list a client bound in
//! `_kombu.binding.reply.celery.pidbox`. This module is the mechanism; what each command does
//! is the worker's business.
//!
//! - [`lamport`] — the Lamport clock events and replies carry.
//! - [`request`] — a request and whether a node acts on it.
//! - [`reply`] — a node's reply, pushed through the binding set.
//! - [`listen`] — a node's subscription to requests.
//! - [`client`] — a client call (`celery inspect` in Rust): the worker's healthcheck, the tests.

pub mod client;
pub mod lamport;
pub mod listen;
pub mod reply;
pub mod request;

pub use lamport::Lamport;
pub use request::{ReplyTo, Request};
