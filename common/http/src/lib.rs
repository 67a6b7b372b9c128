//! The HTTP kit the two services share, on top of `celery_redis` and `shop`: only the services
//! depend on it, so the worker links no HTTP server.
//!
//! Map:
//! - [`auth`] — bearer tokens, and the rule that an exposed API has them.
//! - [`error`] — the JSON error shape.
//! - [`header`] — request headers read as text (400 for a value that is not).
//! - [`body`] — JSON replies, the JSON body filter and its size limit, state injection.
//! - [`rejection`] — every rejection mapped to the error shape, once.
//! - [`health`] — `/healthz`, `/readyz`, and the `healthcheck` subcommand's client.
//! - [`submit`] — the one submit and read path of both services (`POST /<kind>s`,
//!   `GET /<kind>s/{id}`), generic over a `shop` contract.
//! - [`config`] — [`config::ServiceConfig`], read once at start-up.
//! - [`serve`] — binding and serving with a graceful stop.
//! - [`service`] — the state every handler shares, and a service's whole `main`.

#![warn(missing_docs, unreachable_pub)]

pub mod auth;
pub mod body;
pub mod config;
pub mod error;
pub mod header;
pub mod health;
pub mod metrics;
pub mod openapi;
pub mod rejection;
pub mod serve;
pub mod service;
pub mod submit;

pub use error::ApiError;
pub use service::AppState;
