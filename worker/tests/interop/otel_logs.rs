//! Test support for `behaviour/observability/trace.rs` and `trace_interop.rs`: a child process (one of the project's
//! binaries with `LOG_FORMAT=json`, from `testkit::Stack::command`, or a traced Python worker)
//! whose every stderr line is kept and awaited line by line (no sleeps: each wait ends on the
//! line it waits for).

#![allow(dead_code)] // each test file uses its own subset

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::Proc;

/// How long a line may take to appear.
pub const WAIT: Duration = Duration::from_secs(60);

/// A running child and every stderr line it has written so far.
pub struct Logged {
    proc: Proc,
    rx: Receiver<String>,
    /// The lines read so far, in order.
    pub lines: Vec<String>,
}

/// Starts `cmd` in its own process group (killed with it when dropped) and waits until a stderr
/// line contains `ready`.
pub fn command(mut cmd: Command, ready: &str) -> Logged {
    use std::os::unix::process::CommandExt;
    cmd.stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0);
    let name = Path::new(cmd.get_program())
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if std::env::var_os("TEST_ECHO_CHILDREN").is_some() {
                eprintln!("child> {line}");
            }
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut logged = Logged {
        proc: Proc { child, name },
        rx,
        lines: Vec::new(),
    };
    logged.wait_raw(ready, |l| l.contains(ready));
    logged
}

impl Logged {
    /// The process id (to read what it listens on from `/proc`).
    pub fn pid(&self) -> u32 {
        self.proc.child.id()
    }

    /// Waits for a line that `pred` accepts and returns it.
    pub fn wait_raw(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        if let Some(l) = self.lines.iter().find(|l| pred(l)) {
            return l.clone();
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.lines.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("{}: no line {what} within {WAIT:?}", self.proc.name)
                }
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "{} exited before a line {what}; it wrote:\n{}",
                    self.proc.name,
                    self.lines.join("\n")
                ),
            }
        }
    }

    /// Waits for a JSON line that `pred` accepts and returns it parsed.
    pub fn wait_json(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let line = self.wait_raw(what, |l| {
            serde_json::from_str::<Value>(l).is_ok_and(|v| pred(&v))
        });
        serde_json::from_str(&line).expect("a JSON line")
    }

    /// Every line read so far that is JSON, parsed.
    pub fn json_lines(&self) -> Vec<Value> {
        self.lines
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// SIGTERM, the exit status, and every line it wrote (to its end).
    pub fn stop(mut self) -> (ExitStatus, Vec<String>) {
        let name = self.proc.name.clone();
        let status = self.proc.terminate();
        while let Ok(line) = self.rx.recv_timeout(WAIT) {
            self.lines.push(line);
        }
        assert!(
            matches!(self.rx.try_recv(), Err(mpsc::TryRecvError::Disconnected)),
            "{name}'s stderr did not end"
        );
        (status, self.lines)
    }
}

/// The value of a JSON log line's field, if it is a string.
pub fn field<'a>(line: &'a Value, name: &str) -> Option<&'a str> {
    line.get(name).and_then(Value::as_str)
}

/// The `http://addr` a service's JSON "listening on" line names.
pub fn service_url(line: &str) -> String {
    let v: Value = serde_json::from_str(line).expect("a JSON log line");
    let message = field(&v, "message").expect("a message");
    format!("http://{}", testkit::listening_addr(message))
}
