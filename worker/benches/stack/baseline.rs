//! The drain's cost per order against `baseline.json`: the recorded µs of a baseline commit, and
//! the ratios to this run's floor, which carry from one host to another where µs do not (the
//! development VMs have differed up to 2.5 times in speed from one session to the next).

use serde_json::Value;

use super::floor::Floor;
use super::{Drain, Extra};

/// The recorded cost per order of a baseline commit.
const BASELINE: &str = include_str!("../baseline.json");

fn baseline() -> Value {
    serde_json::from_str(BASELINE).expect("baseline.json is JSON")
}

/// The number `name` of a baseline record.
fn number(at: &Value, name: &str) -> f64 {
    at[name].as_f64().expect("baseline.json: a number")
}

fn change(now: f64, then: f64) -> String {
    format!("{:+.0} %", (now / then - 1.0) * 100.0)
}

/// A drain's cost per order against the baseline's at the same concurrency (`None` for a drain
/// the baseline did not record).
pub fn against_baseline(run: &(usize, Extra), d: &Drain) -> Option<String> {
    let base = baseline();
    let (conc, extra) = run;
    if *extra != Extra::Nothing {
        return None;
    }
    let at = base["cost_per_order"].get(conc.to_string())?;
    let field = |name| number(at, name);
    Some(format!(
        "| cost per order, concurrency {conc}, against the baseline {} ({}: {:.1} µs / {:.1} µs / {:.1}) | {} / {} / {} | | |",
        base["commit"].as_str().unwrap_or("?"),
        base["measured"].as_str().unwrap_or("?"),
        field("worker_us"),
        field("redis_us"),
        field("commands"),
        change(d.worker_us.median(), field("worker_us")),
        change(d.redis_us.median(), field("redis_us")),
        change(d.commands.median(), field("commands")),
    ))
}

/// The plain drain at concurrency 64 against this run's floor: Redis's CPU per order over the
/// floor's (with kombu's `unacked` record, which the scripts write too), and the worker's over
/// the client's floor without that record (the worker does not send it: its scripts write it);
/// beside the baseline's ratios. `None` unless both the drain and the floors ran.
pub fn against_floor(
    drains: &[((usize, Extra), Drain)],
    floors: &[(&str, Floor)],
) -> Option<String> {
    let (_, d) = drains
        .iter()
        .find(|(run, _)| *run == (64, Extra::Nothing))?;
    let with = floors.iter().map(|(_, f)| f).find(|f| f.unacked)?;
    let without = floors.iter().map(|(_, f)| f).find(|f| !f.unacked)?;
    let redis = d.redis_us.median() / with.redis_us.median();
    let worker = d.worker_us.median() / without.client_us.median();
    let base = baseline();
    let at = &base["against_floor"];
    let field = |name| number(at, name);
    Some(format!(
        "| cost per order, concurrency 64, against this run's floor: Redis CPU / the floor's, worker CPU / the client's floor without unacked (the baseline {}, {}: {:.2}x / {:.2}x) | {redis:.2}x / {worker:.2}x ({} / {}) | | |",
        at["commit"].as_str().unwrap_or("?"),
        at["measured"].as_str().unwrap_or("?"),
        field("redis"),
        field("worker"),
        change(redis, field("redis")),
        change(worker, field("worker")),
    ))
}
