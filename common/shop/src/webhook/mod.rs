//! Webhook delivery: one POST of JSON with an `Idempotency-Key`, only to destinations the
//! [`policy`] allows, never following a redirect, and at most `WEBHOOK_CONCURRENCY` at once
//! ([`Webhooks::place`]; a notification that finds none free waits [`Webhooks::busy_delay`] in
//! the schedule, not in a slot). Timeouts, connection errors and 5xx are transient (the task is
//! retried the Celery way); a refused destination, a redirect and a 4xx are final. The response
//! body is never read. Its settings are [`config::WebhookConfig`].

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub mod config;
pub mod policy;

use policy::{Policy, Resolver};

/// Why a webhook delivery did not succeed; [`WebhookError::is_transient`] says which are retried.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The policy refused the destination (no connection made): final.
    #[error("webhook destination refused: {0}")]
    Refused(String),
    /// The receiver answered a 4xx: final.
    #[error("receiver refused the notification with HTTP {0}")]
    Rejected(u16),
    /// The receiver answered a redirect, which is not followed: final.
    #[error("receiver answered HTTP {0} (a redirect, not followed)")]
    Redirected(u16),
    /// The receiver could not be reached or answered a 5xx: retried.
    #[error("webhook not reachable: {0}")]
    Transient(String),
    /// The receiver did not answer within the timeout (in ms): retried.
    #[error("webhook receiver did not answer within {0} ms")]
    TimedOut(u128),
}

impl WebhookError {
    /// Whether another attempt may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, WebhookError::Transient(_) | WebhookError::TimedOut(_))
    }
}

/// Longest wait in the schedule of a notification that found every webhook place taken (it
/// waits between half of this and this, or of `WEBHOOK_TIMEOUT_MS` when shorter).
const MAX_BUSY_DELAY: Duration = Duration::from_secs(1);

/// The webhook client: one connection pool, the destination policy, the time limit, the places.
pub struct Webhooks {
    http: reqwest::Client,
    policy: Arc<Policy>,
    timeout: Duration,
    places: Arc<Semaphore>,
}

impl Webhooks {
    /// A client for at most `concurrency` deliveries at once, each within `timeout`.
    pub fn new(
        policy: Policy,
        timeout: Duration,
        concurrency: usize,
    ) -> Result<Self, reqwest::Error> {
        let policy = Arc::new(policy);
        let http = reqwest::Client::builder()
            .dns_resolver(Resolver(policy.clone()))
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would resolve names itself, past the policy.
            .no_proxy()
            .build()?;
        Ok(Webhooks {
            http,
            policy,
            timeout,
            places: Arc::new(Semaphore::new(concurrency.max(1))),
        })
    }

    /// One of the `WEBHOOK_CONCURRENCY` places, held by a delivery until it ends; `None` when
    /// all are taken (the caller does not wait for one).
    pub fn place(&self) -> Option<OwnedSemaphorePermit> {
        self.places.clone().try_acquire_owned().ok()
    }

    /// How long a notification that found no place waits in the schedule: long enough not to
    /// spin while receivers hang, short enough to follow a place that frees (jittered, so the
    /// ones put back together do not all come back together).
    pub fn busy_delay(&self) -> Duration {
        self.timeout
            .min(MAX_BUSY_DELAY)
            .mul_f64(0.5 + fastrand::f64() / 2.0)
    }

    /// POSTs `payload` to `url` once. The same key goes with every attempt of the same
    /// notification, so the receiver can drop repeats.
    pub async fn post(
        &self,
        url: &str,
        idempotency_key: &str,
        payload: &Value,
    ) -> Result<(), WebhookError> {
        let parsed = reqwest::Url::parse(url).map_err(|e| WebhookError::Refused(e.to_string()))?;
        self.policy
            .check_url(&parsed)
            .map_err(WebhookError::Refused)?;
        self.check_resolves(&parsed).await?;
        let sent = self
            .http
            .post(parsed)
            .timeout(self.timeout)
            .header("Idempotency-Key", idempotency_key)
            .json(payload)
            .send()
            .await;
        match sent {
            Ok(resp) if resp.status().is_success() => Ok(()),
            Ok(resp) if resp.status().is_redirection() => {
                Err(WebhookError::Redirected(resp.status().as_u16()))
            }
            Ok(resp) if resp.status().is_client_error() => {
                Err(WebhookError::Rejected(resp.status().as_u16()))
            }
            Ok(resp) => Err(WebhookError::Transient(format!(
                "HTTP {}",
                resp.status().as_u16()
            ))),
            Err(e) if e.is_timeout() => Err(WebhookError::TimedOut(self.timeout.as_millis())),
            // reqwest's text names the URL, whose path may be a secret (Slack's, Teams').
            Err(e) => Err(WebhookError::Transient(e.without_url().to_string())),
        }
    }

    /// A name that resolves only to refused addresses is a final failure (the client's own
    /// resolver checks again, for the addresses it connects to).
    async fn check_resolves(&self, url: &reqwest::Url) -> Result<(), WebhookError> {
        let Some(host) = url.host_str() else {
            return Ok(());
        };
        if host.starts_with('[') || host.parse::<std::net::IpAddr>().is_ok() {
            return Ok(()); // an address literal, checked by `check_url`
        }
        let port = url.port_or_known_default().unwrap_or(80);
        let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| WebhookError::Transient(format!("cannot resolve {host}: {e}")))?
            .collect();
        if !addrs.iter().any(|a| self.policy.allows(host, a.ip())) {
            return Err(WebhookError::Refused(format!(
                "{host} resolves only to addresses that are not allowed (WEBHOOK_ALLOW)"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a failed delivery says (it is stored in the task's FAILURE and logged) never
    /// names the URL's path, which may be a secret.
    #[tokio::test]
    async fn errors_do_not_name_the_urls_secret_path() {
        let policy =
            Policy::from_source(&testkit::vars(&[("WEBHOOK_ALLOW", "127.0.0.1")])).unwrap();
        let hooks = Webhooks::new(policy, Duration::from_secs(5), 1).unwrap();
        // A port nobody listens on: the connection is refused.
        let port = testkit::free_port();
        let url = format!("http://127.0.0.1:{port}/services/T0/B0/s3cr3t");
        let err = hooks
            .post(&url, "n-1", &serde_json::json!({}))
            .await
            .unwrap_err();
        assert!(err.is_transient(), "{err}");
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
    }
}
