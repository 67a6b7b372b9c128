//! What each binary does with a configuration it must refuse: it exits with status 2 and a line
//! on stderr naming the variable, whatever RUST_LOG says, instead of looping or running on.

use std::process::Command;

use testkit::TestRedis;

use super::{binary, refusal, BINARIES};

/// Runs `name` with exactly `env` (nothing from `.env`); returns its exit code and stderr. A
/// binary still running after 20 s has not refused anything: it is killed and the test fails.
fn run(name: &str, env: &[(&str, String)]) -> (Option<i32>, String) {
    let mut cmd = Command::new(binary(name));
    cmd.env_clear()
        .env("WORKER_METRICS_BIND", "127.0.0.1:0")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir(std::env::temp_dir())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let out = refusal(cmd, "its configuration");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_evicting_redis_is_refused_at_start_naming_its_policy() {
    let redis = TestRedis::start_with(&["--maxmemory-policy", "allkeys-lru"]);
    for name in BINARIES {
        let (code, stderr) = run(
            name,
            &[
                ("REDIS_URL", redis.url()),
                ("ORDER_BIND", "127.0.0.1:0".into()),
                ("NOTIFICATION_BIND", "127.0.0.1:0".into()),
            ],
        );
        assert_eq!(code, Some(2), "{name}: {stderr}");
        assert!(stderr.contains("allkeys-lru"), "{name}: {stderr}");
        assert!(stderr.contains("ALLOW_EVICTION"), "{name}: {stderr}");
    }
}

#[test]
fn bad_values_exit_2_naming_the_variable_even_with_logging_silenced() {
    let redis = TestRedis::start();
    let base = |extra: (&'static str, &str)| {
        vec![
            ("REDIS_URL", redis.url()),
            ("RUST_LOG", "lots".to_owned()),
            (extra.0, extra.1.to_owned()),
        ]
    };
    for (name, var, value) in [
        ("worker", "REDIS_URL", ""),
        ("worker", "WORKER_CONCURRENCY", "18446744073709551615"),
        ("worker", "WORKER_THREADS", "5000"),
        ("worker", "RESULT_EXPIRES_SECS", "9300000000000000"),
        ("service-order", "REDIS_TIMEOUT_MS", "18446744073709551615"),
        ("service-order", "ORDER_BIND", "0.0.0.0:0"),
        ("service-notification", "MAX_QUEUE_DEPTH", ""),
        ("worker", "BROKER_KEY_SEP", "x"),
        ("worker", "BROKER_QUEUE_ORDER", "fair"),
        // The shop's settings, read where its tasks are registered (worker::shop::tasks).
        ("worker", "WEBHOOK_CONCURRENCY", "0"),
        ("worker", "WEBHOOK_ALLOW", "10.0.0.0/33"),
        ("service-order", "BROKER_PRIORITY_STEPS", "3,6,9"),
        ("service-notification", "BROKER_KEY_PREFIX", "a b"),
    ] {
        let (code, stderr) = run(name, &base((var, value)));
        assert_eq!(code, Some(2), "{name} {var}={value:?}: {stderr}");
        assert!(
            stderr.contains(var) || stderr.contains("API_TOKENS"),
            "{name} {var}: {stderr}"
        );
    }
    // A database the server does not have is a configuration error too, not a retry loop.
    let (code, stderr) = run("worker", &[("REDIS_URL", redis.url_db(99))]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("REDIS_URL"), "{stderr}");
    // So is a Unix socket path with nothing there.
    let missing = std::env::temp_dir().join(format!("no-redis-{}.sock", std::process::id()));
    for name in BINARIES {
        let (code, stderr) = run(
            name,
            &[
                ("REDIS_URL", format!("redis+unix://{}", missing.display())),
                ("ORDER_BIND", "127.0.0.1:0".into()),
                ("NOTIFICATION_BIND", "127.0.0.1:0".into()),
            ],
        );
        assert_eq!(code, Some(2), "{name}: {stderr}");
        assert!(stderr.contains("REDIS_URL"), "{name}: {stderr}");
    }
}

#[test]
fn an_address_in_use_exits_2_naming_the_bind_variable() {
    let redis = TestRedis::start();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, stderr) = run(
        "service-order",
        &[("REDIS_URL", redis.url()), ("ORDER_BIND", addr.clone())],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("ORDER_BIND") && stderr.contains(&addr),
        "{stderr}"
    );
}

/// Sentinel URLs that point at the wrong thing stop every binary at start (a master name the
/// sentinels do not know; a plain Redis given as a sentinel), naming the variable and never the
/// password, even at `RUST_LOG=debug`; a good one serves the admin subcommands.
#[test]
fn wrong_sentinel_targets_are_refused_and_a_right_one_serves_the_admin_commands() {
    use testkit::sentinel::{TestSentinels, MASTER, PASSWORD};
    let sentinels = TestSentinels::start();
    let plain = TestRedis::start();
    let not_a_sentinel = format!("sentinel://:{PASSWORD}@127.0.0.1:{}", plain.port());
    for (url, master, says) in [
        (sentinels.url(), "nosuchmaster", "knows no master"),
        (not_a_sentinel, MASTER, "is not a sentinel"),
    ] {
        for name in BINARIES {
            let (code, stderr) = run(
                name,
                &[
                    ("REDIS_URL", url.clone()),
                    ("REDIS_SENTINEL_MASTER", master.into()),
                    ("RUST_LOG", "debug".into()),
                    ("ORDER_BIND", "127.0.0.1:0".into()),
                    ("NOTIFICATION_BIND", "127.0.0.1:0".into()),
                ],
            );
            assert_eq!(code, Some(2), "{name}: {stderr}");
            assert!(
                stderr.contains("invalid REDIS_URL") && stderr.contains(says),
                "{name}: {stderr}"
            );
            assert!(!stderr.contains(PASSWORD), "{name}: {stderr}");
        }
    }
    let out = Command::new(binary("worker"))
        .arg("stats")
        .env_clear()
        .env("REDIS_URL", sentinels.url())
        .env("REDIS_SENTINEL_MASTER", MASTER)
        .env("RUST_LOG", "debug")
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run worker stats");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("celery"), "{stdout}");
    assert!(
        !stdout.contains(PASSWORD) && !stderr.contains(PASSWORD),
        "{stdout}\n{stderr}"
    );
}
