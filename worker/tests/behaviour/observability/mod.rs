//! What operators see: metrics (`metrics`), the healthcheck (`health`) and logs and traces
//! (`trace`).

mod health;
mod metrics;
mod trace;
