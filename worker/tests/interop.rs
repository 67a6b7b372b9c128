//! Interoperability with real Python Celery, both ways: Python clients and workers from the
//! virtual environment in `CELERY_PYTHON` (a python with `celery[redis]`), the Rust binaries,
//! and a private redis-server. CI runs this once with Celery 5.4 and once with the newest 5.x.
//! Every test here is ignored by the plain test command (it needs Python); run them with
//! `CELERY_PYTHON=<venv>/bin/python cargo test -p worker --test interop -- --ignored`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use celery_redis::result::{ResultBackend, ResultMeta, TaskState};
use serde_json::{json, Value};
use testkit::{listening_addr, sibling_binary, Proc, TestRedis};

const WAIT: Duration = Duration::from_secs(60);

/// The python of a venv with Celery, from `CELERY_PYTHON`; a run without it is a mistake.
fn python() -> PathBuf {
    std::env::var_os("CELERY_PYTHON")
        .map(PathBuf::from)
        .expect("set CELERY_PYTHON to a python that has celery[redis] (see README)")
}

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

fn python_env(cmd: &mut Command, redis: &TestRedis, extra: &[(&str, &str)]) {
    cmd.current_dir(interop_dir())
        .env("REDIS_URL", redis.url())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .envs(extra.iter().copied());
}

