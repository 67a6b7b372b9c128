//! A node's reply to a control request: `{"<node>": value}` pushed onto every reply list bound
//! to the request's routing key, as kombu's direct exchange does, with a short life.

use std::time::Duration;

use redis::RedisResult;
use serde_json::{json, Map, Value};

use super::request::ReplyTo;
use crate::connection::Conn;
use crate::keys::{self, REPLY_BINDINGS, REPLY_EXCHANGE, SEP};
use crate::protocol::fanout::{Fanout, TRANSIENT};
use crate::scripts::PUSH_REPLY;

/// How long a reply list lives after the last push (a client collects within its timeout,
/// one second by default; what nobody collects must not pile up).
pub const REPLY_LIFE: Duration = Duration::from_secs(30);

/// The reply lists bound to `routing_key`, from kombu's binding members
/// (`routing_key SEP pattern SEP queue`); only `<oid>.reply.celery.pidbox` names are taken.
pub fn bound_queues(members: &[Vec<u8>], routing_key: &str) -> Vec<String> {
    let mut out = Vec::new();
    for member in members {
        let Ok(text) = std::str::from_utf8(member) else {
            continue;
        };
        let mut parts = text.splitn(3, SEP);
        let (Some(rk), Some(_pattern), Some(queue)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if rk == routing_key && keys::is_reply_queue(queue) {
            out.push(queue.to_owned());
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Sends `{node: value}` to the client behind `to`; returns how many lists received it (0 when
/// the client is gone or bound nothing: kombu then drops the reply too).
pub async fn send(
    conn: &Conn,
    to: &ReplyTo,
    ticket: &str,
    node: &str,
    clock: u64,
    value: Value,
) -> RedisResult<usize> {
    if to.exchange != REPLY_EXCHANGE {
        log::warn!(
            "control reply to exchange {:?} dropped: only {REPLY_EXCHANGE} is served",
            to.exchange
        );
        return Ok(0);
    }
    let mut conn = conn.clone();
    let members: Vec<Vec<u8>> = redis::cmd("SMEMBERS")
        .arg(REPLY_BINDINGS)
        .query_async(&mut conn)
        .await?;
    let queues = bound_queues(&members, &to.routing_key);
    if queues.is_empty() {
        return Ok(0);
    }
    let headers = Map::from_iter([
        ("ticket".to_owned(), json!(ticket)),
        ("clock".to_owned(), json!(clock)),
    ]);
    let body = Value::Object(Map::from_iter([(node.to_owned(), value)]));
    let envelope = Fanout::encode(&body, headers, TRANSIENT, REPLY_EXCHANGE, &to.routing_key);
    let life = u64::try_from(REPLY_LIFE.as_millis()).unwrap_or(u64::MAX);
    let mut pushed = 0;
    for queue in queues {
        let ok: i64 = PUSH_REPLY
            .key(&queue)
            .arg(&envelope)
            .arg(life)
            .invoke_async(&mut conn)
            .await?;
        pushed += usize::from(ok == 1);
    }
    Ok(pushed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_reply_lists_bound_to_the_key() {
        let m = |s: &str| s.as_bytes().to_vec();
        let members = vec![
            m("oid\x06\x16\x06\x16oid.reply.celery.pidbox"),
            m("oid\x06\x16\x06\x16celery"),
            m("oid\x06\x16\x06\x16unacked"),
            m("other\x06\x16\x06\x16other.reply.celery.pidbox"),
            m("oid"),
            vec![0xff, 0xfe],
        ];
        assert_eq!(
            bound_queues(&members, "oid"),
            vec!["oid.reply.celery.pidbox"]
        );
    }
}
