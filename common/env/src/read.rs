//! One variable as a typed value: unset means the default, set but empty is an error, and a
//! value out of its bounds names the variable and the bounds.

use crate::{ConfigError, Source};

/// The value of `var`, `None` when unset. A variable set to an empty (or blank) value is an
/// error, not the default: `REDIS_URL=""` must not quietly mean the default Redis.
pub fn raw(src: &dyn Source, var: &'static str) -> Result<Option<String>, ConfigError> {
    match src.get(var) {
        Some(v) if v.trim().is_empty() => Err(ConfigError {
            var,
            reason: "is set but empty; unset it to use the default".into(),
        }),
        other => Ok(other),
    }
}

/// `var` parsed as a `T`, or `default` when unset; `expected` names the kind in the error.
pub fn parse<T: std::str::FromStr>(
    src: &dyn Source,
    var: &'static str,
    default: T,
    expected: &str,
) -> Result<T, ConfigError> {
    match raw(src, var)? {
        None => Ok(default),
        Some(raw) => raw.trim().parse().map_err(|_| ConfigError {
            var,
            reason: format!("{raw:?} is not {expected}"),
        }),
    }
}

/// A whole number from `min` to `max` (inclusive), or `default` when unset.
pub fn number(
    src: &dyn Source,
    var: &'static str,
    default: u64,
    (min, max): (u64, u64),
) -> Result<u64, ConfigError> {
    let expected = format!("a whole number from {min} to {max}");
    let v = parse(src, var, default, &expected)?;
    if !(min..=max).contains(&v) {
        return Err(ConfigError {
            var,
            reason: format!("{v} is not {expected}"),
        });
    }
    Ok(v)
}

/// A count from `min` to `max`, as a `usize`.
pub fn count(
    src: &dyn Source,
    var: &'static str,
    default: u64,
    range: (u64, u64),
) -> Result<usize, ConfigError> {
    usize::try_from(number(src, var, default, range)?).map_err(|_| ConfigError {
        var,
        reason: "is too large for this machine".into(),
    })
}

/// `true/false`, `1/0`, `yes/no`, `on/off`.
pub fn boolean(src: &dyn Source, var: &'static str, default: bool) -> Result<bool, ConfigError> {
    match raw(src, var)?.map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) => match v.as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err(ConfigError {
                var,
                reason: format!("{v:?} is not a boolean (true/false)"),
            }),
        },
    }
}
