//! A Redis Sentinel deployment of one test alone: a primary, a replica and three sentinels
//! (`redis-server <conf> --sentinel`, from PATH) on free loopback ports, with a password.
//! Every wait is on a log line the servers print (sync done, `+slave`, `+sentinel`,
//! `+switch-master`), never a sleep.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::redis::free_port;
use crate::tempdir::{temp_dir as temp, TempDir};

/// The master name the sentinels monitor.
pub const MASTER: &str = "fleetmaster";
/// A master name the sentinels also monitor, at an address where nothing listens.
pub const GHOST: &str = "ghostmaster";
/// The password of the primary and the replica (given in the `sentinel://` URL).
pub const PASSWORD: &str = "sentinel-test-s3cret";
/// What a replica prints once its sync with the master is done.
const SYNCED: &str = "MASTER <-> REPLICA sync: Finished with success";
const WAIT: Duration = Duration::from_secs(90);

/// The lines a server printed so far, and a way to wait for more.
type Lines = Arc<(Mutex<Vec<String>>, Condvar)>;

/// One `redis-server` (data or sentinel), its output collected line by line.
struct Server {
    child: Child,
    port: u16,
    lines: Lines,
    args: Vec<String>,
    _dir: Arc<TempDir>,
}

fn spawn(args: &[String]) -> (Child, Lines) {
    let mut child = Command::new("redis-server")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server must be on PATH for the tests");
    let out = child.stdout.take().expect("piped stdout");
    let lines: Lines = Arc::default();
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if std::env::var_os("TEST_ECHO_CHILDREN").is_some() {
                eprintln!("redis> {line}");
            }
            let (seen, changed) = &*sink;
            seen.lock().unwrap().push(line);
            changed.notify_all();
        }
    });
    (child, lines)
}

/// What a server prints when its port was taken between [`free_port`] and its bind (an
/// outgoing connection of any process may be given that port meanwhile); it then exits.
const PORT_TAKEN: &str = "Failed listening on port";

impl Server {
    /// A server on a free port (`args` for a port), returned once it printed `ready`; started
    /// again on another port when the one picked was taken before it could bind.
    fn start(args: impl Fn(u16) -> Vec<String>, dir: Arc<TempDir>, ready: &str) -> Self {
        for _ in 0..4 {
            let port = free_port();
            let args = args(port);
            let (child, lines) = spawn(&args);
            let mut server = Server {
                child,
                port,
                lines,
                args,
                _dir: dir.clone(),
            };
            match server.wait_first(&[ready, PORT_TAKEN]) {
                Some(0) => return server,
                Some(_) => server.kill(),
                None => server.give_up(ready, 1),
            }
        }
        panic!("redis-server found no free port in four tries");
    }

    /// Which of `needles` a line showed first, waiting up to [`WAIT`]; `None` for neither.
    fn wait_first(&self, needles: &[&str]) -> Option<usize> {
        self.wait_until(WAIT, |seen| {
            needles
                .iter()
                .position(|n| seen.iter().any(|l| l.contains(n)))
        })
    }

