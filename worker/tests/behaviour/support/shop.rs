//! TODO

use serde_json::{json, Value};

pub fn order(order_id: &str, quantity: i64) -> Value {
    json!({"order_id": order_id, "customer": {"id": "c-1", "email": "ada@example.com"},
           "items": [{"sku": "A", "quantity": quantity, "unit_price_cents": 250},
                     {"sku": "B", "quantity": 1, "unit_price_cents": 1099}]})
}

/// A signature of a task parked in queue `held` (nothing consumes it), with a frozen id.
pub fn held(id: &str) -> Value {
    json!({"task": "echo", "args": [], "kwargs": {}, "immutable": false,
           "options": {"task_id": id, "queue": "held"}})
}

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

pub fn fixtures() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../common/celery/tests/fixtures/celery-vectors")
}
