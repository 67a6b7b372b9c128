//! `worker healthcheck`, the image's HEALTHCHECK and a Kubernetes probe: the real binary pings
//! a running worker binary over the pidbox, by name or by host, and fails when none answers.

use std::process::Command;

use testkit::{Proc, TestRedis};

fn healthcheck(env: &[(&str, String)]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_worker"))
        .arg("healthcheck")
        .env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run worker healthcheck");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn worker(env: &[(&str, String)]) -> Proc {
    Proc::spawn(
        env!("CARGO_BIN_EXE_worker").as_ref(),
        &[],
        env,
        "consuming queue",
    )
    .0
}

#[test]
fn passes_by_name_while_the_named_worker_runs_and_fails_once_it_stopped() {
    let redis = TestRedis::start();
    let env = [
        ("REDIS_URL", redis.url()),
        ("WORKER_NAME", "probe@%h".to_owned()),
    ];
    let running = worker(&env);
    let (code, stdout, stderr) = healthcheck(&env);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("probe@") && stdout.contains("pong"),
        "{stdout}"
    );
    // Another name on the same Redis is not this worker.
    let other = [
        ("REDIS_URL", redis.url()),
        ("WORKER_NAME", "other@%h".to_owned()),
        ("REDIS_TIMEOUT_MS", "300".to_owned()),
    ];
    let (code, _, stderr) = healthcheck(&other);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("unhealthy"), "{stderr}");
    assert!(running.terminate().success());
    let mut env = env.to_vec();
    env.push(("REDIS_TIMEOUT_MS", "300".to_owned()));
    let (code, _, stderr) = healthcheck(&env);
    assert_eq!(code, Some(1), "{stderr}");
}

#[test]
fn without_a_name_any_worker_on_this_host_answers() {
    let redis = TestRedis::start();
    let env = [("REDIS_URL", redis.url())];
    let _running = worker(&env);
    let (code, stdout, stderr) = healthcheck(&env);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.starts_with("rust"), "{stdout}");
}

#[test]
fn an_unreachable_redis_is_unhealthy_not_a_hang() {
    let env = [
        ("REDIS_URL", testkit::redis::unreachable_redis_url()),
        ("REDIS_TIMEOUT_MS", "300".to_owned()),
    ];
    let (code, _, stderr) = healthcheck(&env);
    assert_eq!(code, Some(1), "{stderr}");
}
