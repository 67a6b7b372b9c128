//! Redis connections: one reconnecting, multiplexed connection per database, with bounded waits,
//! each (re)connection counted so that the eviction check ([`crate::eviction`]) runs on it.

use std::time::Duration;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, Pipeline, PushInfo, PushKind, RedisError, RedisFuture, RedisResult, Value};

use super::failover::{needs_new_master, OnSwitch, Switches};
use super::resolve::ResolveError;
use super::url::RedisUrl;
use crate::eviction::{Guard, Unconfirmed};

/// The manager in use (`None`: ask the sentinels), and its generation.
type Current = RwLock<(u64, Option<ConnectionManager>)>;

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

/// A reconnecting connection to one Redis database: redis-rs's `ConnectionManager`, replaced
/// by a fresh one when connecting failed in a way the manager never retries by itself (a
/// refused password: once the password is right again, the next call connects). Cheap to
/// clone; every clone shares the connection.
///
/// For a `sentinel://` URL the manager is made for the master the sentinels name, and dropped
/// after an error that says the master went away or is one no more (see
/// [`needs_new_master`]), and on each failover the sentinels announce (watched once per
/// sentinel URL for all its connections): the next call asks the sentinels again.
#[derive(Clone)]
pub struct Conn {
    current: Arc<Current>,
    url: RedisUrl,
    waits: Waits,
    /// Held while asking the sentinels, so that concurrent calls ask once; it keeps why the
    /// last resolution found no master (`None` once one did, and for a plain URL).
    resolving: Arc<tokio::sync::Mutex<Option<ResolveError>>>,
    /// The sentinels' `+switch-master`, watched from the first resolution on.
    switches: Option<Arc<Switches>>,
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
        let current = Arc::new(RwLock::new((0, direct)));
        let switches = url.topology().sentinels().map(|sentinels| {
            let switches = Switches::of(sentinels);
            let on_switch: std::sync::Weak<Current> = Arc::downgrade(&current);
            switches.join(on_switch);
            switches
        });
        Ok(Conn {
            current,
            url: url.clone(),
            waits,
            resolving: Arc::default(),
            switches,
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
        let mut asking = self.resolving.lock().await;
        if let (generation, Some(m)) = self.read() {
            return Ok((generation, m));
        }
        let resolved = self.url.topology().resolve(self.url.client()).await;
        *asking = resolved.as_ref().err().cloned();
        let client = resolved?;
        let fresh = manager(client, self.waits, &self.epoch)?;
        self.reconnected();
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        *current = (current.0.wrapping_add(1), Some(fresh.clone()));
        log::info!("connected to the master the sentinels name");
        let generation = current.0;
        drop(current);
        if let Some(switches) = &self.switches {
            switches.start();
        }
        Ok((generation, fresh))
    }

    /// Why the last resolution of the master found none (`None` once one did, and always for
    /// a plain URL): a configuration error ([`ResolveError::misconfigured`]) or an outage.
    pub async fn resolve_error(&self) -> Option<ResolveError> {
        self.resolving.lock().await.clone()
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
        let again = on_sentinels && needs_new_master(e);
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

/// A failover the sentinels announced: the next call asks them for the new master.
impl OnSwitch for Current {
    fn switched(&self) {
        let mut current = self.write().unwrap_or_else(|p| p.into_inner());
        *current = (current.0.wrapping_add(1), None);
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
