//! A local HTTP server standing in for a webhook receiver.

use crate::STARTUP;

/// One request a [`WebhookReceiver`] got.
#[derive(Debug, Clone)]
pub struct Hit {
    /// The request's `Idempotency-Key` header.
    pub idempotency_key: Option<String>,
    /// The JSON body it posted.
    pub body: serde_json::Value,
}

/// A local HTTP server standing in for a webhook: answers the scripted statuses in order (then
/// 200), or never ([`WebhookReceiver::hanging`]), and reports every request on a channel the
/// test awaits.
pub struct WebhookReceiver {
    /// The URL to give as a notification's `url`.
    pub url: String,
    /// Every request received, in order.
    pub hits: tokio::sync::mpsc::UnboundedReceiver<Hit>,
    _stop: celery_redis::shutdown::Trigger,
}

impl WebhookReceiver {
    /// A receiver answering `statuses` in order, then 200.
    pub async fn start(statuses: Vec<u16>) -> Self {
        Self::serve(statuses, false).await
    }

    /// A receiver that reads each request whole, reports it, and never answers (the connection
    /// stays open until the client gives up).
    pub async fn hanging() -> Self {
        Self::serve(Vec::new(), true).await
    }

    async fn serve(statuses: Vec<u16>, hang: bool) -> Self {
        use std::sync::{Arc, Mutex};
        use warp::Filter;
        let (tx, hits) = tokio::sync::mpsc::unbounded_channel();
        let script = Arc::new(Mutex::new(statuses.into_iter()));
        let route = warp::post()
            .and(warp::path!("hook"))
            .and(warp::header::optional::<String>("idempotency-key"))
            .and(warp::body::json())
            .then(move |key: Option<String>, body: serde_json::Value| {
                let _ = tx.send(Hit {
                    idempotency_key: key,
                    body,
                });
                let status = script.lock().ok().and_then(|mut s| s.next()).unwrap_or(200);
                let status =
                    warp::http::StatusCode::from_u16(status).unwrap_or(warp::http::StatusCode::OK);
                async move {
                    if hang {
                        std::future::pending::<()>().await;
                    }
                    warp::reply::with_status("ok", status)
                }
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let (trigger, shutdown) = celery_redis::shutdown::channel();
        let routes = route.recover(http_kit::rejection::recover);
        tokio::spawn(http_kit::serve::serve(
            listener,
            routes,
            http_kit::serve::Limits::default(),
            shutdown,
        ));
        WebhookReceiver {
            url,
            hits,
            _stop: trigger,
        }
    }

    /// The next request, waiting up to [`STARTUP`].
    pub async fn next(&mut self) -> Hit {
        tokio::time::timeout(STARTUP, self.hits.recv())
            .await
            .expect("a webhook request in time")
            .expect("receiver running")
    }
}
