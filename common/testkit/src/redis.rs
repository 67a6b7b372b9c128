//! A `redis-server` of one test alone, from PATH, on a free loopback port; never a shared one.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use celery_redis::conn::Conn;
use celery_redis::result::ResultBackend;

use crate::process::wait_for_line;
use crate::tempdir::TempDir;
use crate::STARTUP;

/// A `redis-server` of this test alone, stopped when dropped.
pub struct TestRedis {
    child: Child,
    port: u16,
    extra: Vec<String>,
    dir: TempDir,
}

impl TestRedis {
    /// Starts `redis-server` on a free port and returns once it accepts connections (it says so
    /// on stdout; nothing here sleeps).
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Same, with extra `redis-server` arguments (e.g. `["--appendonly", "yes"]`; later
    /// arguments override the defaults).
    pub fn start_with(extra: &[&str]) -> Self {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port();
            let dir = crate::tempdir::temp_dir("redis");
            match spawn_redis(port, dir.path(), &extra) {
                Ok(child) => {
                    return TestRedis {
                        child,
                        port,
                        extra,
                        dir,
                    }
                }
                Err(e) => last_error = e,
            }
        }
        panic!("redis-server did not start: {last_error}");
    }

    /// Stops the server gracefully (SIGTERM: it writes its AOF) and starts it again on the same
    /// port with the same data directory; returns once it accepts connections again.
    pub fn restart(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        self.child = spawn_redis(self.port, self.dir.path(), &self.extra)
            .unwrap_or_else(|e| panic!("redis-server did not restart: {e}"));
    }

    /// [`TestRedis::restart`] with other extra arguments, from now on (e.g. another
    /// `--maxmemory-policy`).
    pub fn restart_with(&mut self, extra: &[&str]) {
        self.extra = extra.iter().map(|s| s.to_string()).collect();
        self.restart();
    }

    /// The free port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The redis-server's process id (to read its CPU time or memory from /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `redis://127.0.0.1:<port>/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// A URL for another database of the same server.
    pub fn url_db(&self, db: u8) -> String {
        format!("redis://127.0.0.1:{}/{db}", self.port)
    }

    /// [`TestRedis::url`], parsed.
    pub fn parsed_url(&self) -> celery_redis::conn::RedisUrl {
        celery_redis::conn::RedisUrl::parse(&self.url()).expect("valid url")
    }

    /// A redis-rs client of [`TestRedis::url`].
    pub fn client(&self) -> redis::Client {
        celery_redis::conn::RedisUrl::parse(&self.url())
            .expect("valid url")
            .client()
            .clone()
    }

    /// `CONFIG SET name value` on this server (memory limits, keyspace notifications).
    pub async fn config_set(&self, name: &str, value: &str) {
        redis::cmd("CONFIG")
            .arg("SET")
            .arg(name)
            .arg(value)
            .query_async::<()>(&mut self.manager().await)
            .await
            .expect("CONFIG SET on the test redis");
    }

    /// A connection to it, with no response timeout (a test may block on purpose).
    pub async fn manager(&self) -> Conn {
        let waits = celery_redis::conn::Waits {
            response: None,
            connect_retries: 2,
        };
        Conn::new(&self.parsed_url(), waits).expect("connect to test redis")
    }

    /// Moves every lease in `unacked_index` (named by `index`) `secs` seconds into the past:
    /// what a worker that died that long ago leaves behind. Lease scores are whole seconds
    /// rounded up, so a lease just taken is not over yet even with no visibility timeout.
    pub async fn age_leases(&self, index: &str, secs: f64) {
        let mut conn = self.manager().await;
        let held: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg(index)
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await
            .expect("ZRANGE on the test redis");
        for (tag, score) in held {
            redis::cmd("ZADD")
                .arg(index)
                .arg("XX")
                .arg(score - secs)
                .arg(tag)
                .query_async::<()>(&mut conn)
                .await
                .expect("ZADD on the test redis");
        }
    }

    /// Returns once every lease in `unacked_index` (named by `index`) is more than
    /// `visibility` old by the server's clock: what a restorer that looks once (a Python worker
    /// restores at start, then only every ~100 s) needs to find them over. The leases' own
    /// scores say when, not a guess: ours are rounded up to the next whole second.
    pub async fn leases_over(&self, index: &str, visibility: std::time::Duration) {
        let mut conn = self.manager().await;
        let newest: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg(index)
            .arg(-1)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await
            .expect("ZRANGE on the test redis");
        let Some((_, score)) = newest.first() else {
            return;
        };
        let (secs, micros): (u64, u64) = redis::cmd("TIME")
            .query_async(&mut conn)
            .await
            .expect("TIME on the test redis");
        let now = secs as f64 + micros as f64 / 1e6;
        // kombu restores a score at most `time() - visibility`: a little past it is enough.
        let left = score + visibility.as_secs_f64() + 0.2 - now;
        if left > 0.0 {
            tokio::time::sleep(std::time::Duration::from_secs_f64(left)).await;
        }
    }

    /// The result backend on this Redis (a fresh connection, results kept for `expires`,
    /// `PUBLISH` on each state as Celery's Redis backend does).
    pub async fn results(&self, expires: std::time::Duration) -> ResultBackend {
        ResultBackend::new(self.manager().await, self.client(), expires, true)
    }
}

fn spawn_redis(port: u16, dir: &Path, extra: &[String]) -> Result<Child, String> {
    let mut child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(["--dir", &dir.to_string_lossy(), "--logfile", ""])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server must be on PATH for the tests");
    let stdout = child.stdout.take().expect("piped stdout");
    match wait_for_line(stdout, "Ready to accept connections", STARTUP) {
        Ok(()) => Ok(child),
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(e)
        }
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A Redis URL where nothing listens.
pub fn unreachable_redis_url() -> String {
    format!("redis://127.0.0.1:{}/0", free_port())
}

/// One line of `INFO commandstats`: a command (`evalsha`, `config|resetstat`...), its calls
/// and the microseconds spent inside it since the last `CONFIG RESETSTAT`.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandStat {
    /// The command's name as Redis writes it after `cmdstat_`.
    pub name: String,
    /// How many times it ran.
    pub calls: u64,
    /// Microseconds inside it (parsing and socket I/O are not in it).
    pub usec: f64,
}

/// `INFO commandstats`, one row per command Redis has run since the last reset.
pub async fn command_stats(conn: &mut impl ::redis::aio::ConnectionLike) -> Vec<CommandStat> {
    let info: String = ::redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .expect("INFO commandstats");
    info.lines()
        .filter_map(|l| {
            let (name, fields) = l.trim_end().strip_prefix("cmdstat_")?.split_once(':')?;
            let field = |k: &str| {
                fields
                    .split(',')
                    .find_map(|f| f.strip_prefix(k)?.strip_prefix('='))
            };
            Some(CommandStat {
                name: name.to_owned(),
                calls: field("calls")?.parse().ok()?,
                usec: field("usec")?.parse().ok()?,
            })
        })
        .collect()
}

/// A number `INFO <section>` reports as `field:<n>` (`total_commands_processed`,
/// `used_memory_lua`, ...); panics when it is missing.
pub async fn info_number(
    conn: &mut impl ::redis::aio::ConnectionLike,
    section: &str,
    field: &str,
) -> u64 {
    let info: String = ::redis::cmd("INFO")
        .arg(section)
        .query_async(conn)
        .await
        .expect("INFO");
    info.lines()
        .find_map(|l| l.trim_end().strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in INFO {section}"))
}
