//! Remote control: this worker as a node of Celery's pidbox. It subscribes to requests, acts on
//! the ones meant for it (by `destination`, `pattern` or to everyone), answers when a reply is
//! expected, and keeps the subscription alive (its own heartbeats pass through it).
//!
//! - [`inspect`] — `stats`, `conf`, `active_queues`: read-only answers;
//! - [`revoke`] — `revoke` and `hello`: the commands that change what runs;
//! - [`limits`] — `rate_limit` and `time_limit`: a task's limits changed at run time.

pub mod inspect;
pub mod limits;
pub mod revoke;

use std::sync::Arc;
use std::time::Duration;

use celery_redis::conn::Conn;
use celery_redis::conn::RedisUrl;
use celery_redis::control::listen::{self, Incoming};
use celery_redis::control::{reply, Request};
use celery_redis::events::Events;
use celery_redis::keys::EVENT_EXCHANGE;
use celery_redis::shutdown::{self, Shutdown, Trigger};
use serde_json::{json, Map, Value};
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use crate::config::WorkerConfig;
use crate::context::Context;
use crate::heartbeat;
use crate::registry::Registry;

/// A subscription that heard nothing for this long (not even our own heartbeats) is renewed.
const SILENCE: Duration = Duration::from_secs(10);
/// Pauses between attempts to subscribe: the first, and the longest.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Why a command could not be carried out; sent back as `{"error": ...}`.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No command of this name (the reply Celery's worker gives, with the name).
    #[error("No such control command: {0}")]
    Unknown(String),
    /// An argument is missing or cannot be used (what is wrong with it).
    #[error("bad argument: {0}")]
    BadArgument(String),
}

/// Starts this worker's node on `set` (until `stop`); its `shutdown` command fires the returned
/// shutdown, and the receiver is told once the node is subscribed.
pub fn spawn(
    ctx: &Context,
    cfg: &WorkerConfig,
    stop: &Shutdown,
    set: &mut JoinSet<()>,
) -> (Shutdown, oneshot::Receiver<()>) {
    let (trigger, remote) = shutdown::channel();
    let (ready_tx, ready) = oneshot::channel();
    let (revoke_results, writer) = revoke::RevokeResults::new(ctx.results.clone());
    let node = Node {
        name: ctx.node.clone(),
        cfg: cfg.clone(),
        registry: ctx.registry.clone(),
        registered: ctx.tasks.names(),
        limits: ctx.limits.clone(),
        events: ctx.events.clone(),
        conn: ctx.redis.clone(),
        revoke_results,
        shutdown: trigger,
    };
    set.spawn(writer);
    set.spawn(node.serve(stop.clone(), ready_tx));
    (remote, ready)
}

/// What the commands act on.
pub struct Node {
    /// This worker's node name: the destination commands must name, the sender of replies.
    pub(crate) name: String,
    /// The worker's settings (what `stats` and `conf` answer).
    pub(crate) cfg: WorkerConfig,
    /// What runs here now, is parked or revoked.
    pub(crate) registry: Arc<Registry>,
    /// The registered task names, sorted (`inspect registered`).
    pub registered: Vec<&'static str>,
    /// Each task's rate and time limits (`rate_limit`, `time_limit`).
    pub limits: Arc<crate::limits::Limits>,
    /// The worker's events: the Lamport clock, task events switched by `enable_events`.
    pub(crate) events: Events,
    /// The broker's database: the pidbox is read and replies are sent there.
    pub(crate) conn: Conn,
    /// Stores REVOKED for revoked tasks that run nowhere, off the request loop.
    pub revoke_results: revoke::RevokeResults,
    /// Fired by the `shutdown` command: the worker stops as on SIGTERM.
    pub shutdown: Trigger,
}

