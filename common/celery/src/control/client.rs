//! A remote-control client, as `celery inspect` / `celery control` call: bind a reply list,
//! publish the request, collect replies until the timeout or the expected count, unbind.

use std::time::{Duration, Instant};

use redis::RedisResult;
use serde_json::{json, Map, Value};

use super::lamport::Lamport;
use crate::conn::Conn;
use crate::keys::{Layout, PIDBOX_EXCHANGE, REPLY_EXCHANGE};
use crate::protocol::fanout::{Fanout, PERSISTENT};

/// Who a call is for.
#[derive(Debug, Clone)]
pub enum Target {
    /// Every node.
    All,
    /// The named nodes (the call stops once each replied).
    Nodes(Vec<String>),
    /// Nodes whose name matches a glob.
    Glob(String),
}

/// Where a fleet's remote control is: its key layout (prefix, separator) and the database index
/// of its connection (kombu's channels are named `/<db>.`).
#[derive(Debug, Clone, Copy)]
pub struct Mailbox<'a> {
    /// The fleet's key layout; the pidbox keys and channels are named by it.
    pub layout: &'a Layout,
    /// The database index of the connection the call is made on.
    pub db: i64,
}

/// Publishes `method(arguments)` to `target` in `mailbox` and returns the replies, `(node,
/// value)` in arrival order, collected for at most `timeout`. `conn` must be a connection of its
/// own (the collection blocks on it).
pub async fn call(
    conn: &Conn,
    mailbox: Mailbox<'_>,
    clock: &Lamport,
    method: &str,
    arguments: Value,
    target: &Target,
    timeout: Duration,
) -> RedisResult<Vec<(String, Value)>> {
    let (layout, db) = (mailbox.layout, mailbox.db);
    let mut conn = conn.clone();
    let oid = uuid::Uuid::new_v4().to_string();
    // A uuid always names a reply list; the binding is the one a node checks before replying.
    let Some((member, queue)) = super::reply::reply_list(layout, &oid) else {
        return Ok(Vec::new());
    };
    let (destination, pattern, matcher, limit) = match target {
        Target::All => (Value::Null, Value::Null, Value::Null, None),
        Target::Nodes(n) => (json!(n), Value::Null, Value::Null, Some(n.len())),
        Target::Glob(g) => (Value::Null, json!(g), json!("glob"), None),
    };
    let body = json!({
        "method": method, "arguments": arguments, "destination": destination,
        "pattern": pattern, "matcher": matcher, "ticket": uuid::Uuid::new_v4().to_string(),
        "reply_to": {"exchange": REPLY_EXCHANGE, "routing_key": oid},
    });
    let expires = crate::clock::unix_now() + timeout.as_secs_f64();
    let headers = Map::from_iter([
        ("clock".to_owned(), json!(clock.tick())),
        ("expires".to_owned(), json!(expires)),
    ]);
    let request = Fanout::encode(&body, headers, PERSISTENT, PIDBOX_EXCHANGE, "");
    let _: () = redis::cmd("SADD")
        .arg(layout.reply_bindings())
        .arg(&member)
        .query_async(&mut conn)
        .await?;
    let collected = async {
        let _: () = redis::cmd("PUBLISH")
            .arg(layout.fanout_channel(db, PIDBOX_EXCHANGE, ""))
            .arg(&request)
            .query_async(&mut conn)
            .await?;
        collect(&mut conn, &queue, clock, timeout, limit).await
    }
    .await;
    let _: RedisResult<()> = redis::pipe()
        .cmd("SREM")
        .arg(layout.reply_bindings())
        .arg(&member)
        .ignore()
        .cmd("DEL")
        .arg(&queue)
        .ignore()
        .query_async(&mut conn)
        .await;
    collected
}

async fn collect(
    conn: &mut Conn,
    queue: &str,
    clock: &Lamport,
    timeout: Duration,
    limit: Option<usize>,
) -> RedisResult<Vec<(String, Value)>> {
    let deadline = Instant::now() + timeout;
    let mut replies = Vec::new();
    while limit.is_none_or(|l| replies.len() < l) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let popped: Option<(String, Vec<u8>)> = redis::cmd("BRPOP")
            .arg(queue)
            .arg(left.as_secs_f64().max(0.01))
            .query_async(conn)
            .await?;
        let Some((_, raw)) = popped else { break };
        let Ok(reply) = Fanout::decode(&raw) else {
            continue;
        };
        if let Some(theirs) = reply.headers.get("clock").and_then(Value::as_u64) {
            clock.adjust(theirs);
        }
        if let Value::Object(map) = reply.body {
            replies.extend(map);
        }
    }
    Ok(replies)
}
