//! W3C trace context (stub: being written).
