//! Notification webhooks as `send_notification` posts them: receivers that never answer cannot
//! hold every slot; internal addresses fail at once without a connection; a redirect is a
//! final failure, not followed. (Webhook retries are in `retries`.)

use crate::support::shop::counting_listener;
use crate::support::shop::{order, webhook_note};
use crate::support::{start, WAIT};
use celery_redis::result::TaskState;
use std::time::Duration;
use testkit::WebhookReceiver;

// Issue 19, item 5: webhook receivers that never answer held every worker slot: 8 such
// notifications delayed 20 orders by 90 s. Now at most `WEBHOOK_CONCURRENCY` deliveries (by
// default half the slots) wait on receivers; a notification over the limit goes back to the
// schedule for a moment instead of taking a slot.
#[tokio::test]
async fn webhooks_that_never_answer_cannot_hold_every_slot() {
    const SLOTS: usize = 4;
    const TIMEOUT: Duration = Duration::from_secs(10);
    let mut hook = WebhookReceiver::hanging().await;
    let w = start(&[
        ("WORKER_CONCURRENCY", "4"),
        ("WEBHOOK_TIMEOUT_MS", "10000"),
        ("TASK_MAX_RETRIES", "0"),
    ])
    .await;
    shop::inventory::set_stock(&w.conn, "A", 100).await.unwrap();
    shop::inventory::set_stock(&w.conn, "B", 100).await.unwrap();
    let mut notes = Vec::new();
    for i in 0..SLOTS {
        let note = webhook_note(&format!("n-hung-{i}"), &hook.url);
        notes.push(w.send("send_notification", note).await);
    }
    // The first ones are stuck at the receiver; the orders queue behind them all.
    hook.next().await;
    let mut orders = Vec::new();
    for i in 0..SLOTS {
        orders.push(
            w.send("process_order", order(&format!("o-busy-{i}"), 1))
                .await,
        );
    }
    for o in &orders {
        let meta = w
            .results
            .wait(&o.id, TIMEOUT / 4)
            .await
            .expect("an order waited for the hung webhooks");
        assert_eq!(meta.status, TaskState::Success, "{meta:?}");
    }
    // Each hung notification ends as the webhook timeout says (no retry allowed here).
    for n in &notes {
        let meta = w.results.wait(&n.id, WAIT).await.unwrap();
        assert_eq!(meta.status, TaskState::Failure, "{meta:?}");
        let exc = meta.exception().unwrap();
        assert!(
            exc.message().contains("did not answer within 10000 ms"),
            "{}",
            exc.message()
        );
    }
    let mut posted = 1;
    while hook.hits.try_recv().is_ok() {
        posted += 1;
    }
    assert_eq!(posted, SLOTS, "each hung notification was POSTed once");
    w.stop().await.all_acknowledged();
}

#[tokio::test]
async fn webhooks_to_internal_addresses_fail_at_once_without_a_connection() {
    // Nothing but a documentation address is allowed: loopback is refused as by default.
    let w = start(&[("WEBHOOK_ALLOW", "192.0.2.1")]).await;
    let (port, accepted) = counting_listener().await;
    let urls = [
        format!("http://127.0.0.1:{port}/hook"),
        format!("http://localhost:{port}/hook"),
        format!("http://[::1]:{port}/hook"),
        format!("http://user:secret@127.0.0.1:{port}/hook"),
        "http://169.254.169.254/latest/meta-data".to_owned(),
        "http://10.0.0.1/hook".to_owned(),
        "http://192.168.1.1/hook".to_owned(),
    ];
    for (i, url) in urls.iter().enumerate() {
        let msg = w
            .send(
                "send_notification",
                webhook_note(&format!("n-ssrf-{i}"), url),
            )
            .await;
        let meta = w.result(&msg.id).await;
        assert_eq!(meta.status, TaskState::Failure, "{url}");
        let exc = meta.exception().unwrap();
        assert!(
            exc.message().contains("refused"),
            "{url}: {}",
            exc.message()
        );
        assert!(!exc.message().contains("secret"), "{}", exc.message());
    }
    assert_eq!(
        accepted.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "no connection was made"
    );
    w.stop().await.all_acknowledged();
}

#[tokio::test]
async fn a_redirect_is_a_final_failure_and_is_not_followed() {
    let w = start(&[]).await;
    let (elsewhere, followed) = counting_listener().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = socket.read(&mut buf).await;
            let reply = format!(
                "HTTP/1.1 307 Temporary Redirect\r\nlocation: http://127.0.0.1:{elsewhere}/hook\r\ncontent-length: 0\r\n\r\n"
            );
            let _ = socket.write_all(reply.as_bytes()).await;
        }
    });
    let msg = w
        .send("send_notification", webhook_note("n-redirect", &url))
        .await;
    let meta = w.result(&msg.id).await;
    assert_eq!(meta.status, TaskState::Failure);
    assert!(meta.exception().unwrap().message().contains("307"));
    assert_eq!(followed.load(std::sync::atomic::Ordering::SeqCst), 0);
    w.stop().await.all_acknowledged();
}
