//! Redis's own accounts of a drain or floor run (`BENCH_COMMANDSTATS`): commandstats per order,
//! and with `BENCH_COMMANDSTATS=scripts` the time of each script, from a slow log that records
//! every command (Redis 7.0's commandstats put every script under one EVALSHA line). The slow log
//! costs Redis CPU of its own: the CPU figures of a run with it are not comparable.

use celery_redis::conn::Conn;
use redis::Value as Reply;

/// Most slow log entries kept: above any drain's number of script calls and direct commands.
const SLOWLOG_LEN: usize = 1_000_000;

/// Which BENCH_COMMANDSTATS asks for: (commandstats, the split by script).
pub fn wanted() -> (bool, bool) {
    match std::env::var("BENCH_COMMANDSTATS").as_deref() {
        Ok("scripts") => (true, true),
        Ok(_) => (true, false),
        Err(_) => (false, false),
    }
}

/// Resets the counts (and with `scripts`, starts a slow log of every command).
pub async fn reset(conn: &mut Conn, scripts: bool) {
    let (threshold, len) = if scripts {
        (0, SLOWLOG_LEN)
    } else {
        (10_000, 128)
    };
    redis::pipe()
        .cmd("CONFIG")
        .arg("SET")
        .arg("slowlog-log-slower-than")
        .arg(threshold)
        .arg("slowlog-max-len")
        .arg(len)
        .ignore()
        .cmd("SLOWLOG")
        .arg("RESET")
        .ignore()
        .cmd("CONFIG")
        .arg("RESETSTAT")
        .ignore()
        .query_async::<()>(conn)
        .await
        .unwrap();
}

/// Redis's commandstats since the last reset, per order of `n`: for each command its calls, its
/// time (µs, inside the command: parsing and socket I/O are not in it) and its time per call;
/// those called from scripts count both in their own line and in the script's (EVALSHA's).
pub async fn print(conn: &mut Conn, what: &str, orders: usize, scripts: bool) {
    let mut rows: Vec<(String, f64, f64)> = testkit::command_stats(conn)
        .await
        .into_iter()
        .filter(|c| !matches!(c.name.as_str(), "info" | "config" | "config|resetstat"))
        .map(|c| (c.name, c.calls as f64, c.usec))
        .collect();
    rows.sort_by(|a, b| b.2.total_cmp(&a.2));
    let n = orders as f64;
    let in_scripts: f64 = rows
        .iter()
        .filter(|r| r.0.starts_with("eval"))
        .map(|r| r.2)
        .sum();
    let others: f64 = rows
        .iter()
        .filter(|r| !r.0.starts_with("eval"))
        .map(|r| r.2)
        .sum();
    println!(
        "commandstats, {what}: scripts {:.1} µs/order, commands {:.1} µs/order (inside scripts or not)",
        in_scripts / n,
        others / n
    );
    for (name, calls, usec) in &rows {
        println!(
            "  {name:<12} {:>7.2} calls/order {:>7.2} µs/order {:>8.2} µs/call",
            calls / n,
            usec / n,
            usec / calls.max(1.0)
        );
    }
    if scripts {
        let calls = rows.iter().filter(|r| r.0 == "evalsha").map(|r| r.1).sum();
        print_scripts(conn, orders, calls).await;
    }
}

/// The scripts' calls and time per order, from the slow log, by what their first keys say.
/// `calls`: the script calls commandstats counted, printed beside those the slow log holds (they
/// differ when the log overflowed).
async fn print_scripts(conn: &mut Conn, n: usize, calls: f64) {
    let log: Vec<Reply> = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(-1)
        .query_async(conn)
        .await
        .unwrap();
    // Per script: its hash, its name, calls and µs.
    let mut scripts: Vec<(String, String, f64, f64)> = Vec::new();
    for entry in &log {
        let Reply::Array(fields) = entry else {
            continue;
        };
        let (Some(Reply::Int(usec)), Some(Reply::Array(args))) = (fields.get(2), fields.get(3))
        else {
            continue;
        };
        let text = |i: usize| match args.get(i) {
            Some(Reply::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
            _ => String::new(),
        };
        if !text(0).eq_ignore_ascii_case("evalsha") {
            continue;
        }
        let sha = text(1);
        match scripts.iter_mut().find(|s| s.0 == sha) {
            Some(s) => (s.2, s.3) = (s.2 + 1.0, s.3 + *usec as f64),
            None => scripts.push((sha, script_name(&text(3), &text(5)), 1.0, *usec as f64)),
        }
    }
    scripts.sort_by(|a, b| b.3.total_cmp(&a.3));
    let n = n as f64;
    let logged: f64 = scripts.iter().map(|s| s.2).sum();
    println!(
        "scripts (slow log of every command, {} entries; {logged} of the {calls} script calls):",
        log.len()
    );
    for (sha, name, calls, usec) in scripts {
        let sha = sha.get(..8).unwrap_or(&sha);
        println!(
            "  {sha} {name:<40} {:>7.3} calls/order {:>7.2} µs/order {:>8.1} µs/call",
            calls / n,
            usec / n,
            usec / calls
        );
    }
}

/// A script's name by its first and third keys (in the batched form of this project's scripts
/// the first call's keys come first); else its first key.
fn script_name(key1: &str, key3: &str) -> String {
    let meta = "celery-task-meta-";
    match (key1, key3) {
        ("unacked", k) if k.starts_with(meta) => "finish".into(),
        ("unacked", _) => "claim".into(),
        (k, _) if k.starts_with(meta) => "store (STARTED)".into(),
        (k, _) if k.starts_with("fleet:order:") => "reserve".into(),
        (k, _) if k.starts_with("fleet:notification:") => "record_delivery".into(),
        (k, _) => format!("first key {k}"),
    }
}
