//! The chord join (`lua/chord_join.lua`) against a real redis-server, in Celery's keys: members
//! joining at once complete the chord exactly once, in header order; a member counts once
//! however often it joins; only the completer ever publishes; a chord a Python 5.7 worker
//! claimed or finished is left to it.

use std::time::Duration;

use celery_redis::result::{ChordKeys, ChordMember, Join, ResultBackend, ResultMeta};
use redis::AsyncCommands;
use serde_json::{json, Value};
use testkit::TestRedis;

const MAX_BYTES: usize = 1 << 20;

/// A chord of `size` members, as `chord.apply_async()` leaves it: `.s` set.
async fn chord(redis: &TestRedis, group: &str, size: usize) -> ChordKeys {
    let keys = ChordKeys::new(group);
    let _: () = redis
        .manager()
        .await
        .set_ex(&keys.size, size, 86_400)
        .await
        .unwrap();
    keys
}

async fn join(results: &ResultBackend, group: &str, index: i64, ordered: bool) -> Join {
    let tid = format!("t-{index}");
    let meta = ResultMeta::success(&tid, json!(index * 10));
    let member = ChordMember {
        group_id: group,
        task_id: &tid,
        group_index: Some(index),
        meta: &meta,
    };
    results
        .join_chord(&member, ordered, MAX_BYTES)
        .await
        .unwrap()
}

fn results_of(join: &Join) -> Vec<Value> {
    let Join::Complete(entries) = join else {
        panic!("not complete: {join:?}");
    };
    entries.iter().map(|e| e[3].clone()).collect()
}

#[tokio::test]
async fn members_joining_at_once_complete_the_chord_once_in_header_order() {
    let redis = TestRedis::start();
    let results = redis.results(Duration::from_secs(600)).await;
    let keys = chord(&redis, "g", 20).await;
    let joins = futures_util::future::join_all((0..20).rev().map(|i| {
        let results = results.clone();
        tokio::spawn(async move { join(&results, "g", i, true).await })
    }))
    .await;
    let complete: Vec<Join> = joins
        .into_iter()
        .map(Result::unwrap)
        .filter(|j| matches!(j, Join::Complete(_)))
        .collect();
    assert_eq!(complete.len(), 1, "{complete:?}");
    let expected: Vec<Value> = (0..20).map(|i| json!(i * 10)).collect();
    assert_eq!(results_of(&complete[0]), expected);
    let ttl: i64 = redis.manager().await.ttl(&keys.join).await.unwrap();
    assert!(
        ttl > 0 && ttl <= 600,
        "the join key gets the results' expiry: {ttl}"
    );
}

#[tokio::test]
async fn a_member_counts_once_and_only_the_completer_publishes_again() {
    let redis = TestRedis::start();
    let results = redis.results(Duration::from_secs(600)).await;
    let keys = chord(&redis, "g", 2).await;
    assert_eq!(join(&results, "g", 0, false).await, Join::NotMine);
    assert_eq!(join(&results, "g", 0, false).await, Join::NotMine);
    let n: i64 = redis.manager().await.llen(&keys.join).await.unwrap();
    assert_eq!(
        n, 1,
        "a LIST without result_chord_ordered, one entry per member"
    );
    let first = join(&results, "g", 1, false).await;
    assert_eq!(results_of(&first), vec![json!(0), json!(10)]);
    let claim: String = redis.manager().await.get(&keys.claim).await.unwrap();
    assert_eq!(claim, "t-1:1");
    // The completer again (it was lost before it published): complete again; nobody else is.
    assert_eq!(results_of(&join(&results, "g", 1, false).await).len(), 2);
    assert_eq!(join(&results, "g", 0, false).await, Join::NotMine);
}

