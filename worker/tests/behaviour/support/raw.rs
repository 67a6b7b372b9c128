//! Raw entries as a hostile or foreign producer leaves them: pushed as they are, crafted from a
//! message's envelope, and the check that orders sent afterwards still run.

use celery_redis::protocol::TaskMessage;
use celery_redis::result::TaskState;
use redis::AsyncCommands;
use serde_json::{json, Value};

use crate::support::shop::small_order;
use crate::support::Running;

/// Pushes `raw` onto the `celery` list as it is.
pub async fn push_raw(w: &Running, raw: &str) {
    w.conn
        .clone()
        .lpush::<_, _, ()>("celery", raw)
        .await
        .unwrap();
}

/// Orders sent after the attack still run: the queue and `unacked` are intact.
pub async fn later_orders_still_run(w: &Running) {
    w.conn
        .clone()
        .set::<_, _, ()>(shop::keys::stock("A"), 100)
        .await
        .unwrap();
    for i in 0..3 {
        let msg = w
            .send("process_order", json!(small_order(&format!("later-{i}"))))
            .await;
        assert_eq!(w.result(&msg.id).await.status, TaskState::Success);
    }
}

/// A raw envelope of `msg` with `edit` applied to its JSON.
/// `msg`'s envelope as JSON, `edit`ed.
pub fn crafted(msg: &TaskMessage, edit: impl FnOnce(&mut Value)) -> String {
    let mut v: Value = serde_json::from_str(&msg.to_json("test@host")).unwrap();
    edit(&mut v);
    v.to_string()
}
