//! Child processes (the project's binaries, Python Celery) whose output a test awaits line by
//! line, killed with their process group when dropped.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::STARTUP;

/// Reads lines (on a helper thread) until one contains `needle`; the rest of the output is
/// drained so the child never blocks on a full pipe.
pub fn wait_for_line(
    out: impl std::io::Read + Send + 'static,
    needle: &str,
    limit: Duration,
) -> Result<(), String> {
    lines_until(out, needle, limit).map(drop)
}

/// Like [`wait_for_line`], returning the matching line.
pub fn lines_until(
    out: impl std::io::Read + Send + 'static,
    needle: &str,
    limit: Duration,
) -> Result<String, String> {
    let (tx, rx) = mpsc::channel();
    let needle = needle.to_owned();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if std::env::var_os("TEST_ECHO_CHILDREN").is_some() {
                eprintln!("child> {line}");
            }
            if line.contains(&needle) {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(line);
                }
            }
        }
    });
    rx.recv_timeout(limit)
        .map_err(|_| "the expected line did not appear (process exited or timed out)".to_owned())
}

/// Reads lines (on a helper thread) until each of `needles` has been seen; returns, for each
/// needle, the first line containing it. The rest of the output is drained.
pub fn lines_until_all(
    out: impl std::io::Read + Send + 'static,
    needles: &[&str],
    limit: Duration,
) -> Result<Vec<String>, String> {
    let (tx, rx) = mpsc::channel();
    let needles: Vec<String> = needles.iter().map(|n| n.to_string()).collect();
    let count = needles.len();
    std::thread::spawn(move || {
        let mut found: Vec<Option<String>> = vec![None; needles.len()];
        let mut tx = Some(tx);
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if std::env::var_os("TEST_ECHO_CHILDREN").is_some() {
                eprintln!("child> {line}");
            }
            for (needle, slot) in needles.iter().zip(found.iter_mut()) {
                if slot.is_none() && line.contains(needle.as_str()) {
                    *slot = Some(line.clone());
                }
            }
            if found.iter().all(Option::is_some) {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(found.iter().flatten().cloned().collect::<Vec<_>>());
                }
            }
        }
    });
    rx.recv_timeout(limit)
        .ok()
        .filter(|lines| lines.len() == count)
        .ok_or_else(|| "the expected lines did not appear (process exited or timed out)".to_owned())
}

/// A child process (one of the project's binaries) killed when dropped.
pub struct Proc {
    /// The running process.
    pub child: Child,
    /// Its name in failure messages.
    pub name: String,
}

impl Proc {
    /// Starts `binary` with `env` (and nothing from `.env`; a worker's metrics on a free port
    /// unless `env` says otherwise) and waits until its log has a line
    /// containing `ready_line`; returns that line too.
    pub fn spawn(
        binary: &Path,
        args: &[&str],
        env: &[(&str, String)],
        ready_line: &str,
    ) -> (Self, String) {
        let mut cmd = Command::new(binary);
        cmd.args(args)
            .env_clear()
            .env("RUST_LOG", "info")
            // Workers in parallel tests must not contend for the default metrics port.
            .env("WORKER_METRICS_BIND", "127.0.0.1:0")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .current_dir(std::env::temp_dir());
        Self::spawn_command(cmd, ready_line)
    }

    /// Starts a prepared command in its own process group (so [`Proc::kill_group`] reaches its
    /// children too) and waits for `ready_line` on its stderr.
    pub fn spawn_command(cmd: Command, ready_line: &str) -> (Self, String) {
        let (proc, mut lines) = Self::spawn_command_all(cmd, &[ready_line]);
        (proc, lines.remove(0))
    }

    /// Like [`Proc::spawn_command`], waiting until each of `ready_lines` appeared (in any
    /// order); returns the matching lines, one per needle.
    pub fn spawn_command_all(mut cmd: Command, ready_lines: &[&str]) -> (Self, Vec<String>) {
        use std::os::unix::process::CommandExt;
        cmd.stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0);
        let program = Path::new(cmd.get_program()).to_path_buf();
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let stderr = child.stderr.take().expect("piped stderr");
        let name = program
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match lines_until_all(stderr, ready_lines, STARTUP) {
            Ok(lines) => (Proc { child, name }, lines),
            Err(e) => {
                let _ = child.kill();
                panic!("{name} did not log {ready_lines:?}: {e}");
            }
        }
    }

    /// SIGKILLs the whole process group (a Celery prefork worker and its children) at once.
    pub fn kill_group(mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM (via `kill`, no extra crates) and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().expect("wait for child")
    }
}

impl Drop for Proc {
    /// Kills the process and anything it started (its process group).
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The path of a sibling binary of this workspace, next to `anchor` (a `CARGO_BIN_EXE_*`).
pub fn sibling_binary(anchor: &str, name: &str) -> std::path::PathBuf {
    let path = Path::new(anchor).with_file_name(name);
    assert!(
        path.exists(),
        "{} is not built: run the whole workspace's tests (cargo test --workspace), or build its binaries first (cargo build --release --workspace before cargo bench)",
        path.display()
    );
    path
}

/// The socket address in a "listening on 127.0.0.1:PORT" log line.
pub fn listening_addr(line: &str) -> std::net::SocketAddr {
    line.rsplit("listening on ")
        .next()
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
}

/// The TCP addresses process `pid` listens on, read from `/proc` (its socket descriptors,
/// matched against the kernel's socket tables): the address a binary bound on port 0, taken
/// from the process rather than from its log.
pub fn listening_addrs(pid: u32) -> Vec<std::net::SocketAddr> {
    let inodes: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.flatten()
                .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                .filter_map(|link| {
                    let link = link.to_string_lossy().into_owned();
                    let inode = link.strip_prefix("socket:[")?.strip_suffix(']')?;
                    Some(inode.to_owned())
                })
                .collect()
        })
        .unwrap_or_default();
    let mut addrs = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st ... inode (the tenth field); 0A is LISTEN.
            if fields.len() > 9 && fields[3] == "0A" && inodes.contains(fields[9]) {
                addrs.extend(proc_net_addr(fields[1]));
            }
        }
    }
    addrs
}

/// `0100007F:1F90` (`/proc/net/tcp`: the address's 32-bit words in host order, the port in
/// hex) as a socket address.
fn proc_net_addr(field: &str) -> Option<std::net::SocketAddr> {
    let (ip, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let words: Vec<u32> = (0..ip.len() / 8)
        .map(|i| u32::from_str_radix(&ip[i * 8..i * 8 + 8], 16).ok())
        .collect::<Option<_>>()?;
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let ip: std::net::IpAddr = match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok()?.into(),
        16 => <[u8; 16]>::try_from(bytes).ok()?.into(),
        _ => return None,
    };
    Some(std::net::SocketAddr::new(ip, port))
}
