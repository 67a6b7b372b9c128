//! Whether the Redis a connection reaches may evict keys, asked again after every
//! (re)connection before work is taken or accepted on it, and failing closed: a process whose
//! Redis cannot be confirmed to keep every key (`maxmemory_policy:noeviction`, from
//! `INFO memory`, which managed Redis offerings that disable `CONFIG` still answer) takes and
//! accepts no work until it can, unless `ALLOW_EVICTION=true`. The same answer says whether the
//! server is Redis 7 or later, which the scripts' `#!lua` flags need.
//!
//! [`crate::conn::Conn`] counts its (re)connections and holds a [`Guard`];
//! [`crate::conn::Conn::confirm`] asks once per connection. Queue lists, results and
//! idempotency keys silently vanishing is what an evicting policy risks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::{RedisError, RedisResult};

/// The oldest Redis whose scripts may carry flags (`#!lua flags=...`).
pub const MIN_MAJOR_VERSION: u32 = 7;

/// Longest wait for the server's answer.
pub const ASK_WAIT: Duration = Duration::from_secs(2);

/// What a server says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// `redis_version` (Valkey reports the Redis version it is compatible with).
    pub version: String,
    /// `maxmemory_policy`, when `INFO memory` has it.
    pub policy: Option<String>,
}

/// Asks `INFO server` and `INFO memory` (one round trip).
pub async fn ask<C: ConnectionLike + Send>(conn: &mut C) -> RedisResult<Server> {
    let (server, memory): (String, String) = redis::pipe()
        .cmd("INFO")
        .arg("server")
        .cmd("INFO")
        .arg("memory")
        .query_async(conn)
        .await?;
    Ok(Server {
        version: field(&server, "redis_version")
            .unwrap_or_default()
            .to_owned(),
        policy: field(&memory, "maxmemory_policy").map(str::to_owned),
    })
}

/// The value of `name:value` in an `INFO` text.
fn field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines().find_map(|line| {
        let (key, value) = line.trim_end().split_once(':')?;
        (key == name).then_some(value)
    })
}

/// Why a connection may not be used for work.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Unconfirmed {
    /// The server answered, and it is not one to work with: the variable to change, and why
    /// (for people).
    #[error("{reason}")]
    Refused {
        /// The variable naming the URL (`REDIS_URL`, `RESULT_BACKEND_URL`).
        var: &'static str,
        /// What is wrong and what to change.
        reason: String,
    },
    /// The server could not be asked.
    #[error("cannot confirm the maxmemory-policy of {var} ({error}): taking and accepting no work until it can be")]
    Unasked {
        /// The variable naming the URL.
        var: &'static str,
        /// Why the server could not be asked.
        error: RedisError,
    },
}

impl From<Unconfirmed> for RedisError {
    fn from(e: Unconfirmed) -> Self {
        match e {
            Unconfirmed::Unasked { error, .. } => error,
            refused => RedisError::from((
                redis::ErrorKind::Client,
                "redis not confirmed",
                refused.to_string(),
            )),
        }
    }
}

/// One connection's check: what it allows, and which of its connections was confirmed.
#[derive(Debug)]
pub struct Guard {
    /// The variable naming the URL, in messages.
    var: &'static str,
    /// `ALLOW_EVICTION=true`.
    allow_eviction: bool,
    /// 1 + the connection epoch last confirmed (0: none yet).
    confirmed: AtomicU64,
    /// Held while asking, so concurrent callers ask once.
    asking: tokio::sync::Mutex<()>,
    /// The last reason logged, so that a refusal met on every fetch is logged once.
    logged: std::sync::Mutex<Option<String>>,
}

impl Guard {
    /// The check of the server named by `var`; `allow_eviction` is `ALLOW_EVICTION`.
    pub fn new(var: &'static str, allow_eviction: bool) -> Self {
        Guard {
            var,
            allow_eviction,
            confirmed: AtomicU64::new(0),
            asking: tokio::sync::Mutex::new(()),
            logged: std::sync::Mutex::new(None),
        }
    }

    /// Whether the connection of `epoch` was confirmed (no call to Redis).
    pub fn is_confirmed(&self, epoch: u64) -> bool {
        self.confirmed.load(Ordering::Acquire) == epoch.wrapping_add(1)
    }

