//! Webhook delivery: POST JSON with an `Idempotency-Key`; timeouts, connection errors and 5xx are
//! retried with exponential backoff and full jitter, 4xx is final.

use std::time::Duration;

use serde_json::Value;

/// Settings for one delivery.
#[derive(Debug, Clone)]
pub struct Policy {
    pub timeout: Duration,
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("receiver answered {0}")]
    Rejected(u16),
    #[error("{0}")]
    GaveUp(String),
}

/// POSTs `payload` to `url`, retrying transient failures. The same key goes with every attempt,
/// so the receiver can drop repeats.
pub async fn post(
    http: &reqwest::Client,
    policy: &Policy,
    url: &str,
    idempotency_key: &str,
    payload: &Value,
) -> Result<(), WebhookError> {
    let mut last = String::new();
    for attempt in 0..policy.max_attempts {
        if attempt > 0 {
            tokio::time::sleep(backoff(policy, attempt)).await;
        }
        let sent = http
            .post(url)
            .timeout(policy.timeout)
            .header("Idempotency-Key", idempotency_key)
            .json(payload)
            .send()
            .await;
        match sent {
            Ok(resp) if resp.status().is_success() => return Ok(()),
            Ok(resp) if resp.status().is_client_error() => {
                return Err(WebhookError::Rejected(resp.status().as_u16()))
            }
            Ok(resp) => last = format!("HTTP {}", resp.status().as_u16()),
            Err(e) => last = format!("{e}"),
        }
        log::warn!("webhook {url} attempt {} failed: {last}", attempt + 1);
    }
    Err(WebhookError::GaveUp(format!(
        "{} attempts, last: {last}",
        policy.max_attempts
    )))
}

/// Full jitter: a random delay between 0 and min(max, base * 2^attempt).
fn backoff(policy: &Policy, attempt: u32) -> Duration {
    let cap = policy
        .base_delay
        .saturating_mul(2u32.saturating_pow(attempt))
        .min(policy.max_delay);
    cap.mul_f64(fastrand::f64())
}
