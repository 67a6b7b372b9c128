//! Limits on when and how long a task runs: rate limits (`rate`) and time limits (`time`).

mod rate;
mod time;
