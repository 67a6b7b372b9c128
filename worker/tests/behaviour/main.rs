//! The worker's behaviour, one module a behaviour: every test of the operator subcommands CI asks (`admin`), tasks, retries, eta and
//! expiry, canvas, limits, dead letters, memory, routing, remote control, shutdown,
//! configuration refusals, observability and the whole stack end to end is in the module named
//! by it, against a private redis-server each. The in-process worker and the shop's messages
//! the modules share are in `support`. (Suites that need more than `cargo test`, the fault,
//! Sentinel, interop, soak and Prometheus ones, stay binaries of their own beside this one.)

#[path = "../bombs/mod.rs"]
mod bombs;
mod support;

mod admin;
mod canvas;
mod config;
mod dead_letters;
mod end_to_end;
mod eta_expiry;
mod limits;
mod memory;
mod observability;
mod remote_control;
mod retries;
mod routing;
mod shutdown;
mod tasks;