    /// Waits (woken by each new line) until `found` finds something in the lines so far, up to
    /// `within`.
    fn wait_until<T>(&self, within: Duration, found: impl Fn(&[String]) -> Option<T>) -> Option<T> {
        let deadline = Instant::now() + within;
        let (seen, changed) = &*self.lines;
        let mut guard = seen.lock().unwrap();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match found(&guard) {
                None if !left.is_zero() => guard = changed.wait_timeout(guard, left).unwrap().0,
                result => return result,
            }
        }
    }

    /// How many lines so far contain `needle`.
    fn count(&self, needle: &str) -> usize {
        let seen = self.lines.0.lock().unwrap();
        seen.iter().filter(|l| l.contains(needle)).count()
    }

    /// Waits until `n` lines contain `needle` (woken by each new line); panics after [`WAIT`]
    /// with the server's last lines.
    fn wait_lines(&self, needle: &str, n: usize) {
        if !self.wait_lines_for(needle, n, WAIT) {
            self.give_up(needle, n);
        }
    }

    /// Panics: no `n` lines with `needle` came within [`WAIT`]; with the server's last lines.
    fn give_up(&self, needle: &str, n: usize) -> ! {
        let seen = self.lines.0.lock().unwrap();
        let tail = seen[seen.len().saturating_sub(20)..].join("\n");
        panic!(
            "no {n} lines with {needle:?} from the server on port {} within {WAIT:?}; its last lines:\n{tail}",
            self.port
        );
    }

    /// Whether `n` lines contain `needle` within `within`.
    fn wait_lines_for(&self, needle: &str, n: usize, within: Duration) -> bool {
        let enough = |seen: &[String]| seen.iter().filter(|l| l.contains(needle)).count() >= n;
        self.wait_until(within, |seen| enough(seen).then_some(()))
            .is_some()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A primary, a replica and three sentinels; dropped, everything stops.
pub struct TestSentinels {
    data: Vec<Server>,
    sentinels: Vec<Server>,
}

fn data_args(port: u16, dir: &TempDir, replica_of: Option<u16>) -> Vec<String> {
    let mut args: Vec<String> = [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--requirepass",
        PASSWORD,
        "--masterauth",
        PASSWORD,
        "--dir",
        &dir.path().to_string_lossy(),
        "--logfile",
        "",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(primary) = replica_of {
        args.extend([
            "--replicaof".into(),
            "127.0.0.1".into(),
            primary.to_string(),
        ]);
    }
    args
}

impl TestSentinels {
    /// Starts the primary, the replica (returns once its first sync finished) and three
    /// sentinels (once each knows the replica and the two other sentinels).
    pub fn start() -> Self {
        let dir = Arc::new(temp("sentinel"));
        let dead = free_port();
        let d1 = Arc::new(temp("primary"));
        let primary = Server::start(
            |port| data_args(port, &d1, None),
            d1.clone(),
            "Ready to accept connections",
        );
        let p1 = primary.port;
        let d2 = Arc::new(temp("replica"));
        let replica = Server::start(|port| data_args(port, &d2, Some(p1)), d2.clone(), SYNCED);
        let mut sentinels = Vec::new();
        for i in 0..3 {
            let conf = dir.path().join(format!("sentinel-{i}.conf"));
            let args = |port: u16| {
                std::fs::write(
                    &conf,
                    format!(
                        "port {port}\nbind 127.0.0.1\ndir {}\n\
                         sentinel monitor {MASTER} 127.0.0.1 {p1} 2\n\
                         sentinel auth-pass {MASTER} {PASSWORD}\n\
                         sentinel down-after-milliseconds {MASTER} 1000\n\
                         sentinel failover-timeout {MASTER} 4000\n\
                         sentinel parallel-syncs {MASTER} 1\n\
                         sentinel monitor {GHOST} 127.0.0.1 {dead} 2\n",
                        dir.path().display()
                    ),
                )
                .unwrap();
                vec![conf.to_string_lossy().into_owned(), "--sentinel".into()]
            };
            sentinels.push(Server::start(args, dir.clone(), "+monitor master"));
        }
        for s in &sentinels {
            s.wait_lines("+slave slave", 1);
            s.wait_lines("+sentinel sentinel", 2);
        }
        TestSentinels {
            data: vec![primary, replica],
            sentinels,
        }
    }

    /// kombu's form: `sentinel://:password@127.0.0.1:PORT/0;sentinel://127.0.0.1:PORT;...`.
    pub fn url(&self) -> String {
        self.sentinels
            .iter()
            .enumerate()
            .map(|(i, s)| match i {
                0 => format!("sentinel://:{PASSWORD}@127.0.0.1:{}/0", s.port),
                _ => format!("sentinel://127.0.0.1:{}", s.port),
            })
            .collect::<Vec<_>>()
            .join(";")
    }

    /// The port of the server the sentinels name as master now.
    pub fn master_port(&self) -> u16 {
        let client =
            redis::Client::open(format!("redis://127.0.0.1:{}", self.sentinels[0].port)).unwrap();
        let mut conn = client.get_connection().unwrap();
        let (_, port): (String, u16) = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(MASTER)
            .query(&mut conn)
            .unwrap();
        port
    }

    /// A plain URL of the current master (for checks outside the code under test).
    pub fn master_url(&self) -> String {
        format!("redis://:{PASSWORD}@127.0.0.1:{}/0", self.master_port())
    }

    /// Failovers finished so far, as the first sentinel saw them.
    pub fn switches(&self) -> usize {
        self.sentinels[0].count("+switch-master")
    }

    /// Waits until every sentinel has seen `n` failovers in all.
    pub fn wait_switches(&self, n: usize) {
        for s in &self.sentinels {
            s.wait_lines("+switch-master", n);
        }
    }

    /// `SENTINEL FAILOVER`: a failover without a failure; returns once it finished and the
    /// old master is a replica of the new one (its clients disconnected by the sentinel).
    pub fn failover(&self) {
        let before = self.switches();
        let old = self.master_port();
        let old = self.data.iter().find(|d| d.port == old).unwrap();
        let synced = old.count(SYNCED);
        let client =
            redis::Client::open(format!("redis://127.0.0.1:{}", self.sentinels[0].port)).unwrap();
        let mut conn = client.get_connection().unwrap();
        let _: () = redis::cmd("SENTINEL")
            .arg("FAILOVER")
            .arg(MASTER)
            .query(&mut conn)
            .unwrap();
        self.wait_switches(before + 1);
        old.wait_lines(SYNCED, synced + 1);
    }

    /// SIGKILLs the master, waits until the sentinels promoted the replica, then starts the
    /// killed server again (empty: no persistence) as a replica of the new master and waits
    /// until its first sync is done.
    pub fn kill_master(&mut self) {
        let before = self.switches();
        let port = self.master_port();
        let i = self.data.iter().position(|d| d.port == port).unwrap();
        self.data[i].kill();
        self.wait_switches(before + 1);
        // Back as a replica of the new master at once (as its configuration would say after
        // Sentinel rewrote it), rather than after Sentinel's next look at a stray master.
        let mut args = self.data[i].args.clone();
        // The promoted server is the other data server (a primary and one replica), whatever
        // a sentinel that has not caught up yet would answer.
        let new = self
            .data
            .iter()
            .find(|d| d.port != port)
            .map_or_else(|| self.master_port(), |d| d.port)
            .to_string();
        args.extend(["--replicaof".into(), "127.0.0.1".into(), new]);
        // A restarted replica's first sync has been seen to stall on a loaded host: started
        // again (a restart is what its supervisor would do) before the harness gives up.
        for _ in 0..2 {
            let (child, lines) = spawn(&args);
            self.data[i].child = child;
            self.data[i].lines = lines;
            if self.data[i].wait_lines_for(SYNCED, 1, WAIT / 3) {
                return;
            }
            self.data[i].kill();
        }
        let (child, lines) = spawn(&args);
        self.data[i].child = child;
        self.data[i].lines = lines;
        self.data[i].wait_lines(SYNCED, 1);
    }

    /// The ports of the sentinels.
    pub fn sentinel_ports(&self) -> Vec<u16> {
        self.sentinels.iter().map(|s| s.port).collect()
    }
}

#[cfg(test)]
mod tests;
