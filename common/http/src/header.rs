//! Request headers read as text. HTTP lets a header value carry bytes past ASCII; one that is not
//! visible ASCII is the client's mistake: a 400 `invalid_header` in the JSON error shape naming
//! the header (never its value, which may be a credential), not warp's `InvalidHeader`, which
//! would rank below the other routes' rejections.

use futures_util::future;
use warp::http::HeaderValue;
use warp::{Filter, Rejection};

use crate::error::ApiError;

/// The value of the header `name` (looked up case-insensitively; also how the error names it)
/// as text, `None` when absent.
pub fn optional_text(
    name: &'static str,
) -> impl Filter<Extract = (Option<String>,), Error = Rejection> + Clone {
    warp::header::value(name)
        .map(Some)
        .or(warp::any().map(|| None))
        .unify()
        .and_then(move |value: Option<HeaderValue>| future::ready(text(name, value)))
}

fn text(name: &'static str, value: Option<HeaderValue>) -> Result<Option<String>, Rejection> {
    match value {
        None => Ok(None),
        Some(v) => match v.to_str() {
            Ok(s) => Ok(Some(s.to_owned())),
            Err(_) => Err(ApiError::invalid_header(name).reject()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bytes_past_ascii_are_a_400_naming_the_header_and_text_passes() {
        let filter = optional_text("Content-Type")
            .map(|v: Option<String>| v.unwrap_or_else(|| "none".into()))
            .recover(crate::rejection::recover);
        let reply = |value: Option<&[u8]>| {
            let mut req = warp::test::request();
            if let Some(v) = value {
                req = req.header("content-type", HeaderValue::from_bytes(v).unwrap());
            }
            req.reply(&filter)
        };
        let resp = reply(Some(b"text/plain; x=\xe2\x82\xac")).await;
        assert_eq!(resp.status(), 400);
        let body: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
        assert_eq!(body["error"]["code"], "invalid_header");
        assert!(!body.to_string().contains('\u{20ac}'), "{body}");
        assert_eq!(
            reply(Some(b"application/json")).await.body(),
            "application/json"
        );
        assert_eq!(reply(None).await.body(), "none");
    }

    #[tokio::test]
    async fn warps_own_header_rejection_is_a_400_too() {
        let filter = warp::header::optional::<String>("x-any")
            .map(|_| "ok")
            .recover(crate::rejection::recover);
        let resp = warp::test::request()
            .header("x-any", HeaderValue::from_bytes(b"\xff").unwrap())
            .reply(&filter)
            .await;
        assert_eq!(resp.status(), 400);
        let body: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
        assert_eq!(body["error"]["code"], "invalid_header");
    }
}
