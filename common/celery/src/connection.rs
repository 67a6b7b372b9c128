//! Redis connections: one reconnecting, multiplexed connection per database, with bounded waits,
//! each (re)connection counted so that the eviction check ([`crate::eviction`]) runs on it.

use std::time::Duration;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, Pipeline, PushInfo, PushKind, RedisError, RedisFuture, RedisResult, Value};

use crate::config::RedisUrl;
use crate::eviction::{Guard, Unconfirmed};

/// How a process waits on Redis: for each reply, and for a connection.
#[derive(Debug, Clone, Copy)]
pub struct Waits {
    /// Longest wait for one reply (`None`: no bound, for blocking commands' own connections).
    pub response: Option<Duration>,
    /// Connection attempts a call makes (with backoff) before it fails. A worker retries
    /// (2); a service answering requests fails at once (0), so a refused connection is
    /// known to have written nothing and the request answers within its bound.
    pub connect_retries: usize,
}

/// A multiplexed connection that reconnects by itself with backoff. It is created lazily, so a
/// process starts (and reports "not ready") while Redis is still down. A dead connection is
/// found by the next call, whose error makes the manager reconnect (counted in `epoch` by
/// `Conn::after_error`); over RESP3 redis-rs also announces it (a disconnection push, on which
/// the manager reconnects even with no call under way), counted here as well.
fn manager(
    client: redis::Client,
    waits: Waits,
    epoch: &Arc<AtomicU64>,
) -> RedisResult<ConnectionManager> {
    let resp3 = client
        .get_connection_info()
        .redis_settings()
        .protocol()
        .supports_resp3();
    let mut config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(waits.response)
        .set_number_of_retries(waits.connect_retries)
        .set_max_delay(Duration::from_millis(500));
    if resp3 {
        let epoch = Arc::downgrade(epoch);
        config = config.set_push_sender(move |push: PushInfo| {
            if push.kind == PushKind::Disconnection {
                if let Some(epoch) = epoch.upgrade() {
                    epoch.fetch_add(1, Ordering::AcqRel);
                }
            }
            Ok::<(), std::convert::Infallible>(())
        });
    }
    ConnectionManager::new_lazy_with_config(client, config)
}

/// Runs one Redis call with an upper bound on its duration, so nothing waits on Redis forever.
pub async fn bounded<T>(
    limit: Duration,
    call: impl std::future::Future<Output = RedisResult<T>>,
) -> RedisResult<T> {
    match tokio::time::timeout(limit, call).await {
        Ok(result) => result,
        Err(_) => Err(redis::RedisError::from((
            redis::ErrorKind::Io,
            "redis did not answer in time",
        ))),
    }
}

/// An error after which the same call on a fresh connection may well succeed: a connection
/// killed (CLIENT KILL, a restart) or dropped; the connection manager reconnects meanwhile.
pub trait Transient {
    /// Whether this error is such an error, worth one retry on a fresh connection.
    fn is_transient(&self) -> bool;
}

impl Transient for redis::RedisError {
    fn is_transient(&self) -> bool {
        self.is_io_error() || self.is_connection_dropped() || self.is_connection_refusal()
    }
}

/// Runs an idempotent call, and once more when it failed on a dead connection: a killed
/// connection costs the caller nothing. Only for calls that may run twice (reads, and writes
/// guarded by an idempotency key).
pub async fn retry_once<T, E, F, Fut>(call: F) -> Result<T, E>
where
    E: Transient,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    match call().await {
        Err(e) if e.is_transient() => {
            log::info!("retrying once on a fresh connection");
            call().await
        }
        other => other,
    }
}

/// `PING`, bounded.
pub async fn ping(conn: &Conn, limit: Duration) -> RedisResult<()> {
    let mut conn = conn.clone();
    bounded(limit, async move {
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(drop)
    })
    .await
}

/// A reconnecting connection to one Redis database: redis-rs's `ConnectionManager`, replaced
/// by a fresh one when connecting failed in a way the manager never retries by itself (a
/// refused password: once the password is right again, the next call connects). Cheap to
/// clone; every clone shares the connection.
///
/// For a `sentinel://` URL the manager is made for the master the sentinels name, and dropped
/// after an error that says the master went away or is one no more (see
/// [`crate::failover::needs_new_master`]): the next call asks the sentinels again.
#[derive(Clone)]
pub struct Conn {
    current: Arc<RwLock<(u64, Option<ConnectionManager>)>>,
    url: RedisUrl,
    waits: Waits,
    /// Held while asking the sentinels, so that concurrent calls ask once.
    resolving: Arc<tokio::sync::Mutex<()>>,
    /// Whether the sentinels' `+switch-master` is watched (from the first resolution on).
    watching: Arc<std::sync::atomic::AtomicBool>,
    /// Counts (re)connections: a new manager, an error after which the manager reconnects, a
    /// RESP3 disconnection. The eviction check is valid for one value.
    epoch: Arc<AtomicU64>,
    /// The eviction check of this connection ([`Conn::checking_eviction`]), if any.
    guard: Option<Arc<Guard>>,
}

impl Conn {
    /// Connects lazily: nothing is sent before the first call.
    pub fn new(url: &RedisUrl, waits: Waits) -> RedisResult<Self> {
        let epoch = Arc::new(AtomicU64::new(0));
        let direct = match url.topology().sentinels() {
            None => Some(manager(url.client().clone(), waits, &epoch)?),
            Some(_) => None,
        };
        Ok(Conn {
            current: Arc::new(RwLock::new((0, direct))),
            url: url.clone(),
            waits,
            resolving: Arc::new(tokio::sync::Mutex::new(())),
            watching: Arc::default(),
            epoch,
            guard: None,
        })
    }

