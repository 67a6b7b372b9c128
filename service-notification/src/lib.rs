//! The notification service: accepts notifications over HTTP and hands them to the worker as
//! `send_notification` tasks; shows a notification's state and what a recipient was sent.
//!
//! [`api`] holds every route, [`handlers`] what each does; the shared state and start-up live
//! in `http_kit::service`.

use std::net::{Ipv4Addr, SocketAddr};

use http_kit::service::ServiceSpec;

pub mod api;
pub mod handlers;

pub const SPEC: ServiceSpec = ServiceSpec {
    name: "service-notification",
    bind_var: "NOTIFICATION_BIND",
    default_bind: SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 8081),
};

pub use http_kit::AppState as State;