    /// Ok when the connection of `epoch` is confirmed, asking the server (through `conn`) if
    /// that has not been done for this epoch yet.
    pub async fn confirm<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        epoch: u64,
    ) -> Result<(), Unconfirmed> {
        if self.is_confirmed(epoch) {
            return Ok(());
        }
        let _asking = self.asking.lock().await;
        if self.is_confirmed(epoch) {
            return Ok(());
        }
        let verdict = match tokio::time::timeout(ASK_WAIT, ask(conn)).await {
            Ok(Ok(server)) => self.judge(&server),
            Ok(Err(error)) if self.allow_eviction => {
                self.note(&format!("could not read the maxmemory-policy of {} ({error}); ALLOW_EVICTION=true: working anyway", self.var));
                Ok(())
            }
            Ok(Err(error)) => Err(Unconfirmed::Unasked {
                var: self.var,
                error,
            }),
            Err(_) => Err(Unconfirmed::Unasked {
                var: self.var,
                error: RedisError::from((redis::ErrorKind::Io, "redis did not answer in time")),
            }),
        };
        match &verdict {
            Ok(()) => {
                self.confirmed
                    .store(epoch.wrapping_add(1), Ordering::Release);
                self.note_confirmed();
            }
            Err(e) => self.note(&e.to_string()),
        }
        verdict
    }

    /// Whether `server` is one to work with.
    pub fn judge(&self, server: &Server) -> Result<(), Unconfirmed> {
        let major = server
            .version
            .split('.')
            .next()
            .and_then(|m| m.parse::<u32>().ok());
        if major.is_none_or(|m| m < MIN_MAJOR_VERSION) {
            return Err(Unconfirmed::Refused {
                var: self.var,
                reason: format!(
                    "the Redis of {} is version {:?}; this fleet needs Redis {MIN_MAJOR_VERSION}.0 or later (its scripts carry flags)",
                    self.var, server.version
                ),
            });
        }
        match server.policy.as_deref() {
            Some("noeviction") => Ok(()),
            _ if self.allow_eviction => Ok(()),
            Some(policy) => Err(Unconfirmed::Refused {
                var: "ALLOW_EVICTION",
                reason: format!(
                    "the Redis of {} has maxmemory-policy {policy}, which may silently drop queued tasks, results and idempotency keys: set maxmemory-policy noeviction, or ALLOW_EVICTION=true to work anyway",
                    self.var
                ),
            }),
            None => Err(Unconfirmed::Refused {
                var: "ALLOW_EVICTION",
                reason: format!(
                    "the Redis of {} does not say its maxmemory-policy in INFO memory: set ALLOW_EVICTION=true to work anyway",
                    self.var
                ),
            }),
        }
    }

    /// Logs `reason` (a warning) unless it is the one logged last.
    fn note(&self, reason: &str) {
        let mut logged = self.logged.lock().unwrap_or_else(|p| p.into_inner());
        if logged.as_deref() != Some(reason) {
            log::warn!("{reason}");
            *logged = Some(reason.to_owned());
        }
    }

    /// After a refusal was logged: says that work goes on.
    fn note_confirmed(&self) {
        let mut logged = self.logged.lock().unwrap_or_else(|p| p.into_inner());
        if logged.take().is_some() {
            log::info!(
                "the Redis of {} keeps every key (maxmemory-policy confirmed); working again",
                self.var
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(version: &str, policy: Option<&str>) -> Server {
        Server {
            version: version.to_owned(),
            policy: policy.map(str::to_owned),
        }
    }

    #[test]
    fn reads_fields_of_an_info_text() {
        let info = "# Memory\r\nused_memory:914736\r\nmaxmemory_policy:allkeys-lru\r\n";
        assert_eq!(field(info, "maxmemory_policy"), Some("allkeys-lru"));
        assert_eq!(field(info, "used_memory"), Some("914736"));
        assert_eq!(field(info, "maxmemory"), None);
    }

    #[test]
    fn only_noeviction_on_redis_7_is_confirmed_unless_eviction_is_allowed() {
        let strict = Guard::new("REDIS_URL", false);
        assert!(strict.judge(&server("7.0.15", Some("noeviction"))).is_ok());
        for bad in [
            server("7.2.4", Some("allkeys-lru")),
            server("7.2.4", None),
            server("6.2.14", Some("noeviction")),
            server("", Some("noeviction")),
        ] {
            let e = strict.judge(&bad).unwrap_err().to_string();
            assert!(e.contains("REDIS_URL"), "{e}");
        }
        let allowing = Guard::new("REDIS_URL", true);
        assert!(allowing
            .judge(&server("7.2.4", Some("allkeys-lru")))
            .is_ok());
        assert!(allowing.judge(&server("7.2.4", None)).is_ok());
        assert!(
            allowing
                .judge(&server("6.2.14", Some("allkeys-lru")))
                .is_err(),
            "flags need Redis 7 whatever ALLOW_EVICTION says"
        );
    }
}