#[tokio::test]
async fn a_chord_a_python_worker_claimed_or_finished_is_left_to_it() {
    let redis = TestRedis::start();
    let results = redis.results(Duration::from_secs(600)).await;
    let mut conn = redis.manager().await;
    let keys = chord(&redis, "g", 1).await;
    // Celery 5.7's dispatch claim, a token of the Python worker that completed the chord.
    let _: () = conn.set(&keys.claim, "0123456789abcdef").await.unwrap();
    assert_eq!(join(&results, "g", 0, true).await, Join::NotMine);
    // Finished: a late copy of a member neither joins nor recreates the chord's keys.
    let _: () = conn.del(&keys.join).await.unwrap();
    let _: () = conn.set(&keys.claim, "done").await.unwrap();
    assert_eq!(join(&results, "g", 0, true).await, Join::NotMine);
    let left: i64 = conn.exists(&keys.join).await.unwrap();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn a_failed_member_is_in_the_entries_for_the_chord_error() {
    let redis = TestRedis::start();
    let results = redis.results(Duration::from_secs(600)).await;
    chord(&redis, "g", 2).await;
    join(&results, "g", 0, true).await;
    let exc = celery_redis::result::ExceptionInfo::new("builtins", "KeyError", "sku");
    let meta = ResultMeta::failure("t-1", &exc, None);
    let member = ChordMember {
        group_id: "g",
        task_id: "t-1",
        group_index: Some(1),
        meta: &meta,
    };
    let Join::Complete(entries) = results.join_chord(&member, true, MAX_BYTES).await.unwrap()
    else {
        panic!("not complete");
    };
    let err = celery_redis::result::chord::unpack(&entries).unwrap_err();
    assert_eq!(err.message(), "Dependency t-1 raised KeyError('sku')");
    // Over the limit of what is read back: the chord is broken, not read.
    let redis = TestRedis::start();
    let results = redis.results(Duration::from_secs(600)).await;
    chord(&redis, "h", 1).await;
    let meta = ResultMeta::success("t-0", json!("x".repeat(100)));
    let member = ChordMember {
        group_id: "h",
        task_id: "t-0",
        group_index: Some(0),
        meta: &meta,
    };
    let join = results.join_chord(&member, true, 50).await.unwrap();
    assert!(
        matches!(join, Join::Broken(ref why) if why.contains("larger than 50")),
        "{join:?}"
    );
}

/// Junk a hostile writer (or a careless script) left in a chord's keys: the join neither
/// errors (the member would run again and again) nor waits for good; the first member claims
/// the chord and gets a `Join error` for the body, as Celery's `int()` of a junk `.s` gives;
/// later members find it claimed. A claim of another type is left alone (Celery's SET NX fails
/// on it too), and a legitimate chord sharing the Redis still completes.
#[tokio::test]
async fn junk_in_a_chords_keys_fails_its_body_once_and_spares_other_chords() {
    let redis = TestRedis::start();
    let results = redis.results(Duration::from_secs(600)).await;
    let mut conn = redis.manager().await;
    let cases: [(&str, &str, &str); 6] = [
        ("s-word", "s", "abc"),
        ("s-float", "s", "1e30"),
        ("s-huge", "s", "9999999999999999999999"),
        ("s-zero", "s", "0"),
        ("s-negative", "s", "-3"),
        ("t-word", "t", "x"),
    ];
    for (group, suffix, junk) in cases {
        let keys = chord(&redis, group, 2).await;
        let key = format!("celery-taskset-meta-{group}.{suffix}");
        let _: () = conn.set(&key, junk).await.unwrap();
        let first = join(&results, group, 0, true).await;
        assert!(
            matches!(&first, Join::Broken(why) if why.starts_with("Join error")),
            "{group}: {first:?}"
        );
        let claim: String = conn.get(&keys.claim).await.unwrap();
        assert_eq!(claim, "t-0:0", "{group}");
        assert_eq!(
            join(&results, group, 1, true).await,
            Join::NotMine,
            "{group}"
        );
    }
    // A dedup set of another type: the same.
    let keys = chord(&redis, "d-type", 2).await;
    let _: () = conn.set(&keys.dedup, "junk").await.unwrap();
    assert!(matches!(
        join(&results, "d-type", 0, true).await,
        Join::Broken(_)
    ));
    // A claim of another type: nobody publishes, nothing errors.
    let keys = chord(&redis, "c-type", 1).await;
    let _: () = conn.rpush(&keys.claim, "x").await.unwrap();
    assert_eq!(join(&results, "c-type", 0, true).await, Join::NotMine);
    // A legitimate chord beside them completes.
    chord(&redis, "ok", 2).await;
    assert_eq!(join(&results, "ok", 1, true).await, Join::NotMine);
    let done = join(&results, "ok", 0, true).await;
    assert_eq!(results_of(&done), vec![json!(0), json!(10)]);
}

/// The finish step of a member that completed its chord, when `.c` was replaced by another
/// type in between (a hostile writer): the script must not error half-way (Redis keeps what a
/// script wrote before its error: the ack without the result). The member's end is written
/// whole and the chord's part is skipped, as for a claim that no longer names the member.
#[tokio::test]
async fn a_claim_of_another_type_at_finish_skips_the_chord_and_ends_the_member_whole() {
    use celery_redis::broker::Broker;
    use celery_redis::protocol::TaskMessage;
    use celery_redis::result::{ChordEnd, TaskState};
    let redis = TestRedis::start();
    let results = redis.results(Duration::from_secs(600)).await;
    let mut conn = redis.manager().await;
    let broker = Broker::new(conn.clone(), "celery", "rust@test");
    let keys = ChordKeys::new("g");
    let _: () = conn.rpush(&keys.claim, "junk").await.unwrap();
    let _: () = conn.hset("unacked", "tag-1", "{}").await.unwrap();
    let end = ChordEnd {
        keys: keys.clone(),
        member: "t-0:0".into(),
        publish: vec![TaskMessage::new("tsum", "celery", Default::default())],
        body_result: None,
    };
    let meta = ResultMeta::success("t-0", json!(1));
    let written = broker
        .finish_with(&results, Some("tag-1"), Some(&meta), &[], Some(&end))
        .await
        .unwrap();
    assert!(written);
    assert_eq!(results.get("t-0").await.unwrap().status, TaskState::Success);
    let held: bool = conn.hexists("unacked", "tag-1").await.unwrap();
    assert!(!held);
    let queued: i64 = conn.llen("celery").await.unwrap();
    assert_eq!(
        queued, 0,
        "the body is not this member's to publish any more"
    );
}

/// The same with results in another database than the broker's (the chord's part then goes
/// in separate steps): the member still ends whole, instead of erroring before its end.
#[tokio::test]
async fn a_claim_of_another_type_at_finish_apart_ends_the_member_whole() {
    use celery_redis::broker::Broker;
    use celery_redis::protocol::TaskMessage;
    use celery_redis::result::{ChordEnd, TaskState};
    let redis = TestRedis::start();
    let url = celery_redis::conn::RedisUrl::parse(&redis.url_db(1)).unwrap();
    let waits = celery_redis::conn::Waits {
        response: None,
        connect_retries: 2,
    };
    let mut db1 = celery_redis::conn::Conn::new(&url, waits).unwrap();
    let results = ResultBackend::new(
        db1.clone(),
        url.client().clone(),
        Duration::from_secs(600),
        false,
    );
    let mut conn = redis.manager().await;
    let broker = Broker::new(conn.clone(), "celery", "rust@test");
    let keys = ChordKeys::new("g");
    let _: () = db1.rpush(&keys.claim, "junk").await.unwrap();
    let _: () = conn.hset("unacked", "tag-1", "{}").await.unwrap();
    let end = ChordEnd {
        keys: keys.clone(),
        member: "t-0:0".into(),
        publish: vec![TaskMessage::new("tsum", "celery", Default::default())],
        body_result: None,
    };
    let meta = ResultMeta::success("t-0", json!(1));
    broker
        .finish_with(&results, Some("tag-1"), Some(&meta), &[], Some(&end))
        .await
        .unwrap();
    assert_eq!(results.get("t-0").await.unwrap().status, TaskState::Success);
    let held: bool = conn.hexists("unacked", "tag-1").await.unwrap();
    assert!(!held);
    let queued: i64 = conn.llen("celery").await.unwrap();
    assert_eq!(queued, 0);
}

/// Two header members with the same task id (a careless client reusing a `task_id` option)
/// and the same result make the same ZSET entry: the count would never reach the size, so the
/// body would wait for good (as in Celery). The second one fails the body with a Join error.
#[tokio::test]
async fn two_members_with_one_id_and_result_fail_the_body_instead_of_waiting() {
    let redis = TestRedis::start();
    let results = redis.results(Duration::from_secs(600)).await;
    chord(&redis, "dup", 3).await;
    let meta = ResultMeta::success("same", json!(1));
    let mut joins = Vec::new();
    for index in 0..2 {
        let member = ChordMember {
            group_id: "dup",
            task_id: "same",
            group_index: Some(index),
            meta: &meta,
        };
        joins.push(results.join_chord(&member, true, MAX_BYTES).await.unwrap());
    }
    assert_eq!(joins[0], Join::NotMine);
    assert!(
        matches!(&joins[1], Join::Broken(why) if why.starts_with("Join error")),
        "{joins:?}"
    );
    // The same member joining again (a redelivery) still counts once, without breaking.
    chord(&redis, "again", 2).await;
    let member = ChordMember {
        group_id: "again",
        task_id: "t",
        group_index: Some(0),
        meta: &meta,
    };
    for _ in 0..2 {
        let join = results.join_chord(&member, true, MAX_BYTES).await.unwrap();
        assert_eq!(join, Join::NotMine);
    }
}

/// A member a Celery 5.4 worker joined (no `.d` entry) and that runs again here (a
/// redelivery) makes the same entry at the same index: counted once, not a broken chord.
#[tokio::test]
async fn a_member_joined_by_celery_54_and_run_again_here_counts_once() {
    let redis = TestRedis::start();
    let results = redis.results(Duration::from_secs(600)).await;
    let keys = chord(&redis, "g54", 2).await;
    let entry = json!([1, "t-0", "SUCCESS", 0]).to_string();
    let mut conn = redis.manager().await;
    let _: () = conn.zadd(&keys.join, &entry, 0).await.unwrap();
    assert_eq!(join(&results, "g54", 0, true).await, Join::NotMine);
    let done = join(&results, "g54", 1, true).await;
    assert_eq!(results_of(&done), vec![json!(0), json!(10)]);
}

/// Found by this stop's review: under a key prefix that makes a chord message's queue list the
/// member's own result key (prefix `celery-`, queue `task-meta-t-0`), the finish pushed the
/// message there and then replaced the list with the member's result. The message is kept now
/// (no result is stored over it) and the chord is still marked done.
#[tokio::test]
async fn a_chord_message_queued_at_the_members_result_key_is_kept() {
    use celery_redis::broker::Broker;
    use celery_redis::keys::{self, Layout};
    use celery_redis::protocol::TaskMessage;
    use celery_redis::result::ChordEnd;
    let redis = TestRedis::start();
    let results = redis.results(Duration::from_secs(600)).await;
    let mut conn = redis.manager().await;
    let layout = Layout::new(&[0, 3, 6, 9], keys::SEP, "celery-").unwrap();
    let broker = Broker::new(conn.clone(), "celery", "rust@test").with_layout(layout);
    let keys = ChordKeys::new("g");
    let _: () = conn.set(&keys.claim, "t-0:0").await.unwrap();
    let end = ChordEnd {
        keys: keys.clone(),
        member: "t-0:0".into(),
        publish: vec![TaskMessage::new(
            "tsum",
            "task-meta-t-0",
            Default::default(),
        )],
        body_result: None,
    };
    let meta = ResultMeta::success("t-0", json!(1));
    broker
        .finish_with(&results, None, Some(&meta), &[], Some(&end))
        .await
        .unwrap();
    let result_key = celery_redis::keys::task_meta("t-0");
    let queued: Vec<String> = conn.lrange(&result_key, 0, -1).await.unwrap();
    assert_eq!(queued.len(), 1, "the chord's message is still queued");
    assert!(queued[0].contains("\"tsum\""), "{queued:?}");
    let claim: String = conn.get(&keys.claim).await.unwrap();
    assert_eq!(claim, "done");
}
