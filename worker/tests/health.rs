//! `worker healthcheck`, the image's HEALTHCHECK and a Kubernetes probe: the real binary pings
//! a running worker binary over the pidbox, by name or by the node its metrics address names,
//! and fails when that one does not answer; two workers on one host; the command line.

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

/// Without `WORKER_NAME`, the worker on `WORKER_METRICS_BIND` says which node it is.
#[test]
fn without_a_name_it_pings_the_worker_listening_on_its_metrics_address() {
    let redis = TestRedis::start();
    let bind = format!("127.0.0.1:{}", testkit::free_port());
    let env = [("REDIS_URL", redis.url()), ("WORKER_METRICS_BIND", bind)];
    let _running = worker(&env);
    let (code, stdout, stderr) = healthcheck(&env);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.starts_with("rust") && stdout.contains(": pong"),
        "{stdout}"
    );
}

/// Another node alive on the host (a Python worker, another Rust worker) never answers for
/// this one: with ours gone, the check fails although a node of the host still pongs.
#[test]
fn another_worker_on_the_host_does_not_answer_for_a_dead_one() {
    let redis = TestRedis::start();
    let other = [
        ("REDIS_URL", redis.url()),
        ("WORKER_NAME", "py1@%h".to_owned()),
    ];
    let _alive = worker(&other);
    let env = [
        ("REDIS_URL", redis.url()),
        // Where this (dead) worker would listen: nobody does.
        (
            "WORKER_METRICS_BIND",
            format!("127.0.0.1:{}", testkit::free_port()),
        ),
        ("REDIS_TIMEOUT_MS", "300".to_owned()),
    ];
    let (code, stdout, stderr) = healthcheck(&env);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("unhealthy: no worker answers on"),
        "{stderr}"
    );
    assert!(!stdout.contains("py1@"), "{stdout}");
}

/// A second, named worker on a host whose default metrics port is taken starts on a free port
/// (as Celery users run several workers per host, each with `-n`) and its health check finds
/// it; an unnamed one, which its health check could not tell from the first, and an address
/// asked for and taken exit 2.
#[test]
fn a_taken_default_metrics_port_gives_way_and_a_taken_chosen_one_refuses() {
    let redis = TestRedis::start();
    // Hold the default port (if something else holds it, it is taken all the same).
    let _held = std::net::TcpListener::bind("127.0.0.1:9808");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_worker"));
    cmd.env_clear()
        .env("RUST_LOG", "info")
        .env("REDIS_URL", redis.url())
        .env("WORKER_NAME", "second@%h")
        .current_dir(std::env::temp_dir());
    let (second, line) = Proc::spawn_command(cmd, "instead;");
    assert!(line.contains("127.0.0.1:9808 is taken"), "{line}");
    // Its health check pings it by name, never the worker that holds the default port.
    let (code, stdout, stderr) = healthcheck(&[
        ("REDIS_URL", redis.url()),
        ("WORKER_NAME", "second@%h".to_owned()),
    ]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.starts_with("second@"), "{stdout}");
    assert!(second.terminate().success());
    // Unnamed, it could not be told from the worker on the default port: it refuses to start.
    let out = Command::new(env!("CARGO_BIN_EXE_worker"))
        .env_clear()
        .env("REDIS_URL", redis.url())
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("WORKER_NAME") && err.contains("is taken"),
        "{err}"
    );

    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_worker"))
        .env_clear()
        .env("REDIS_URL", redis.url())
        .env(
            "WORKER_METRICS_BIND",
            held.local_addr().unwrap().to_string(),
        )
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("WORKER_METRICS_BIND"));
}

/// `--help` and `--version` answer without any setting; an unknown command is a usage error.
#[test]
fn the_command_line_explains_itself() {
    let run = |arg: &str| {
        Command::new(env!("CARGO_BIN_EXE_worker"))
            .arg(arg)
            .env_clear()
            // A setting that would be refused: --help must not read it.
            .env("WORKER_CONCURRENCY", "lots")
            .current_dir(std::env::temp_dir())
            .output()
            .unwrap()
    };
    for flag in ["--help", "-h"] {
        let out = run(flag);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{text}");
        for sub in [
            "run",
            "healthcheck",
            "stats",
            "dead-letters",
            "requeue-dead",
            "purge-dead",
        ] {
            assert!(text.contains(sub), "{flag} lacks {sub}: {text}");
        }
        assert!(text.contains(".env.example"), "{text}");
    }
    let out = run("--version");
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("worker "));
    let out = run("frobnicate");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("frobnicate") && !err.contains("Some("),
        "{err}"
    );
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
