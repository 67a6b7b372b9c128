//! `worker healthcheck`, the image's HEALTHCHECK and a Kubernetes probe: the real binary pings
//! a running worker binary over the pidbox, by name or by the node its metrics address names,
//! and fails when that one does not answer; two workers on one host; the command line.

use std::process::Command;

use testkit::stack::run_worker;
use testkit::{Proc, Stack};

const WORKER: &str = env!("CARGO_BIN_EXE_worker");

#[test]
fn passes_by_name_while_the_named_worker_runs_and_fails_once_it_stopped() {
    let s = Stack::new(WORKER);
    let env = [("WORKER_NAME", "probe@%h".to_owned())];
    let running = s.worker(&env);
    let (code, stdout, stderr) = s.healthcheck(&env);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("probe@") && stdout.contains("pong"),
        "{stdout}"
    );
    // Another name on the same Redis is not this worker.
    let other = [
        ("WORKER_NAME", "other@%h".to_owned()),
        ("REDIS_TIMEOUT_MS", "300".to_owned()),
    ];
    let (code, _, stderr) = s.healthcheck(&other);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("unhealthy"), "{stderr}");
    running.stop();
    let mut env = env.to_vec();
    env.push(("REDIS_TIMEOUT_MS", "300".to_owned()));
    let (code, _, stderr) = s.healthcheck(&env);
    assert_eq!(code, Some(1), "{stderr}");
}

/// Without `WORKER_NAME`, the worker on `WORKER_METRICS_BIND` says which node it is.
#[test]
fn without_a_name_it_pings_the_worker_listening_on_its_metrics_address() {
    let s = Stack::new(WORKER);
    let bind = format!("127.0.0.1:{}", testkit::free_port());
    let env = [("WORKER_METRICS_BIND", bind)];
    let _running = s.worker(&env);
    let (code, stdout, stderr) = s.healthcheck(&env);
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
    let s = Stack::new(WORKER);
    let _alive = s.worker(&[("WORKER_NAME", "py1@%h".to_owned())]);
    let env = [
        // Where this (dead) worker would listen: nobody does.
        (
            "WORKER_METRICS_BIND",
            format!("127.0.0.1:{}", testkit::free_port()),
        ),
        ("REDIS_TIMEOUT_MS", "300".to_owned()),
    ];
    let (code, stdout, stderr) = s.healthcheck(&env);
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
    let s = Stack::new(WORKER);
    let redis = &s.redis;
    // Hold the default port (if something else holds it, it is taken all the same).
    let _held = std::net::TcpListener::bind("127.0.0.1:9808");
    let mut cmd = Command::new(WORKER);
    cmd.env_clear()
        .env("RUST_LOG", "info")
        .env("REDIS_URL", redis.url())
        .env("WORKER_NAME", "second@%h")
        .current_dir(std::env::temp_dir());
    // Ready (consuming, so answering pings) before its health check asks it.
    let (second, lines) = Proc::spawn_command_all(cmd, &["instead;", "consuming queue"]);
    assert!(lines[0].contains("127.0.0.1:9808 is taken"), "{}", lines[0]);
    // Its health check pings it by name, never the worker that holds the default port.
    let (code, stdout, stderr) = s.healthcheck(&[("WORKER_NAME", "second@%h".to_owned())]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.starts_with("second@"), "{stdout}");
    assert!(second.terminate().success());
    // Unnamed, it could not be told from the worker on the default port: it refuses to start.
    let (code, _, err) = run_worker(WORKER, &[], &[("REDIS_URL", redis.url())]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("WORKER_NAME") && err.contains("is taken"),
        "{err}"
    );

    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let env = [
        ("REDIS_URL", redis.url()),
        (
            "WORKER_METRICS_BIND",
            held.local_addr().unwrap().to_string(),
        ),
    ];
    let (code, _, err) = run_worker(WORKER, &[], &env);
    assert_eq!(code, Some(2));
    assert!(err.contains("WORKER_METRICS_BIND"));
}

/// `--help` and `--version` answer without any setting; an unknown command is a usage error.
#[test]
fn the_command_line_explains_itself() {
    // A setting that would be refused: --help must not read it.
    let run = |arg: &str| run_worker(WORKER, &[arg], &[("WORKER_CONCURRENCY", "lots".into())]);
    for flag in ["--help", "-h"] {
        let (code, text, _) = run(flag);
        assert_eq!(code, Some(0), "{text}");
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
    let (code, out, _) = run("--version");
    assert_eq!(code, Some(0));
    assert!(out.starts_with("worker "));
    let (code, _, err) = run("frobnicate");
    assert_eq!(code, Some(2));
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
    let (code, _, stderr) = run_worker(WORKER, &["healthcheck"], &env);
    assert_eq!(code, Some(1), "{stderr}");
}
