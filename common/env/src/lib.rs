//! Configuration from environment variables, read once at start-up into typed values: the
//! generic half, which knows nothing about Redis or Celery.
//!
//! Map:
//! - this file — where values come from ([`Source`]: the process environment, or a map in
//!   tests), the error naming a variable ([`ConfigError`]), [`init`] (`.env`, then logging in
//!   `LOG_FORMAT`) and [`fail`] (exit status 2).
//! - `read` — one variable as a value: [`raw`] (an empty value is an error, not the default),
//!   [`parse`], [`number`] and [`count`] within bounds, [`boolean`].
//! - [`envfile`] — `.env`, from the working directory only, whole or not at all.
//!
//! A bad value stops the program with a message that names the variable; URLs are never echoed
//! (they may hold passwords). Each crate builds its own settings with these helpers
//! (`celery_redis::config::RedisConfig`, the worker's, the services').

#![warn(missing_docs, unreachable_pub)]

pub mod envfile;
mod read;

pub use read::{boolean, count, number, parse, raw};

/// Variables read here (`RUST_LOG` by the logger [`init`] starts).
pub const LOG_VARIABLES: &[&str] = &["RUST_LOG", "LOG_FORMAT"];

/// A variable with a value the program cannot use.
#[derive(Debug, thiserror::Error)]
#[error("invalid {var}: {reason}")]
pub struct ConfigError {
    /// The variable's name.
    pub var: &'static str,
    /// What is wrong with its value (never the value of a URL, which may hold a password).
    pub reason: String,
}

/// Where variables come from: the process environment, or any `Fn(&str) -> Option<String>`,
/// which is how tests pass a map:
///
/// ```
/// let vars = |var: &str| (var == "WORKERS").then(|| "4".to_owned());
/// assert_eq!(envconf::number(&vars, "WORKERS", 1, (1, 64)).unwrap(), 4);
/// assert_eq!(envconf::number(&vars, "OTHER", 1, (1, 64)).unwrap(), 1);
/// ```
pub trait Source {
    /// The value of `var`, `None` when it is not set.
    fn get(&self, var: &str) -> Option<String>;
}

/// The process environment (after `.env` has been loaded).
pub struct ProcessEnv;

impl Source for ProcessEnv {
    fn get(&self, var: &str) -> Option<String> {
        std::env::var(var).ok()
    }
}

impl<F: Fn(&str) -> Option<String>> Source for F {
    fn get(&self, var: &str) -> Option<String> {
        self(var)
    }
}

/// Loads `.env` from the working directory ([`envfile`]) and starts logging in the
/// `LOG_FORMAT`, stopping the program when either cannot be used; the first thing every `main`
/// does (the worker, its admin subcommands and both services).
pub fn init() {
    let loaded = envfile::load().unwrap_or_else(|e| fail(&e));
    observe::log::init(log_format(&ProcessEnv).unwrap_or_else(|e| fail(&e)));
    if let Some(count) = loaded {
        log::info!(
            "loaded {} ({count} variables; the environment's own win)",
            envfile::ENV_FILE
        );
    }
}

/// `LOG_FORMAT`: `text` (the default) or `json` (one object per line).
pub fn log_format(src: &dyn Source) -> Result<observe::log::Format, ConfigError> {
    match raw(src, "LOG_FORMAT")? {
        None => Ok(observe::log::Format::Text),
        Some(v) => v.parse().map_err(|reason| ConfigError {
            var: "LOG_FORMAT",
            reason,
        }),
    }
}

/// Stops the program on a configuration error: the message goes to stderr directly (whatever
/// `RUST_LOG` says) and the exit status is 2.
pub fn fail(e: &ConfigError) -> ! {
    eprintln!("error: {e}");
    std::process::exit(2);
}

#[cfg(test)]
mod tests {
    use super::*;
    use testkit::vars as src;

    /// Every variable read here is documented in `.env.example`, each binary's own one, and
    /// `docs/configuration.md`; and this file reads no variable missing from the list.
    #[test]
    fn every_variable_is_documented() {
        testkit::docs::assert_documented(
            LOG_VARIABLES,
            &[
                "worker/.env.example",
                "service-order/.env.example",
                "service-notification/.env.example",
            ],
        );
        testkit::docs::assert_reads_only(include_str!("lib.rs"), LOG_VARIABLES);
    }

    #[test]
    fn log_format_is_text_or_json() {
        use observe::log::Format;
        assert_eq!(log_format(&src(&[])).unwrap(), Format::Text);
        assert_eq!(
            log_format(&src(&[("LOG_FORMAT", "json")])).unwrap(),
            Format::Json
        );
        for bad in ["yaml", " ", "JSON lines"] {
            let err = log_format(&src(&[("LOG_FORMAT", bad)])).unwrap_err();
            assert_eq!(err.var, "LOG_FORMAT", "{bad}");
        }
    }
}
