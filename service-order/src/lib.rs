//! The order service: accepts orders over HTTP and hands them to the worker as `process_order`
//! tasks; reads their outcome back from the result backend; sets and reads stock.
//!
//! [`api`] holds every route, [`handlers`] what each does; the shared state and start-up live
//! in `http_kit::service`.

use std::net::{Ipv4Addr, SocketAddr};

use http_kit::service::ServiceSpec;

pub mod api;
pub mod handlers;

pub const SPEC: ServiceSpec = ServiceSpec {
    name: "service-order",
    bind_var: "ORDER_BIND",
    default_bind: SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 8080),
};

pub use http_kit::AppState as State;
