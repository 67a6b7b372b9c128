//! The shop's messages as the tests send them (orders and notifications), the
//! captured Python producers' fixtures, and webhook receivers that never answer.

use serde_json::{json, Map, Value};

/// An order of `quantity` of `A` and one `B`.
pub fn order(order_id: &str, quantity: i64) -> Value {
    json!({"order_id": order_id, "customer": {"id": "c-1", "email": "ada@example.com"},
           "items": [{"sku": "A", "quantity": quantity, "unit_price_cents": 250},
                     {"sku": "B", "quantity": 1, "unit_price_cents": 1099}]})
}

/// A `send_notification` of the webhook channel to `url`.
pub fn webhook_note(id: &str, url: &str) -> Value {
    json!({"notification_id": id, "recipient": "ada@example.com", "channel": "webhook",
           "subject": "s", "body": "b", "url": url})
}

/// A webhook that accepts the connection and never answers; resolves the receiver on accept.
pub async fn silent_webhook() -> (String, tokio::sync::oneshot::Receiver<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (accepted_tx, accepted) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let _ = accepted_tx.send(());
        let _hold = socket;
        std::future::pending::<()>().await;
    });
    (url, accepted)
}

/// The messages and results captured from Python Celery 5.7 and 5.4.
pub fn fixtures() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../common/celery/tests/fixtures/celery-vectors")
}

/// A listener that counts the connections it accepts (it never answers).
pub async fn counting_listener() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::mem::forget(socket);
        }
    });
    (port, count)
}

/// An order of one `A` as kwargs.
pub fn small_order(order_id: &str) -> Map<String, Value> {
    json!({"order_id": order_id, "customer": {"id": "c-1", "email": "ada@example.com"},
           "items": [{"sku": "A", "quantity": 1, "unit_price_cents": 250}]})
    .as_object()
    .cloned()
    .unwrap_or_default()
}
