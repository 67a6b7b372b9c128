//! The log format (stub: being written).
