//! The example's worker binary called from a real Python Celery client (`tests/client.py`,
//! run by the python of the virtual environment in `CELERY_PYTHON`, one with `celery[redis]`)
//! over a private redis-server: `add.delay(2, 3)` and `app.send_task("add", args=[2, 3])`
//! return 5, keyword arguments bind by name, and a call that does not fit `add(x, y)` raises
//! Python's own TypeError from `.get()`. CI runs it once with Celery 5.4 and once with 5.7.
//! Ignored by the plain test command (it needs Python); run it with
//! `CELERY_PYTHON=<venv>/bin/python cargo test -p example-add --test interop -- --ignored`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use testkit::{Proc, TestRedis};

/// The python of a venv with Celery, from `CELERY_PYTHON`; a run without it is a mistake.
fn python() -> PathBuf {
    std::env::var_os("CELERY_PYTHON")
        .map(PathBuf::from)
        .expect("set CELERY_PYTHON to a python that has celery[redis] (see README)")
}

/// Runs `client.py` against `redis` and returns its JSON report.
fn client(py: &Path, redis: &TestRedis) -> Value {
    let out = Command::new(py)
        .arg("client.py")
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests"))
        .env("REDIS_URL", redis.url())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("run the Python client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("client printed {last:?}: {e}"))
}

#[test]
#[ignore = "needs CELERY_PYTHON, a python with celery[redis]; CI runs it for Celery 5.4 and 5.7"]
fn a_python_client_calls_add_and_gets_sums_and_type_errors() {
    let py = python();
    let redis = TestRedis::start();
    let (_worker, _) = Proc::spawn(
        env!("CARGO_BIN_EXE_example-add").as_ref(),
        &[],
        &[("REDIS_URL", redis.url())],
        "consuming queue",
    );
    let r = client(&py, &redis);
    assert_eq!(r["delay"], json!({"ok": 5}), "{r}");
    assert_eq!(r["send_task"], json!({"ok": 5}), "{r}");
    assert_eq!(r["kwargs"], json!({"ok": 3}), "{r}");
    assert_eq!(r["mixed"], json!({"ok": 42}), "{r}");
    // Celery rebuilds the worker's exception as Python's builtin TypeError, message and all.
    let type_error = |message: &str| json!({"error": "TypeError", "module": "builtins", "message": message, "type_error": true});
    assert_eq!(
        r["missing"],
        type_error("add() missing 1 required positional argument: 'y'"),
        "{r}"
    );
    assert_eq!(
        r["too_many"],
        type_error("add() takes 2 positional arguments but 3 were given"),
        "{r}"
    );
    assert_eq!(
        r["unknown_kwarg"],
        type_error("add() got an unexpected keyword argument 'z'"),
        "{r}"
    );
}