/// Runs a client scenario and returns its JSON report.
fn client(py: &Path, redis: &TestRedis, args: &[&str]) -> Value {
    let mut cmd = Command::new(py);
    cmd.arg("client.py").args(args);
    python_env(&mut cmd, redis, &[]);
    let out = cmd.output().expect("run the Python client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "client {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("client {args:?} printed {last:?}: {e}"))
}

fn rust_worker(redis: &TestRedis, extra: &[(&str, &str)]) -> Proc {
    // The scenarios' webhook receivers listen on loopback, refused unless allowed.
    let mut env = vec![
        ("REDIS_URL", redis.url()),
        ("WEBHOOK_ALLOW", "127.0.0.1".to_owned()),
    ];
    env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    Proc::spawn(
        env!("CARGO_BIN_EXE_worker").as_ref(),
        &[],
        &env,
        "consuming queue",
    )
    .0
}

fn python_worker(py: &Path, redis: &TestRedis, extra: &[(&str, &str)]) -> Proc {
    let mut cmd = Command::new(py);
    cmd.args([
        "-m",
        "celery",
        "-A",
        "fleet",
        "worker",
        "-l",
        "info",
        "-c",
        "2",
        "--without-gossip",
    ])
    .args(["--without-mingle", "--without-heartbeat", "-n"])
    .arg(format!("py-{}@localhost", uuid::Uuid::new_v4()));
    python_env(&mut cmd, redis, extra);
    Proc::spawn_command(cmd, " ready.").0
}

async fn backend(redis: &TestRedis) -> ResultBackend {
    ResultBackend::new(
        redis.manager().await,
        redis.client(),
        Duration::from_secs(3600),
        true,
    )
}

async fn stock(redis: &TestRedis, sku: &str, n: i64) {
    shop::inventory::set_stock(&redis.manager().await, sku, n)
        .await
        .unwrap();
}

#[tokio::test]
#[ignore = "needs CELERY_PYTHON, a python with celery[redis]; CI runs it for Celery 5.4 and 5.7"]
async fn python_clients_call_the_rust_worker_and_get_its_results_and_exceptions() {
    let py = python();
    let redis = TestRedis::start();
    stock(&redis, "A", 1000).await;
    let _worker = rust_worker(&redis, &[]);
    let r = tokio::task::spawn_blocking(move || {
        let report = client(&py, &redis, &["basic"]);
        (report, redis)
    })
    .await
    .unwrap()
    .0;
    for call in ["delay", "apply_async", "send_task", "positional"] {
        assert_eq!(r[call]["ok"]["status"], "confirmed", "{call}: {}", r[call]);
        assert_eq!(r[call]["ok"]["total_cents"], 250, "{call}");
    }
    assert_eq!(r["invalid"]["error"], "ValueError");
    assert_eq!(r["invalid"]["value_error"], true);
    assert!(r["invalid"]["message"]
        .as_str()
        .unwrap()
        .contains("items: must contain at least one item"));
    assert_eq!(r["unknown_id_state"], "PENDING");
    assert_eq!(r["state_while_running"], "STARTED");
    assert_eq!(r["held"]["ok"]["status"], "delivered");
    assert_eq!(r["state_after"], "SUCCESS");
    assert_eq!(r["idempotency_keys"], json!(["py-held"]));
}

#[tokio::test]
#[ignore = "needs CELERY_PYTHON, a python with celery[redis]; CI runs it for Celery 5.4 and 5.7"]
async fn python_canvas_links_chains_and_groups_run_on_the_rust_worker() {
    let py = python();
    let redis = TestRedis::start();
    stock(&redis, "A", 1000).await;
    let _worker = rust_worker(&redis, &[]);
    let (r, _redis) =
        tokio::task::spawn_blocking(move || (client(&py, &redis, &["canvas"]), redis))
            .await
            .unwrap();
    assert_eq!(r["link_parent"]["ok"]["status"], "confirmed", "{r}");
    assert_eq!(r["link_callback"]["ok"]["notification_id"], "py-cb");
    assert_eq!(r["link_error_parent"]["error"], "ValueError");
    assert_eq!(r["link_error_errback"]["ok"]["notification_id"], "py-eb");
    assert_eq!(r["chain2_first"]["ok"]["order_id"], "py-chain2");
    assert_eq!(r["chain2_last"]["ok"]["notification_id"], "py-chain2-n");
    let three: Vec<&Value> = r["chain3"].as_array().unwrap().iter().collect();
    assert_eq!(three[0]["ok"]["order_id"], "py-chain3");
    assert_eq!(three[1]["ok"]["notification_id"], "py-c3-a");
    assert_eq!(three[2]["ok"]["notification_id"], "py-c3-b");
    assert_eq!(
        r["chain3_parent_ids"][0], r["chain3_parent_ids"][1],
        "pre-assigned ids, parent set"
    );
    assert_eq!(r["prepended"]["error"], "ValueError", "{}", r["prepended"]);
    assert!(r["prepended"]["message"]
        .as_str()
        .unwrap()
        .contains("notification_id: must be a string"));
    let members = r["group"]["ok"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", r["group"]));
    assert_eq!(members.len(), 2);
    assert_eq!(members[0]["order_id"], "py-g1");
    assert_eq!(members[1]["order_id"], "py-g2");
}

#[tokio::test]
#[ignore = "needs CELERY_PYTHON, a python with celery[redis]; CI runs it for Celery 5.4 and 5.7"]
async fn python_options_countdown_eta_expires_ignore_result_time_limit_and_retries() {
    let py = python();
    let redis = TestRedis::start();
    stock(&redis, "A", 1000).await;
    let _worker = rust_worker(
        &redis,
        &[
            ("WORKER_CONCURRENCY", "1"),
            ("TASK_RETRY_BACKOFF_MS", "50"),
            ("TASK_MAX_RETRIES", "2"),
        ],
    );
    let (r, redis) =
        tokio::task::spawn_blocking(move || (client(&py, &redis, &["options"]), redis))
            .await
            .unwrap();
    assert_eq!(r["countdown"]["ok"]["status"], "confirmed", "{r}");
    assert!(
        r["countdown_waited"].as_f64().unwrap() >= 1.9,
        "{}",
        r["countdown_waited"]
    );
    assert_eq!(r["eta"]["ok"]["status"], "confirmed");
    assert!(r["eta_waited"].as_f64().unwrap() >= 0.9);
    assert_eq!(r["expired"]["error"], "TaskRevokedError");
    // ignore_result: the effect happened (it ran before the next task on one slot), no result.
    assert_eq!(r["after_ignored"]["ok"]["status"], "delivered");
    let conn = redis.manager().await;
    assert!(shop::notifications::delivery(&conn, "py-ignored")
        .await
        .unwrap()
        .is_some());
    let ignored = backend(&redis)
        .await
        .get(r["ignored_id"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(ignored.status, TaskState::Pending, "no result stored");
    assert_eq!(
        r["time_limit"]["error"], "TimeLimitExceeded",
        "{}",
        r["time_limit"]
    );
    assert_eq!(
        r["retried"]["ok"]["status"], "delivered",
        "{}",
        r["retried"]
    );
    assert!(
        r["retry_states"]
            .as_array()
            .unwrap()
            .contains(&json!("RETRY")),
        "{}",
        r["retry_states"]
    );
    assert_eq!(
        r["retry_hits"],
        json!(["py-retried", "py-retried", "py-retried"])
    );
    assert_eq!(r["spent"]["error"], "RuntimeError", "{}", r["spent"]);
    assert_eq!(
        r["spent_hits"], 1,
        "retries=2 already spent the budget of 2"
    );
}

#[tokio::test]
#[ignore = "needs CELERY_PYTHON, a python with celery[redis]; CI runs it for Celery 5.4 and 5.7"]
async fn python_priorities_are_served_lowest_number_first() {
    let py = python();
    let redis = TestRedis::start();
    stock(&redis, "A", 1000).await;
    let py2 = py.clone();
    let (ids, redis) =
        tokio::task::spawn_blocking(move || (client(&py2, &redis, &["publish-priorities"]), redis))
            .await
            .unwrap();
    let _worker = rust_worker(&redis, &[("WORKER_CONCURRENCY", "1")]);
    let results = backend(&redis).await;
    let mut done = Vec::new();
    for p in ["0", "5", "9"] {
        let meta = results.wait(ids[p].as_str().unwrap(), WAIT).await.unwrap();
        done.push((meta.date_done.clone().unwrap(), p));
    }
    done.sort();
    let order: Vec<&str> = done.iter().map(|(_, p)| *p).collect();
    assert_eq!(order, vec!["0", "5", "9"]);
}

#[tokio::test]
#[ignore = "needs CELERY_PYTHON, a python with celery[redis]; CI runs it for Celery 5.4 and 5.7"]
async fn rust_services_hand_work_to_a_python_worker_and_read_its_results() {
    let py = python();
    let redis = TestRedis::start();
    let _py_worker = python_worker(&py, &redis, &[]);
    let anchor = env!("CARGO_BIN_EXE_worker");
    let env = |var: &'static str| vec![("REDIS_URL", redis.url()), (var, "127.0.0.1:0".to_owned())];
    let (_orders, line) = Proc::spawn(
        &sibling_binary(anchor, "service-order"),
        &[],
        &env("ORDER_BIND"),
        "listening on",
    );
    let orders = format!("http://{}", listening_addr(&line));
    let (_notes, line) = Proc::spawn(
        &sibling_binary(anchor, "service-notification"),
        &[],
        &env("NOTIFICATION_BIND"),
        "listening on",
    );
    let notes = format!("http://{}", listening_addr(&line));
    let http = reqwest::Client::new();
    let results = backend(&redis).await;

    let order = json!({"order_id": "to-python", "customer": {"id": "c", "email": "c@example.com"},
                       "items": [{"sku": "A", "quantity": 3, "unit_price_cents": 100}]});
    let accepted: Value = http
        .post(format!("{orders}/orders"))
        .json(&order)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    results
        .wait(accepted["task_id"].as_str().unwrap(), WAIT)
        .await
        .unwrap();
    let view: Value = http
        .get(format!("{orders}/orders/to-python"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(view["state"], "SUCCESS", "{view}");
    assert_eq!(view["result"]["runner"], "python");
    assert_eq!(view["result"]["total_cents"], 300);

    let note = json!({"notification_id": "n-python", "recipient": "c@example.com", "channel": "log",
                      "subject": "s", "body": "b"});
    let accepted: Value = http
        .post(format!("{notes}/notifications"))
        .json(&note)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    results
        .wait(accepted["task_id"].as_str().unwrap(), WAIT)
        .await
        .unwrap();
    let view: Value = http
        .get(format!("{notes}/notifications/n-python"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(view["state"], "SUCCESS", "{view}");
    assert_eq!(view["result"]["runner"], "python");
}

#[tokio::test]
#[ignore = "needs CELERY_PYTHON, a python with celery[redis]; CI runs it for Celery 5.4 and 5.7"]
async fn a_python_and_a_rust_worker_share_one_queue() {
    let py = python();
    let redis = TestRedis::start();
    stock(&redis, "A", 1000).await;
    let _py_worker = python_worker(&py, &redis, &[]);
    let _rust_worker = rust_worker(&redis, &[]);
    let (ids, redis) =
        tokio::task::spawn_blocking(move || (client(&py, &redis, &["send-many", "40"]), redis))
            .await
            .unwrap();
    let results = backend(&redis).await;
    let (mut by_python, mut by_rust) = (0, 0);
    for id in ids.as_array().unwrap() {
        let meta = results.wait(id.as_str().unwrap(), WAIT).await.unwrap();
        assert_eq!(meta.status, TaskState::Success, "{meta:?}");
        if meta.result["runner"] == "python" {
            by_python += 1;
        } else {
            by_rust += 1;
        }
    }
    assert_eq!(by_python + by_rust, 40);
    assert!(
        by_python > 0 && by_rust > 0,
        "python ran {by_python}, rust ran {by_rust}"
    );
}

/// Waits out a visibility timeout: the only condition here is the passing of time itself.
async fn past_visibility(secs: u64) {
    tokio::time::sleep(Duration::from_secs(secs) + Duration::from_millis(500)).await;
}

#[tokio::test]
#[ignore = "needs CELERY_PYTHON, a python with celery[redis]; CI runs it for Celery 5.4 and 5.7"]
async fn a_python_worker_restores_the_task_of_a_killed_rust_worker() {
    let py = python();
    let redis = TestRedis::start();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let rust = rust_worker(
        &redis,
        &[
            ("VISIBILITY_TIMEOUT_SECS", "2"),
            ("WEBHOOK_TIMEOUT_MS", "600000"),
        ],
    );
    let py2 = py.clone();
    let (id, redis) =
        tokio::task::spawn_blocking(move || (client(&py2, &redis, &["send-one", &url]), redis))
            .await
            .unwrap();
    let (_socket, _) = tokio::time::timeout(WAIT, listener.accept())
        .await
        .unwrap()
        .unwrap();
    rust.kill_group();
    past_visibility(2).await;
    let _py_worker = python_worker(&py, &redis, &[("VISIBILITY_TIMEOUT_SECS", "2")]);
    let meta = backend(&redis)
        .await
        .wait(id.as_str().unwrap(), WAIT)
        .await
        .unwrap();
    assert_eq!(meta.status, TaskState::Success, "{meta:?}");
    assert_eq!(meta.result["runner"], "python");
}

#[tokio::test]
#[ignore = "needs CELERY_PYTHON, a python with celery[redis]; CI runs it for Celery 5.4 and 5.7"]
async fn a_rust_worker_restores_the_task_of_a_killed_python_worker() {
    let py = python();
    let redis = TestRedis::start();
    stock(&redis, "A", 10).await;
    let python = python_worker(
        &py,
        &redis,
        &[("VISIBILITY_TIMEOUT_SECS", "2"), ("PY_TASK_SLEEP", "60")],
    );
    let (id, redis) =
        tokio::task::spawn_blocking(move || (client(&py, &redis, &["send-one", "order"]), redis))
            .await
            .unwrap();
    let id = id.as_str().unwrap().to_owned();
    let results = backend(&redis).await;
    let started: ResultMeta = results
        .wait_for(&id, WAIT, |s| *s == TaskState::Started)
        .await
        .unwrap();
    assert_eq!(started.status, TaskState::Started);
    python.kill_group();
    let _rust = rust_worker(&redis, &[("VISIBILITY_TIMEOUT_SECS", "2")]);
    let meta = results.wait(&id, WAIT).await.unwrap();
    assert_eq!(meta.status, TaskState::Success, "{meta:?}");
    assert_eq!(meta.result["status"], "confirmed");
    assert!(
        meta.result.get("runner").is_none(),
        "run by the Rust worker: {}",
        meta.result
    );
}
