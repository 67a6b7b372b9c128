//! `.env` as every binary reads it: from the working directory only, whole or not at all. A
//! file with one bad line stops each binary (the worker, its admin subcommands, both services)
//! with exit status 2 naming the line and never its text, whatever `RUST_LOG` says.

use std::path::Path;
use std::process::{Command, Output};

use testkit::TestRedis;

use super::{binary, refusal, BINARIES};

/// Runs `name args` in `dir` with exactly `env`. A binary still running after 20 s did not
/// refuse its `.env`: it is killed and the test fails.
fn run(name: &str, args: &[&str], dir: &Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(binary(name));
    cmd.args(args)
        .env_clear()
        .envs(env.iter().copied())
        .current_dir(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    refusal(cmd, "its .env")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_malformed_line_stops_every_binary_before_anything_starts() {
    let redis = TestRedis::start();
    let dir = testkit::temp_dir("envfile");
    // Everything a binary needs to start sits above the bad line: applied up to it, the
    // services would serve without the tokens below it.
    let env_file = format!(
        "# local settings\nREDIS_URL={}\nORDER_BIND=127.0.0.1:0\nNOTIFICATION_BIND=127.0.0.1:0\n\
         WORKER_METRICS_BIND=127.0.0.1:0\n\nthis is not an entry s3cr3t-value\n\
         API_TOKENS=t0ken-in-dotenv\n",
        redis.url()
    );
    std::fs::write(dir.path().join(".env"), env_file).unwrap();
    let runs: [(&str, &[&str]); 4] = [
        ("worker", &[]),
        ("worker", &["stats"]),
        ("service-order", &[]),
        ("service-notification", &[]),
    ];
    for (name, args) in runs {
        let out = run(name, args, dir.path(), &[("RUST_LOG", "error")]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name} {args:?}: {stderr}");
        assert!(
            stderr.contains(".env") && stderr.contains("line 7 "),
            "{name} {args:?}: {stderr}"
        );
        assert!(
            !stderr.contains("s3cr3t") && !stderr.contains("t0ken"),
            "{name} {args:?}: {stderr}"
        );
        assert!(
            out.stdout.is_empty(),
            "{name} {args:?}: {}",
            text(&out.stdout)
        );
    }
}

#[test]
fn dotenv_is_read_from_the_working_directory_only_and_the_environment_wins() {
    let redis = TestRedis::start();
    let parent = testkit::temp_dir("envfile");
    let here = parent.path().join("here");
    std::fs::create_dir_all(&here).unwrap();
    // A parent's .env is not this process's: read, it would stop every binary.
    std::fs::write(
        parent.path().join(".env"),
        "WORKER_THREADS=5000\nnot an entry\n",
    )
    .unwrap();
    for name in BINARIES {
        // A binary that starts did not read it: with a bad variable of its own it then stops
        // naming that variable, not the parent's file.
        let out = run(
            name,
            &[],
            &here,
            &[
                ("REDIS_URL", ""),
                ("ORDER_BIND", ""),
                ("NOTIFICATION_BIND", ""),
            ],
        );
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(
            !stderr.contains(".env") && !stderr.contains("WORKER_THREADS"),
            "{name}: {stderr}"
        );
    }
    let out = run("worker", &["stats"], &here, &[("REDIS_URL", &redis.url())]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // The working directory's own is read, and a real variable wins over it (the file's
    // Redis URL has nothing listening).
    std::fs::write(
        here.join(".env"),
        "REDIS_URL=redis://127.0.0.1:1/0\nWORKER_QUEUES=from-file\n",
    )
    .unwrap();
    let out = run("worker", &["stats"], &here, &[("REDIS_URL", &redis.url())]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(stdout.contains("from-file"), "{stdout}");
}
