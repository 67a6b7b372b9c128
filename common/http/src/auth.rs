//! Who may call the API: bearer tokens from `API_TOKENS` (several, for rotation). A service
//! bound to a non-loopback address refuses to start without tokens unless `API_PUBLIC=true`
//! says the API is meant to be open. Health routes stay open for probes.

use std::net::SocketAddr;
use std::sync::Arc;

use envconf::{boolean, raw, ConfigError, Source};
use warp::http::StatusCode;
use warp::{Filter, Rejection};

use crate::error::ApiError;

/// Shortest token accepted: a guessable token is no boundary.
pub const MIN_TOKEN_LEN: usize = 16;

/// The accepted bearer tokens; none means the API is open (loopback, or `API_PUBLIC=true`).
/// `Debug` shows how many there are, never a token.
#[derive(Clone, Default)]
pub struct Auth {
    tokens: Vec<String>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Auth({} token(s))", self.tokens.len())
    }
}

impl Auth {
    /// Reads `API_TOKENS` (comma-separated, each at least 16 characters) and `API_PUBLIC`.
    pub fn from_source(
        src: &dyn Source,
        bind: SocketAddr,
        bind_var: &str,
    ) -> Result<Self, ConfigError> {
        let tokens: Vec<String> = raw(src, "API_TOKENS")?
            .map(|v| v.split(',').map(|t| t.trim().to_owned()).collect())
            .unwrap_or_default();
        if tokens
            .iter()
            .any(|t| t.len() < MIN_TOKEN_LEN || !t.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(ConfigError {
                var: "API_TOKENS",
                reason: format!("each token must be at least {MIN_TOKEN_LEN} printable characters without spaces"),
            });
        }
        let public = boolean(src, "API_PUBLIC", false)?;
        if tokens.is_empty() && !public && !bind.ip().is_loopback() {
            return Err(ConfigError {
                var: "API_TOKENS",
                reason: format!("{bind_var} ({bind}) is not a loopback address: set API_TOKENS (bearer tokens, comma-separated), or API_PUBLIC=true if anyone who can reach it may use the API"),
            });
        }
        Ok(Auth { tokens })
    }

    /// An API that accepts exactly these tokens.
    pub fn with_tokens(tokens: Vec<String>) -> Self {
        Auth { tokens }
    }

    /// Whether a request with this `Authorization` header may pass.
    pub fn allows(&self, header: Option<&str>) -> bool {
        if self.tokens.is_empty() {
            return true;
        }
        let Some(given) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
            return false;
        };
        // Compare with every token, each in constant time, so timing tells nothing.
        self.tokens.iter().fold(false, |ok, t| {
            ok | constant_time_eq(t.as_bytes(), given.as_bytes())
        })
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Passes requests that carry an accepted bearer token; the others get 401.
pub fn required(auth: Arc<Auth>) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    crate::header::optional_text("Authorization")
        .and_then(move |header: Option<String>| {
            let auth = auth.clone();
            async move {
                if auth.allows(header.as_deref()) {
                    Ok(())
                } else {
                    Err(ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "unauthorized",
                        "send Authorization: Bearer <token>",
                    )
                    .reject())
                }
            }
        })
        .untuple_one()
}

#[cfg(test)]
mod tests {
    use super::*;
    use testkit::vars;

    const LOOPBACK: ([u8; 4], u16) = ([127, 0, 0, 1], 8080);
    const ANY: ([u8; 4], u16) = ([0, 0, 0, 0], 8080);

    #[test]
    fn an_exposed_api_needs_tokens_or_an_explicit_public_flag() {
        let err = Auth::from_source(&vars(&[]), ANY.into(), "ORDER_BIND").unwrap_err();
        assert_eq!(err.var, "API_TOKENS");
        assert!(Auth::from_source(&vars(&[]), LOOPBACK.into(), "ORDER_BIND").is_ok());
        let public = vars(&[("API_PUBLIC", "true")]);
        assert!(Auth::from_source(&public, ANY.into(), "ORDER_BIND").is_ok());
        let short = vars(&[("API_TOKENS", "short")]);
        assert_eq!(
            Auth::from_source(&short, ANY.into(), "ORDER_BIND")
                .unwrap_err()
                .var,
            "API_TOKENS"
        );
    }

    #[test]
    fn tokens_rotate_and_never_show() {
        let src = vars(&[("API_TOKENS", "old-token-0123456789,new-token-0123456789")]);
        let auth = Auth::from_source(&src, ANY.into(), "ORDER_BIND").unwrap();
        assert!(auth.allows(Some("Bearer old-token-0123456789")));
        assert!(auth.allows(Some("Bearer new-token-0123456789")));
        assert!(!auth.allows(Some("Bearer new-token-012345678")));
        assert!(!auth.allows(Some("new-token-0123456789")));
        assert!(!auth.allows(None));
        assert!(!format!("{auth:?}").contains("token-0"));
    }
}
