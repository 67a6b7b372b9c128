//! `rate_limit` and `time_limit`: a task's limits on this worker changed at run time, with a
//! Celery worker's replies (`celery/worker/control.py`), until the worker stops (its tasks'
//! options hold again at the next start). Rates are read as Celery reads them
//! ([`celery_redis::task::rate::parse`]); a time limit is a number of seconds or `null`.

use celery_redis::keys;
use celery_redis::protocol::pyrepr;
use celery_redis::task::rate;
use serde_json::{json, Map, Value};

use super::ControlError;
use crate::limits::Limits;

/// Most characters of a task name written in a log line.
const MAX_NAME_SHOWN: usize = 128;

/// A task name given in a request, as a log line shows it: cut, control characters escaped.
fn shown(name: &Value) -> String {
    match name {
        Value::String(s) => keys::shown(&s.chars().take(MAX_NAME_SHOWN).collect::<String>()),
        other => pyrepr::repr(other).chars().take(MAX_NAME_SHOWN).collect(),
    }
}

/// Python's truth of the value sent: Celery's reply says "disabled" for a false one (`null`,
/// `""`, `0`), even where a true one (`"0"`) sets no limit either.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// `rate_limit` (`task_name`, `rate_limit`: a rate string, a number per second, or `null`):
/// sets the task's per-worker rate, its bucket full. As Celery, the rate is checked before
/// the task is looked up.
pub fn rate_limit(limits: &Limits, args: &Map<String, Value>) -> Result<Value, ControlError> {
    let (Some(task), Some(given)) = (args.get("task_name"), args.get("rate_limit")) else {
        return Err(ControlError::BadArgument(
            "rate_limit needs task_name and rate_limit".into(),
        ));
    };
    let parsed = match given {
        Value::Null => Ok(None),
        Value::String(s) => rate::parse(s),
        Value::Number(n) => rate::from_number(n.as_f64().unwrap_or(f64::NAN)),
        _ => {
            return Err(ControlError::BadArgument(
                "rate_limit must be a rate like \"10/s\", \"100/m\", \"5/h\", a number or null"
                    .into(),
            ))
        }
    };
    let rate = match parsed {
        Ok(rate) => rate,
        Err(e) => return Ok(json!({"error": e.to_string()})),
    };
    let name = task.as_str().filter(|name| limits.set_rate(name, rate));
    let Some(name) = name else {
        log::error!("Rate limit attempt for unknown task {}", shown(task));
        return Ok(json!({"error": "unknown task"}));
    };
    if !truthy(given) {
        log::info!("Rate limits disabled for tasks of type {name}");
        return Ok(json!({"ok": "rate limit disabled successfully"}));
    }
    log::info!("New rate limit for tasks of type {name}: {}.", shown(given));
    Ok(json!({"ok": "new rate limit set successfully"}))
}

/// A time limit in a `time_limit` request: `null` (or absent) for none, else seconds, 0 or
/// more (0 is no limit, as for a task's option).
fn seconds(args: &Map<String, Value>, key: &str) -> Result<Option<f64>, ControlError> {
    let bad = || {
        ControlError::BadArgument(format!(
            "{key} must be a number of seconds (0 or more) or null"
        ))
    };
    match args.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(s) if s.is_finite() && s >= 0.0 => Ok(Some(s)),
            _ => Err(bad()),
        },
        Some(_) => Err(bad()),
    }
}

/// `time_limit` (`task_name`, `soft`, `hard`): sets both of the task's time limits, a missing
/// one to none, as Celery does; the message's own `timelimit` still wins.
pub fn time_limit(limits: &Limits, args: &Map<String, Value>) -> Result<Value, ControlError> {
    let task = args.get("task_name").unwrap_or(&Value::Null);
    let Some(name) = task.as_str().filter(|name| limits.knows(name)) else {
        log::error!("Change time limit attempt for unknown task {}", shown(task));
        return Ok(json!({"error": "unknown task"}));
    };
    let (soft, hard) = (seconds(args, "soft")?, seconds(args, "hard")?);
    limits.set_time_limits(name, hard, soft);
    log::info!(
        "New time limits for tasks of type {name}: soft={} hard={}",
        pyrepr::repr(&json!(soft)),
        pyrepr::repr(&json!(hard))
    );
    Ok(json!({"ok": "time limits set successfully"}))
}
