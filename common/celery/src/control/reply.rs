//! A node's reply to a control request: `{"<node>": value}` pushed onto the reply list the
//! client bound to the request's routing key (kombu's direct exchange), with a short life.

use std::time::Duration;

use redis::RedisResult;
use serde_json::{json, Map, Value};

use super::request::ReplyTo;
use crate::conn::Conn;
use crate::keys::{self, Layout, REPLY_EXCHANGE};
use crate::protocol::fanout::{Fanout, TRANSIENT};
use crate::scripts::PUSH_REPLY;

/// How long a reply list lives after the last push (a client collects within its timeout,
/// one second by default; what nobody collects must not pile up).
pub const REPLY_LIFE: Duration = Duration::from_secs(30);

/// The binding member kombu's client writes for `routing_key` (its oid), and the key of the
/// reply list it binds (in `layout`: the member names the list bare, the key is prefixed);
/// `None` when the routing key cannot name a reply list.
pub fn reply_list(layout: &Layout, routing_key: &str) -> Option<(String, String)> {
    let queue = format!("{routing_key}.reply.celery.pidbox");
    keys::is_reply_queue(&queue).then(|| {
        (
            layout.binding_member(routing_key, "", &queue),
            layout.key(&queue),
        )
    })
}

/// Sends `{node: value}` to the client behind `to`; returns how many lists received it (0 when
/// the client is gone or bound nothing: kombu then drops the reply too; 1 otherwise, however
/// many other members name its routing key).
pub async fn send(
    conn: &Conn,
    layout: &Layout,
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
    let Some((member, queue)) = reply_list(layout, &to.routing_key) else {
        return Ok(0);
    };
    let headers = Map::from_iter([
        ("ticket".to_owned(), json!(ticket)),
        ("clock".to_owned(), json!(clock)),
    ]);
    let body = Value::Object(Map::from_iter([(node.to_owned(), value)]));
    let envelope = Fanout::encode(&body, headers, TRANSIENT, REPLY_EXCHANGE, &to.routing_key);
    let life = u64::try_from(REPLY_LIFE.as_millis()).unwrap_or(u64::MAX);
    let pushed: i64 = PUSH_REPLY
        .key(layout.reply_bindings())
        .key(&queue)
        .arg(&envelope)
        .arg(life)
        .arg(&member)
        .invoke_async(&mut conn.clone())
        .await?;
    Ok(usize::from(pushed == 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_plain_oid_names_a_reply_list() {
        let (member, queue) = reply_list(&Layout::default(), "oid-1").unwrap();
        assert_eq!(queue, "oid-1.reply.celery.pidbox");
        assert_eq!(member, "oid-1\x06\x16\x06\x16oid-1.reply.celery.pidbox");
        for bad in ["", "a b", "x\x06\x16y", "*"] {
            assert!(reply_list(&Layout::default(), bad).is_none(), "{bad:?}");
        }
        // kombu's prefixed client: the list's key is prefixed, the member names it bare.
        let prefixed = Layout::new(&[0, 3, 6, 9], ":", "app:").unwrap();
        let (member, queue) = reply_list(&prefixed, "oid-1").unwrap();
        assert_eq!(queue, "app:oid-1.reply.celery.pidbox");
        assert_eq!(member, "oid-1::oid-1.reply.celery.pidbox");
    }
}
