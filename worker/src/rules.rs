//! Questions CI asks of a fleet, answered with the code the fleet runs rather than a second
//! copy of its rules: `worker route` (the queue the route table sends each task to), `worker
//! queues` (the queues a worker consumes) and `worker check-submissions` (nothing half-enqueued: every accepted submission is one message
//! and one idempotency key, both or neither; docs/design.md "Keys").

use std::collections::BTreeMap;

use celery_redis::conn::Conn;
use celery_redis::keys::Layout;
use celery_redis::protocol::Message;
use celery_redis::routes::Routes;
use redis::AsyncCommands;
use serde_json::json;
use shop::contracts::{ProcessOrder, SendNotification, Submission};

/// Most keys one `SCAN` step asks for.
const SCAN_COUNT: u64 = 1000;

/// What the services accept, by the idempotency key's namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// `POST /orders`: a `process_order`, keyed `fleet:order:<order_id>:task`.
    Order,
    /// `POST /notifications`: a `send_notification`, keyed `fleet:notification:<id>:task`.
    Notification,
}

/// `worker route`: one JSON line per task, `{"task": ..., "queue": ...}`, in the order given.
pub fn route(routes: &Routes, tasks: &[String]) -> String {
    let lines: Vec<String> = tasks
        .iter()
        .map(|task| json!({"task": task, "queue": routes.queue_for(task)}).to_string())
        .collect();
    lines.join("\n")
}

/// `worker queues`: `{"queues": [...]}`, the consumed queues as the worker parsed them.
pub fn queues(consumed: &[String]) -> String {
    json!({ "queues": consumed }).to_string()
}

/// What `worker check-submissions` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The summary line: the kind, its queue, how many messages and keys, how many problems.
    pub summary: String,
    /// One line per problem (none: nothing is half-enqueued).
    pub problems: Vec<String>,
}

/// Checks the submissions of `kind` on the queue `routes` sends its task to (as the services
/// do), with no worker consuming: each message on that queue (every priority list of `layout`)
/// is the kind's task with valid arguments, queued once per id, and has its idempotency key
/// holding its task id with an expiry; each key has its message; at most `max_depth` wait.
pub async fn check_submissions(
    conn: &Conn,
    layout: &Layout,
    routes: &Routes,
    kind: Kind,
    max_depth: Option<usize>,
) -> Result<Report, redis::RedisError> {
    match kind {
        Kind::Order => check::<ProcessOrder>(conn, layout, routes, max_depth).await,
        Kind::Notification => check::<SendNotification>(conn, layout, routes, max_depth).await,
    }
}

async fn check<C: Submission>(
    conn: &Conn,
    layout: &Layout,
    routes: &Routes,
    max_depth: Option<usize>,
) -> Result<Report, redis::RedisError> {
    let mut conn = conn.clone();
    let (kind, queue) = (C::KIND, routes.queue_for(C::NAME));
    let mut problems = Vec::new();
    let mut queued = BTreeMap::new(); // id -> task id
    let mut messages = 0usize;
    for list in layout.queue_lists(queue) {
        let entries: Vec<Vec<u8>> = conn.lrange(&list, 0, -1).await?;
        for raw in entries {
            messages = messages.saturating_add(1);
            let msg = match Message::decode(&raw) {
                Ok(msg) => msg,
                Err(e) => {
                    problems.push(format!("an entry of {list} does not decode: {e}"));
                    continue;
                }
            };
            if msg.task() != C::NAME {
                problems.push(format!(
                    "a {} message (task {}) on the {kind} queue {queue}",
                    msg.task(),
                    msg.id()
                ));
                continue;
            }
            let contract = match C::from_call(&msg.body.args, &msg.body.kwargs) {
                Ok(c) => c,
                Err(e) => {
                    problems.push(format!("task {}: not a valid {}: {e}", msg.id(), C::NAME));
                    continue;
                }
            };
            let id = contract.id().to_owned();
            if queued.insert(id.clone(), msg.id().to_owned()).is_some() {
                problems.push(format!("{kind} {id} queued twice"));
            }
        }
    }

    // The idempotency keys, found with the pattern of the one function that names them.
    let pattern = shop::keys::submitted_task(kind, "*");
    let (prefix, suffix) = pattern.split_once('*').unwrap_or((&pattern, ""));
    let mut keys = BTreeMap::new(); // id -> (task id, ttl)
    for key in scan(&mut conn, &pattern).await? {
        let id = key
            .strip_prefix(prefix)
            .and_then(|k| k.strip_suffix(suffix))
            .unwrap_or(&key)
            .to_owned();
        let value: Option<String> = conn.get(&key).await?;
        let ttl: i64 = conn.ttl(&key).await?;
        keys.insert(id, (value.unwrap_or_default(), ttl));
    }

    for (id, task_id) in &queued {
        match keys.get(id) {
            None => problems.push(format!(
                "queued {kind} {id} (task {task_id}) has no idempotency key"
            )),
            Some((held, _)) if held != task_id => problems.push(format!(
                "{kind} {id}: its key holds task {held}, the queue has {task_id}"
            )),
            Some(_) => {}
        }
    }
    for (id, (task_id, ttl)) in &keys {
        if !queued.contains_key(id) {
            problems.push(format!(
                "the idempotency key of {kind} {id} (task {task_id}) has no message"
            ));
        }
        if *ttl <= 0 {
            problems.push(format!(
                "the idempotency key of {kind} {id} has no expiry (ttl {ttl})"
            ));
        }
    }
    if let Some(most) = max_depth.filter(|most| messages > *most) {
        problems.push(format!(
            "{messages} messages wait on {queue}, over the most allowed, {most}"
        ));
    }
    Ok(Report {
        summary: format!(
            "{kind}: {messages} messages on {queue}, {} idempotency keys, {} problems",
            keys.len(),
            problems.len()
        ),
        problems,
    })
}

/// Every key matching `pattern`, by `SCAN` (never `KEYS`: it does not block the server).
async fn scan(conn: &mut Conn, pattern: &str) -> Result<Vec<String>, redis::RedisError> {
    let mut found = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(SCAN_COUNT)
            .query_async(conn)
            .await?;
        found.extend(keys);
        if next == 0 {
            found.sort();
            found.dedup();
            return Ok(found);
        }
        cursor = next;
    }
}
