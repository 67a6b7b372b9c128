//! Chords on the Rust worker, from a chord Celery 5.7 put on Redis
//! (`common/celery/tests/fixtures/chord/chord_celery57.json`, made by `capture_chord.py` there:
//! `chord([add.s(1, 1), add.s(2, 2)], tsum.s().set(link_error=[on_err.s()]))`, no worker):
//! the header members join Celery's Redis keys; the one that completes the chord publishes the
//! body once, with the results in header order; a failed member fails the body with Celery's
//! `ChordError` and runs its errbacks; a member run again counts once, and a member lost after
//! it completed the join (and before it published) publishes the body when it runs again.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use celery_redis::result::{ChordMember, Join, ResultBackend, ResultMeta, TaskState};
use celery_redis::shutdown;
use celery_redis::task::{Task, TaskContext, TaskError, Tasks};
use redis::AsyncCommands;
use serde::Deserialize;
use serde_json::{json, Value};
use testkit::TestRedis;

use crate::support::WAIT;

/// What the body and errback tasks were called with, in order.
#[derive(Default)]
struct Calls(Mutex<Vec<(String, Value)>>);

impl Calls {
    fn record(&self, task: &str, arg: Value) {
        self.0.lock().unwrap().push((task.to_owned(), arg));
    }
    fn of(&self, task: &str) -> Vec<Value> {
        let calls = self.0.lock().unwrap();
        calls
            .iter()
            .filter(|(t, _)| t == task)
            .map(|(_, a)| a.clone())
            .collect()
    }
}

#[derive(Deserialize)]
struct AddArgs {
    x: i64,
    y: i64,
}

/// `add(x, y)`; a negative x raises ValueError.
struct Add;

impl Task for Add {
    const NAME: &'static str = "add";
    const PARAMS: &'static [&'static str] = &["x", "y"];
    type Args = AddArgs;
    type Output = i64;

    async fn run(_: &TaskContext<'_>, a: AddArgs) -> Result<i64, TaskError> {
        if a.x < 0 {
            return Err(TaskError::builtin("ValueError", "negative"));
        }
        Ok(a.x + a.y)
    }
}

#[derive(Deserialize)]
struct SumArgs {
    values: Vec<i64>,
}

/// The chord's body: the sum; records the list it got.
struct Tsum;

impl Task for Tsum {
    const NAME: &'static str = "tsum";
    const PARAMS: &'static [&'static str] = &["values"];
    type Args = SumArgs;
    type Output = i64;

    async fn run(ctx: &TaskContext<'_>, a: SumArgs) -> Result<i64, TaskError> {
        ctx.dep::<Arc<Calls>>()?.record("tsum", json!(a.values));
        Ok(a.values.iter().sum())
    }
}

#[derive(Deserialize)]
struct ErrArgs {
    task_id: String,
}

/// `big(x, y)`: a string of x characters (a large member result).
struct Big;

impl Task for Big {
    const NAME: &'static str = "big";
    const PARAMS: &'static [&'static str] = &["x", "y"];
    type Args = AddArgs;
    type Output = String;

    async fn run(_: &TaskContext<'_>, a: AddArgs) -> Result<String, TaskError> {
        Ok("x".repeat(usize::try_from(a.x).unwrap_or(0)))
    }
}

/// The body's errback: records the id it got.
struct OnErr;

impl Task for OnErr {
    const NAME: &'static str = "on_err";
    const PARAMS: &'static [&'static str] = &["task_id"];
    type Args = ErrArgs;
    type Output = ();

    async fn run(ctx: &TaskContext<'_>, a: ErrArgs) -> Result<(), TaskError> {
        ctx.dep::<Arc<Calls>>()?.record("on_err", json!(a.task_id));
        Ok(())
    }
}

struct Running {
    redis: TestRedis,
    conn: celery_redis::conn::Conn,
    results: ResultBackend,
    calls: Arc<Calls>,
    trigger: shutdown::Trigger,
    handle: crate::support::Handle,
}

/// The captured chord: its body's id, its group id, its `.s` key and value, and the two
/// header messages (index 0 and 1).
struct Capture {
    body_id: String,
    group: String,
    size_key: String,
    size: String,
    members: Vec<Value>,
}