    /// This connection, checked by [`Conn::confirm`] for a server that keeps every key (the
    /// URL is named by `var` in messages; `allow_eviction` is `ALLOW_EVICTION`). Clones share
    /// the check.
    pub fn checking_eviction(mut self, var: &'static str, allow_eviction: bool) -> Self {
        self.guard = Some(Arc::new(Guard::new(var, allow_eviction)));
        self
    }

    /// Ok when the server this connection reaches now was confirmed to keep every key (and to
    /// be Redis 7 or later), asking it once per (re)connection; always Ok without a check. Call
    /// it before taking or accepting work.
    pub async fn confirm(&self) -> Result<(), Unconfirmed> {
        match &self.guard {
            None => Ok(()),
            Some(guard) => {
                let epoch = self.epoch.load(Ordering::Acquire);
                if guard.is_confirmed(epoch) {
                    return Ok(());
                }
                guard.confirm(&mut self.clone(), epoch).await
            }
        }
    }

    /// A (re)connection happened or is under way: the next [`Conn::confirm`] asks again.
    fn reconnected(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// The URL this connection was made for (its `WAIT` policy included).
    pub fn url(&self) -> &RedisUrl {
        &self.url
    }

    fn read(&self) -> (u64, Option<ConnectionManager>) {
        // A panic while holding this lock cannot leave the pair inconsistent.
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The manager to use, asking the sentinels for the master first when there is none.
    async fn current(&self) -> RedisResult<(u64, ConnectionManager)> {
        if let (generation, Some(m)) = self.read() {
            return Ok((generation, m));
        }
        let _asking = self.resolving.lock().await;
        if let (generation, Some(m)) = self.read() {
            return Ok((generation, m));
        }
        let client = self.url.topology().resolve(self.url.client()).await?;
        let fresh = manager(client, self.waits, &self.epoch)?;
        self.reconnected();
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        *current = (current.0.wrapping_add(1), Some(fresh.clone()));
        log::info!("connected to the master the sentinels name");
        let generation = current.0;
        drop(current);
        if !self
            .watching
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            self.watch_failovers();
        }
        Ok((generation, fresh))
    }

    /// Drops the master on each failover the sentinels announce (the next call asks them
    /// again), until every clone of this connection is gone.
    fn watch_failovers(&self) {
        let Some(sentinels) = self.url.topology().sentinels().cloned() else {
            return;
        };
        let current = Arc::downgrade(&self.current);
        tokio::spawn(crate::failover::watch(sentinels, move |switched| {
            let Some(current) = current.upgrade() else {
                return false;
            };
            if switched {
                log::warn!("the sentinels announced a failover; asking them for the new master");
                let mut current = current.write().unwrap_or_else(|p| p.into_inner());
                *current = (current.0.wrapping_add(1), None);
            }
            true
        }));
    }

    /// Forgets the master the sentinels named (no-op for a plain URL): the next call asks them
    /// again. For a sign that it may be one no more, e.g. a `WAIT` that no replica answered.
    pub fn forget_master(&self) {
        if self.url.topology().sentinels().is_some() {
            let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
            *current = (current.0.wrapping_add(1), None);
        }
    }

    /// After `e` on the manager of `generation`: a new manager when the old one would keep
    /// answering with the same error (once per generation, however many calls saw it).
    fn renew_after(&self, generation: u64, e: &RedisError) {
        let on_sentinels = self.url.topology().sentinels().is_some();
        let again = on_sentinels && crate::failover::needs_new_master(e);
        if !needs_new_connection(e) && !again {
            return;
        }
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        if current.0 != generation {
            return;
        }
        if on_sentinels {
            log::warn!(
                "lost the master ({}); asking the sentinels again",
                e.category()
            );
            *current = (generation.wrapping_add(1), None);
            return;
        }
        match manager(self.url.client().clone(), self.waits, &self.epoch) {
            Ok(fresh) => {
                self.reconnected();
                log::warn!(
                    "redis refused the connection ({}); connecting anew",
                    e.category()
                );
                *current = (generation.wrapping_add(1), Some(fresh));
            }
            Err(e) => log::warn!("cannot make a new redis connection: {e}"),
        }
    }
}

impl Conn {
    /// After `e` on the manager of `generation`: counts the reconnection the manager starts
    /// after such an error, and replaces the manager when it would not reconnect by itself.
    fn after_error(&self, generation: u64, e: &RedisError) {
        if e.is_unrecoverable_error() || e.is_io_error() || e.is_connection_dropped() {
            self.reconnected();
        }
        self.renew_after(generation, e);
    }
}

/// Errors a `ConnectionManager` keeps returning without reconnecting: its connection attempt
/// failed for a reason other than I/O (authentication, an ACL change).
fn needs_new_connection(e: &RedisError) -> bool {
    e.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("NOAUTH" | "WRONGPASS" | "NOPERM"))
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let (generation, mut conn) = self.current().await?;
            let result = conn.req_packed_command(cmd).await;
            if let Err(e) = &result {
                self.after_error(generation, e);
            }
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let (generation, mut conn) = self.current().await?;
            let result = conn.req_packed_commands(pipeline, offset, count).await;
            if let Err(e) = &result {
                self.after_error(generation, e);
            }
            result
        })
    }

    fn get_db(&self) -> i64 {
        self.url.db()
    }
}