impl Node {
    /// Serves requests until `stop`; `ready` is told once the first subscription is active.
    pub async fn serve(self, mut stop: Shutdown, ready: oneshot::Sender<()>) {
        let url: RedisUrl = self.cfg.redis.url.clone();
        let layout = &self.cfg.redis.layout;
        let watch = layout.fanout_channel(url.db(), EVENT_EXCHANGE, "worker.heartbeat");
        let mut ready = Some(ready);
        let mut backoff = MIN_BACKOFF;
        loop {
            let subscribed = tokio::select! {
                _ = stop.wait() => return,
                s = listen::subscribe(&url, layout, &watch, self.cfg.redis.timeout) => s,
            };
            match subscribed {
                Ok(mut sub) => {
                    backoff = MIN_BACKOFF;
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(());
                    }
                    loop {
                        let next = tokio::select! {
                            _ = stop.wait() => return,
                            next = sub.next(SILENCE) => next,
                        };
                        match next {
                            Some(Incoming::Request(raw)) => self.handle(&raw).await,
                            Some(Incoming::Prefixed(channel)) => log::warn!(
                                "refusing a control request on {}: a client with another global_keyprefix than this fleet's (BROKER_KEY_PREFIX={})",
                                celery_redis::keys::shown(&channel),
                                layout.prefix()
                            ),
                            Some(Incoming::Alive) => {}
                            None => {
                                log::warn!("remote-control subscription lost; subscribing again");
                                break;
                            }
                        }
                    }
                }
                Err(e) => {
                    log::warn!("cannot subscribe to remote control ({e}); retrying in {backoff:?}");
                    tokio::select! {
                        _ = stop.wait() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Decodes, filters, runs and answers one request. Nothing here can stop the loop.
    async fn handle(&self, raw: &[u8]) {
        let req = match Request::decode(raw) {
            Ok(req) => req,
            Err(e) => {
                log::warn!("refusing a control request: {e}");
                return;
            }
        };
        let clock = self.events.clock().adjust(req.clock);
        if !req.is_for(&self.name) {
            return;
        }
        log::debug!("control request {:?}", req.method);
        let value = match self.dispatch(&req).await {
            Some(Ok(value)) => value,
            Some(Err(e)) => json!({"error": e.to_string()}),
            None => return, // shutdown: no reply, as Celery
        };
        let (Some(to), Some(ticket)) = (&req.reply_to, &req.ticket) else {
            return;
        };
        let layout = &self.cfg.redis.layout;
        let sent = reply::send(&self.conn, layout, to, ticket, &self.name, clock, value).await;
        if let Err(e) = sent {
            log::warn!("could not reply to {:?}: {e}", req.method);
        }
    }

    /// Runs one command; `None` for `shutdown`, which never replies.
    async fn dispatch(&self, req: &Request) -> Option<Result<Value, ControlError>> {
        let args = &req.arguments;
        let reg = &self.registry;
        Some(Ok(match req.method.as_str() {
            "ping" => json!({"ok": "pong"}),
            "stats" => inspect::stats(&self.cfg, reg, self.events.clock().value()),
            "active" => json!(reg.active()),
            // Messages are claimed only into free slots: nothing waits reserved here.
            "reserved" => json!([]),
            "scheduled" => json!(reg.scheduled()),
            "revoked" => json!(reg.revoked()),
            "registered" => json!(self.registered),
            "active_queues" => inspect::active_queues(&self.cfg),
            "conf" => inspect::conf(&self.cfg, self.events.task_events()),
            "query_task" => {
                let ids = query_ids(args);
                let ids: Vec<&str> = ids.iter().map(String::as_str).take(1000).collect();
                Value::Object(reg.query(&ids))
            }
            "clock" => json!({"clock": self.events.clock().value()}),
            "enable_events" => switch_events(&self.events, true),
            "disable_events" => switch_events(&self.events, false),
            "heartbeat" => {
                if let Err(e) = self
                    .events
                    .send_now("worker-heartbeat", heartbeat::on_demand())
                    .await
                {
                    log::warn!("could not send the heartbeat asked for: {e}");
                }
                json!({"ok": "heartbeat sent"})
            }
            "rate_limit" => return Some(limits::rate_limit(&self.limits, args)),
            "time_limit" => return Some(limits::time_limit(&self.limits, args)),
            "hello" => return Some(revoke::hello(self, args).await),
            "revoke" => return Some(revoke::revoke(self, args).await),
            // `celery control terminate SIG id`: a revoke that terminates.
            "terminate" => {
                let mut args = args.clone();
                args.insert("terminate".into(), Value::Bool(true));
                return Some(revoke::revoke(self, &args).await);
            }
            "shutdown" => {
                log::warn!("shutdown requested by remote control");
                self.shutdown.fire();
                return None;
            }
            other => {
                return Some(Err(ControlError::Unknown(
                    other.chars().take(100).collect(),
                )))
            }
        }))
    }
}

/// `query_task`'s ids: `ids` as a list or one string (the CLI sends a list).
fn query_ids(args: &Map<String, Value>) -> Vec<String> {
    match args.get("ids") {
        Some(Value::String(id)) => vec![id.clone()],
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

fn switch_events(events: &Events, on: bool) -> Value {
    let was = events.set_task_events(on);
    let state = if on { "enabled" } else { "disabled" };
    if was == on {
        json!({"ok": format!("task events already {state}")})
    } else {
        log::info!("task events {state} by remote control");
        json!({"ok": format!("task events {state}")})
    }
}
