//! Webhook delivery: one POST of JSON with an `Idempotency-Key`, only to destinations the
//! [`policy`] allows, never following a redirect. Timeouts, connection errors and 5xx are
//! transient (the task is retried the Celery way); a refused destination, a redirect and a 4xx
//! are final. The response body is never read.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

pub mod policy;

use policy::{Policy, Resolver};

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook destination refused: {0}")]
    Refused(String),
    #[error("receiver refused the notification with HTTP {0}")]
    Rejected(u16),
    #[error("receiver answered HTTP {0} (a redirect, not followed)")]
    Redirected(u16),
    #[error("webhook not reachable: {0}")]
    Transient(String),
}

impl WebhookError {
    /// Whether another attempt may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, WebhookError::Transient(_))
    }
}

/// The webhook client: one connection pool, the destination policy, the time limit.
pub struct Webhooks {
    http: reqwest::Client,
    policy: Arc<Policy>,
    timeout: Duration,
}

impl Webhooks {
    pub fn new(policy: Policy, timeout: Duration) -> Result<Self, reqwest::Error> {
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
        })
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
            Err(e) => Err(WebhookError::Transient(e.to_string())),
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
