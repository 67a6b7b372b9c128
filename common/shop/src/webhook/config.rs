//! The webhook client's settings (`WEBHOOK_TIMEOUT_MS`, `WEBHOOK_CONCURRENCY`, `WEBHOOK_ALLOW`),
//! read with the helpers of `celery_redis::config` by whoever registers the shop's tasks (the
//! worker binary), so the generic worker's own settings name no webhook.

use std::time::Duration;

use envconf::{count, number, ConfigError, Source};

use super::policy::Policy;

/// Variables the webhook client reads (the worker binary reads them for it).
pub const WEBHOOK_VARIABLES: &[&str] =
    &["WEBHOOK_TIMEOUT_MS", "WEBHOOK_CONCURRENCY", "WEBHOOK_ALLOW"];

/// The webhook client's settings: what [`super::Webhooks::new`] takes.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// `WEBHOOK_TIMEOUT_MS`: one webhook POST attempt (default 5000).
    pub timeout: Duration,
    /// `WEBHOOK_CONCURRENCY`: webhook deliveries at once (default half of `WORKER_CONCURRENCY`,
    /// at least 1; at most `WORKER_CONCURRENCY`), so receivers that do not answer cannot hold
    /// every slot; a notification over it waits in the schedule, not in a slot.
    pub concurrency: usize,
    /// `WEBHOOK_ALLOW`: destinations allowed besides public addresses (hosts, CIDRs).
    pub policy: Policy,
}

impl WebhookConfig {
    /// Reads the settings from `src` for a worker that runs `worker_concurrency` tasks at once
    /// (its `WORKER_CONCURRENCY`, which bounds `WEBHOOK_CONCURRENCY` and sets its default).
    pub fn from_source(src: &dyn Source, worker_concurrency: usize) -> Result<Self, ConfigError> {
        Ok(WebhookConfig {
            concurrency: concurrency(src, worker_concurrency)?,
            timeout: Duration::from_millis(number(src, "WEBHOOK_TIMEOUT_MS", 5000, (1, 600_000))?),
            policy: Policy::from_source(src)?,
        })
    }
}

/// `WEBHOOK_CONCURRENCY`, within 1 and `worker_concurrency` (default: half of it, at least 1).
fn concurrency(src: &dyn Source, worker_concurrency: usize) -> Result<usize, ConfigError> {
    let max = u64::try_from(worker_concurrency).unwrap_or(u64::MAX);
    count(src, "WEBHOOK_CONCURRENCY", (max / 2).max(1), (1, max)).map_err(|e| ConfigError {
        var: e.var,
        reason: format!("{} (at most WORKER_CONCURRENCY)", e.reason),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use testkit::vars as src;

    #[test]
    fn every_variable_is_documented() {
        testkit::docs::assert_documented(WEBHOOK_VARIABLES, &["worker/.env.example"]);
        testkit::docs::assert_reads_only(include_str!("config.rs"), WEBHOOK_VARIABLES);
        testkit::docs::assert_reads_only(include_str!("policy.rs"), WEBHOOK_VARIABLES);
    }

    #[test]
    fn defaults() {
        let c = WebhookConfig::from_source(&src(&[]), 8).unwrap();
        assert_eq!(c.timeout, Duration::from_millis(5000));
        assert_eq!(c.policy, Policy::default());
        let c = WebhookConfig::from_source(&src(&[("WEBHOOK_TIMEOUT_MS", "250")]), 8).unwrap();
        assert_eq!(c.timeout, Duration::from_millis(250));
    }

    #[test]
    fn webhooks_take_half_the_slots_unless_told() {
        let c = |pairs: &[(&str, &str)], n| WebhookConfig::from_source(&src(pairs), n);
        let with = |n| c(&[], n).unwrap().concurrency;
        assert_eq!((with(1), with(2), with(5), with(8)), (1, 1, 2, 4));
        let set = c(&[("WEBHOOK_CONCURRENCY", "8")], 8).unwrap();
        assert_eq!(set.concurrency, 8);
        let over = c(&[("WEBHOOK_CONCURRENCY", "9")], 8).unwrap_err();
        assert_eq!(over.var, "WEBHOOK_CONCURRENCY");
        assert_eq!(
            over.reason,
            "9 is not a whole number from 1 to 8 (at most WORKER_CONCURRENCY)"
        );
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (var, value) in [
            ("WEBHOOK_TIMEOUT_MS", "0"),
            ("WEBHOOK_TIMEOUT_MS", "600001"),
            ("WEBHOOK_CONCURRENCY", "0"),
            ("WEBHOOK_CONCURRENCY", "half"),
            ("WEBHOOK_ALLOW", "10.0.0.0/33"),
        ] {
            let err = WebhookConfig::from_source(&src(&[(var, value)]), 4).unwrap_err();
            assert_eq!(err.var, var, "{value}");
        }
    }
}