fn capture() -> Capture {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../common/celery/tests/fixtures/chord/chord_celery57.json");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let (size_key, size) = doc["chord_keys"]
        .as_object()
        .unwrap()
        .iter()
        .next()
        .unwrap();
    let members = doc["queue_celery_oldest_first"].as_array().unwrap().clone();
    Capture {
        body_id: doc["body_id"].as_str().unwrap().to_owned(),
        group: members[0]["headers"]["group"].as_str().unwrap().to_owned(),
        size_key: size_key.clone(),
        size: size.as_str().unwrap().to_owned(),
        members,
    }
}

fn id_of(member: &Value) -> String {
    member["headers"]["id"].as_str().unwrap().to_owned()
}

/// The member with other positional arguments (its body re-encoded).
fn with_args(member: &Value, args: Value) -> Value {
    let b64 = base64::engine::general_purpose::STANDARD;
    let raw = b64.decode(member["body"].as_str().unwrap()).unwrap();
    let mut body: Value = serde_json::from_slice(&raw).unwrap();
    body[0] = args;
    let mut out = member.clone();
    out["body"] = json!(b64.encode(body.to_string()));
    out
}

async fn start(c: &Capture) -> Running {
    start_with(c, &[], false).await
}

/// A worker with more settings; `results_db`: results (and the chord's keys) in database 1
/// (`RESULT_BACKEND_URL`), not the broker's.
async fn start_with(c: &Capture, extra: &[(&'static str, &str)], results_db: bool) -> Running {
    let redis = TestRedis::start();
    let results_url = redis.url_db(1);
    let mut env = vec![("WORKER_NAME", "chord@test")];
    if results_db {
        env.push(("RESULT_BACKEND_URL", results_url.as_str()));
    }
    env.extend_from_slice(extra);
    let calls = Arc::new(Calls::default());
    let tasks = Tasks::new()
        .task::<Add>()
        .task::<Tsum>()
        .task::<OnErr>()
        .task::<Big>()
        .dep(calls.clone());
    let conn = redis.manager().await;
    let (mut backend_conn, client) = match results_db {
        false => (conn.clone(), redis.client()),
        true => {
            let url = celery_redis::conn::RedisUrl::parse(&redis.url_db(1)).unwrap();
            let waits = celery_redis::conn::Waits {
                response: None,
                connect_retries: 2,
            };
            let backend = celery_redis::conn::Conn::new(&url, waits).unwrap();
            (backend, url.client().clone())
        }
    };
    // As `chord.apply_async()` left it: the chord's size, with Celery's expiry.
    let _: () = backend_conn
        .set_ex(&c.size_key, &c.size, 86_400)
        .await
        .unwrap();
    let (trigger, handle) = crate::support::spawn_tasks(&redis.url(), &env, |_, _| tasks);
    let expires = Duration::from_secs(3600);
    let results = ResultBackend::new(backend_conn, client, expires, !results_db);
    Running {
        redis,
        conn,
        results,
        calls,
        trigger,
        handle,
    }
}

impl Running {
    /// Puts a captured message on its queue as its producer did.
    async fn push(&self, member: &Value) {
        let _: () = self
            .conn
            .clone()
            .lpush("celery", member.to_string())
            .await
            .unwrap();
    }

    async fn ended(&self, id: &str) -> ResultMeta {
        self.results.wait(id, WAIT).await.unwrap()
    }

    /// Waits until nothing waits in the queue nor is held (every delivery ended).
    async fn drained(&self) {
        let idle = async {
            loop {
                let waiting: i64 = self.conn.clone().llen("celery").await.unwrap();
                let held: i64 = self.conn.clone().hlen("unacked").await.unwrap();
                let taking: i64 = self
                    .conn
                    .clone()
                    .llen("fleet:processing:celery")
                    .await
                    .unwrap();
                if waiting + held + taking == 0 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(WAIT, idle).await.unwrap();
    }

    async fn stop(self) -> TestRedis {
        self.trigger.fire();
        self.handle.await.unwrap().unwrap();
        self.redis
    }
}

#[tokio::test]
async fn a_header_on_rust_runs_the_body_once_with_results_in_header_order() {
    let c = capture();
    let w = start(&c).await;
    // The second member ends first: the body still gets the first member's result first.
    w.push(&c.members[1]).await;
    assert_eq!(w.ended(&id_of(&c.members[1])).await.result, json!(4));
    let join_key = format!("celery-taskset-meta-{}.j", c.group);
    let joined: Vec<String> = w.conn.clone().zrange(&join_key, 0, -1).await.unwrap();
    let entry: Value = serde_json::from_str(&joined[0]).unwrap();
    assert_eq!(entry, json!([1, id_of(&c.members[1]), "SUCCESS", 4]));
    assert_eq!(
        w.results.get(&c.body_id).await.unwrap().status,
        TaskState::Pending
    );
    w.push(&c.members[0]).await;
    let body = w.ended(&c.body_id).await;
    assert_eq!(body.status, TaskState::Success, "{body:?}");
    assert_eq!(body.result, json!(6));
    assert_eq!(
        body.parent_id.as_deref(),
        Some(id_of(&c.members[0]).as_str())
    );
    assert_eq!(w.calls.of("tsum"), vec![json!([2, 4])]);
    let claim: Option<String> = w
        .conn
        .clone()
        .get(format!("celery-taskset-meta-{}.c", c.group))
        .await
        .unwrap();
    assert_eq!(claim.as_deref(), Some("done"));
    let left: i64 = w.conn.clone().exists(&join_key).await.unwrap();
    assert_eq!(left, 0, "the join key is deleted once the body is sent");
    w.stop().await;
}

#[tokio::test]
async fn a_failed_member_fails_the_body_with_a_chord_error_and_runs_its_errbacks() {
    let c = capture();
    let w = start(&c).await;
    let failing = with_args(&c.members[1], json!([-1, 2]));
    w.push(&c.members[0]).await;
    w.push(&failing).await;
    let body = w.ended(&c.body_id).await;
    assert_eq!(body.status, TaskState::Failure);
    let exc = body.exception().unwrap();
    assert_eq!(
        (exc.exc_module.as_str(), exc.exc_type.as_str()),
        ("celery.exceptions", "ChordError")
    );
    let expected = format!(
        "Dependency {} raised ValueError('negative')",
        id_of(&failing)
    );
    assert_eq!(exc.exc_message, json!([expected]));
    assert_eq!(w.ended(&id_of(&failing)).await.status, TaskState::Failure);
    // The body's errback gets the body's id.
    let errback_ran = async {
        while w.calls.of("on_err").is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(WAIT, errback_ran).await.unwrap();
    assert_eq!(w.calls.of("on_err"), vec![json!(c.body_id)]);
    assert!(w.calls.of("tsum").is_empty(), "the body never runs");
    w.stop().await;
}

#[tokio::test]
async fn a_member_run_twice_counts_once_and_the_body_runs_once() {
    let c = capture();
    let w = start(&c).await;
    let join_key = format!("celery-taskset-meta-{}.j", c.group);
    w.push(&c.members[0]).await;
    w.ended(&id_of(&c.members[0])).await;
    w.drained().await;
    // Delivered again (a redelivery after a lost worker): counted once.
    w.push(&c.members[0]).await;
    w.drained().await;
    let joined: i64 = w.conn.clone().zcard(&join_key).await.unwrap();
    assert_eq!(joined, 1);
    assert_eq!(
        w.results.get(&c.body_id).await.unwrap().status,
        TaskState::Pending
    );
    w.push(&c.members[1]).await;
    assert_eq!(w.ended(&c.body_id).await.result, json!(6));
    // Both members once more, after the chord finished: nothing is sent again.
    w.push(&c.members[1]).await;
    w.push(&c.members[0]).await;
    w.drained().await;
    assert_eq!(w.calls.of("tsum"), vec![json!([2, 4])]);
    let left: i64 = w.conn.clone().exists(&join_key).await.unwrap();
    assert_eq!(left, 0, "no late member starts the chord again");
    w.stop().await;
}

#[tokio::test]
async fn a_member_lost_after_completing_the_join_publishes_the_body_when_it_runs_again() {
    let c = capture();
    let w = start(&c).await;
    w.push(&c.members[0]).await;
    w.ended(&id_of(&c.members[0])).await;
    // The second member's first run joined (and completed the chord), then its worker died
    // before the step that publishes the body.
    let second = id_of(&c.members[1]);
    let meta = ResultMeta::success(&second, json!(4));
    let member = ChordMember {
        group_id: &c.group,
        task_id: &second,
        group_index: Some(1),
        meta: &meta,
    };
    let join = w.results.join_chord(&member, true, 1 << 20).await.unwrap();
    assert!(
        matches!(join, Join::Complete(ref e) if e.len() == 2),
        "{join:?}"
    );
    // Another member that ran again now does not publish it: only the completer does.
    w.push(&c.members[0]).await;
    w.drained().await;
    assert_eq!(
        w.results.get(&c.body_id).await.unwrap().status,
        TaskState::Pending
    );
    w.push(&c.members[1]).await;
    assert_eq!(w.ended(&c.body_id).await.result, json!(6));
    w.drained().await;
    assert_eq!(w.calls.of("tsum"), vec![json!([2, 4])]);
    w.stop().await;
}

#[tokio::test]
async fn with_result_chord_ordered_false_the_results_come_in_the_order_members_ended() {
    let c = capture();
    let w = start_with(&c, &[("RESULT_CHORD_ORDERED", "false")], false).await;
    w.push(&c.members[1]).await;
    w.ended(&id_of(&c.members[1])).await;
    let join_key = format!("celery-taskset-meta-{}.j", c.group);
    let listed: i64 = w.conn.clone().llen(&join_key).await.unwrap();
    assert_eq!(listed, 1, "a LIST, as Celery's result_chord_ordered=False");
    w.push(&c.members[0]).await;
    assert_eq!(w.ended(&c.body_id).await.result, json!(6));
    assert_eq!(w.calls.of("tsum"), vec![json!([4, 2])]);
    w.stop().await;
}

#[tokio::test]
async fn with_results_in_another_database_the_body_runs_once() {
    let c = capture();
    let w = start_with(&c, &[], true).await;
    w.push(&c.members[0]).await;
    w.push(&c.members[1]).await;
    assert_eq!(w.ended(&c.body_id).await.result, json!(6));
    w.push(&c.members[1]).await;
    w.drained().await;
    assert_eq!(w.calls.of("tsum"), vec![json!([2, 4])]);
    let claim: Option<String> = w
        .results
        .connection()
        .clone()
        .get(format!("celery-taskset-meta-{}.c", c.group))
        .await
        .unwrap();
    assert_eq!(claim.as_deref(), Some("done"));
    w.stop().await;
}

/// A chord published by the Rust producer (`Broker::publish_chord`) runs on the Rust worker as
/// one Celery put there does: the body once, with the results in header order.
#[tokio::test]
async fn a_chord_from_the_rust_producer_runs_its_body_once_in_header_order() {
    let c = capture();
    let w = start(&c).await;
    let broker = celery_redis::broker::Broker::new(w.conn.clone(), "celery", "rust@test");
    let mut header: Vec<_> = [(5, 1), (1, 1), (10, 10)]
        .iter()
        .map(|(x, y)| {
            let kwargs = json!({"x": x, "y": y}).as_object().cloned().unwrap();
            celery_redis::protocol::TaskMessage::new("add", "celery", kwargs)
        })
        .collect();
    let body = serde_json::from_value(json!({"task": "tsum"})).unwrap();
    let ids = broker
        .publish_chord(&mut header, body, &w.results)
        .await
        .unwrap();
    let indexes: Vec<_> = header.iter().map(|m| m.group_index).collect();
    assert_eq!(indexes, vec![Some(0), Some(1), Some(2)]);
    let body = w.ended(&ids.body_id).await;
    assert_eq!(body.status, TaskState::Success, "{body:?}");
    assert_eq!(body.result, json!(28));
    w.drained().await;
    assert_eq!(w.calls.of("tsum"), vec![json!([6, 2, 20])]);
    w.stop().await;
}

/// A group published by the Rust producer (`Broker::publish_group`): each member's result
/// names the group, as a Python `GroupResult(group_id, ...)` expects.
#[tokio::test]
async fn a_group_from_the_rust_producer_stores_each_result_under_its_group() {
    let c = capture();
    let w = start(&c).await;
    let broker = celery_redis::broker::Broker::new(w.conn.clone(), "celery", "rust@test");
    let mut members: Vec<_> = (1..=3)
        .map(|x| {
            let kwargs = json!({"x": x, "y": 0}).as_object().cloned().unwrap();
            celery_redis::protocol::TaskMessage::new("add", "celery", kwargs)
        })
        .collect();
    let group_id = broker.publish_group(&mut members).await.unwrap();
    for (i, m) in members.iter().enumerate() {
        let meta = w.ended(&m.id).await;
        assert_eq!(meta.result, json!(i + 1));
        assert_eq!(meta.group_id.as_deref(), Some(group_id.as_str()));
    }
    w.stop().await;
}

/// The member with its `embed.chord` (the body) changed by `f` (its body re-encoded).
fn with_chord_body(member: &Value, f: impl Fn(&mut Value)) -> Value {
    let b64 = base64::engine::general_purpose::STANDARD;
    let raw = b64.decode(member["body"].as_str().unwrap()).unwrap();
    let mut body: Value = serde_json::from_slice(&raw).unwrap();
    f(&mut body[2]["chord"]);
    let mut out = member.clone();
    out["body"] = json!(b64.encode(body.to_string()));
    out
}

#[tokio::test]
async fn a_body_the_rust_worker_does_not_publish_gets_a_failure_not_pending_forever() {
    let c = capture();
    let w = start(&c).await;
    // A careless client's chord whose body is a chain: not published here, and the client
    // waiting on the body's id must learn it rather than wait forever.
    let chain_body = |b: &mut Value| b["subtask_type"] = json!("chain");
    for m in &c.members {
        w.push(&with_chord_body(m, chain_body)).await;
    }
    let body = w.ended(&c.body_id).await;
    assert_eq!(body.status, TaskState::Failure, "{body:?}");
    let exc = body.exception().unwrap();
    assert_eq!(exc.exc_type, "NotImplementedError", "{exc:?}");
    assert!(w.calls.of("tsum").is_empty());
    w.stop().await;
}

#[tokio::test]
async fn chord_keys_of_another_type_fail_the_body_instead_of_rerunning_the_member() {
    let c = capture();
    let w = start(&c).await;
    // Junk under the chord's dedup key (a string where Celery 5.7 keeps a SET): Celery fails
    // the body with `ChordError('Join error: ...')`; the member ends once and is acked.
    let dedup = format!("celery-taskset-meta-{}.d", c.group);
    let _: () = w.conn.clone().set(&dedup, "junk").await.unwrap();
    w.push(&c.members[0]).await;
    let body = w.ended(&c.body_id).await;
    assert_eq!(body.status, TaskState::Failure, "{body:?}");
    let exc = body.exception().unwrap();
    assert_eq!(exc.exc_type, "ChordError");
    assert!(exc.message().starts_with("Join error"), "{exc:?}");
    assert_eq!(
        w.ended(&id_of(&c.members[0])).await.status,
        TaskState::Success
    );
    w.drained().await;
    // The other member then finds the chord done and publishes nothing more.
    w.push(&c.members[1]).await;
    assert_eq!(
        w.ended(&id_of(&c.members[1])).await.status,
        TaskState::Success
    );
    w.drained().await;
    assert!(w.calls.of("tsum").is_empty());
    w.stop().await;
}

/// A chord with no header from the Rust producer: nothing would ever complete it (its body
/// would stay PENDING for good), so it is refused before anything is written.
#[tokio::test]
async fn a_chord_with_no_header_from_the_rust_producer_is_refused() {
    let c = capture();
    let w = start(&c).await;
    let broker = celery_redis::broker::Broker::new(w.conn.clone(), "celery", "rust@test");
    let body = serde_json::from_value(json!({"task": "tsum"})).unwrap();
    let err = broker
        .publish_chord(&mut [], body, &w.results)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("header"), "{err}");
    let keys: Vec<String> = w.conn.clone().keys("celery-taskset-meta-*").await.unwrap();
    assert!(
        keys.iter().all(|k| !k.ends_with(".s") || *k == c.size_key),
        "{keys:?}"
    );
    w.stop().await;
}

#[tokio::test]
async fn results_that_fit_the_join_but_not_the_body_message_fail_the_body_clearly() {
    let c = capture();
    let w = start_with(&c, &[("MESSAGE_MAX_BYTES", "16384")], false).await;
    // 2 x 7,000 bytes of results: under the join's 16,384, but the body's message carries
    // them base64-encoded (4/3), which no worker with this limit would take.
    for m in &c.members {
        let mut big = with_args(m, json!([7000, 0]));
        big["headers"]["task"] = json!("big");
        w.push(&big).await;
    }
    let body = w.ended(&c.body_id).await;
    assert_eq!(body.status, TaskState::Failure, "{body:?}");
    let exc = body.exception().unwrap();
    assert_eq!(exc.exc_type, "ChordError", "{exc:?}");
    w.drained().await;
    let dead: i64 = w.conn.clone().llen("fleet:dead_letter").await.unwrap_or(0);
    assert_eq!(dead, 0, "nothing is published only to be dead-lettered");
    w.stop().await;
}
