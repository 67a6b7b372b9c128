//! Webhook delivery: one POST of JSON with an `Idempotency-Key`. Timeouts, connection errors
//! and 5xx are transient (the task is retried the Celery way); 4xx is final.

use std::time::Duration;

use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("receiver refused the notification with HTTP {0}")]
    Rejected(u16),
    #[error("webhook not reachable: {0}")]
    Transient(String),
}

/// POSTs `payload` to `url` once. The same key goes with every attempt of the same
/// notification, so the receiver can drop repeats.
pub async fn post(
    http: &reqwest::Client,
    timeout: Duration,
    url: &str,
    idempotency_key: &str,
    payload: &Value,
) -> Result<(), WebhookError> {
    let sent = http
        .post(url)
        .timeout(timeout)
        .header("Idempotency-Key", idempotency_key)
        .json(payload)
        .send()
        .await;
    match sent {
        Ok(resp) if resp.status().is_success() => Ok(()),
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
