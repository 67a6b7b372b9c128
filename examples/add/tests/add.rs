//! The example's worker binary against a private redis-server: `add` called as a Python
//! client calls it (positional and keyword arguments) returns the sum; a call that does not
//! fit the task's parameters fails with Python's TypeError.

use std::time::Duration;

use celery_redis::broker::Broker;
use celery_redis::protocol::TaskMessage;
use celery_redis::result::{ResultBackend, TaskState};
use serde_json::{json, Value};
use testkit::{Proc, TestRedis};

const WAIT: Duration = Duration::from_secs(30);

fn call(args: Value, kwargs: Value) -> TaskMessage {
    let mut msg = TaskMessage::new("add", "celery", kwargs.as_object().cloned().unwrap());
    msg.body.args = args.as_array().cloned().unwrap();
    msg
}

#[tokio::test]
async fn the_worker_runs_add_and_reports_argument_errors_as_python_does() {
    let redis = TestRedis::start();
    let (_worker, _) = Proc::spawn(
        env!("CARGO_BIN_EXE_example-add").as_ref(),
        &[],
        &[("REDIS_URL", redis.url())],
        "consuming queue",
    );
    let conn = redis.manager().await;
    let broker = Broker::new(conn.clone(), "celery", "test@host");
    let results = ResultBackend::new(conn, redis.client(), Duration::from_secs(3600), true);

    let positional = call(json!([2, 3]), json!({}));
    let by_name = call(json!([40]), json!({"y": 2}));
    let missing = call(json!([1]), json!({}));
    for msg in [&positional, &by_name, &missing] {
        broker.publish(msg).await.unwrap();
    }

    let sum = results.wait(&positional.id, WAIT).await.unwrap();
    assert_eq!((sum.status, sum.result), (TaskState::Success, json!(5)));
    let sum = results.wait(&by_name.id, WAIT).await.unwrap();
    assert_eq!((sum.status, sum.result), (TaskState::Success, json!(42)));
    let failed = results.wait(&missing.id, WAIT).await.unwrap();
    assert_eq!(failed.status, TaskState::Failure);
    assert_eq!(failed.result["exc_type"], "TypeError", "{}", failed.result);
    assert_eq!(
        failed.result["exc_message"],
        json!(["add() missing 1 required positional argument: 'y'"])
    );
}
