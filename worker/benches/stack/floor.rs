//! The floor of the drain (`BENCH_ONLY=floor`): what Redis spends on the plain commands one
//! `process_order` task needs, in the Celery-compatible layout, sent pipelined (64 tasks per
//! pipeline, as a worker at concurrency 64) with no Lua at all. Per task:
//!
//! - the claim as kombu does it: `RPOP` from the queue, `HSET unacked <tag> [envelope, "", queue]`
//!   (the copy a Python worker's restore reads back) and `ZADD unacked_index <now> <tag>` (now in
//!   whole seconds, as the claim scores it);
//! - STARTED: `SET celery-task-meta-<id> <json> EX` and `PUBLISH` of the same JSON;
//! - the stock reservation (the keys `reserve.lua` touches): `SET fleet:order:<id>:reservation
//!   <record> NX EX` and `DECRBY fleet:stock:A 1`;
//! - the chained confirmation: `LPUSH` of its envelope;
//! - the result: `SET celery-task-meta-<id> <json> EX` and `PUBLISH`;
//! - the ack: `HDEL unacked <tag>` and `ZREM unacked_index <tag>`.
//!
//! The envelopes are the drain's own (queued by `Broker::publish_many`); the STARTED and SUCCESS
//! JSON and the confirmation's envelope are copied, with their ids replaced, from a short run of
//! the real worker. What the floor leaves out, the scripts' guards (no SUCCESS overwritten, a
//! reservation made once, types checked, dead letters, delivery counts), is what Lua buys.
//!
//! The client's side is timed too: the CPU of the one thread that sends the pipelines and reads
//! their replies (its own current-thread runtime and connection; the commands' arguments are
//! built before the clock starts, and nothing read is decoded). It is what sending these commands
//! through redis-rs costs a client, the part of a worker's CPU per order it cannot do without;
//! the rest is reading the envelope, running the task and writing what it sends. Without the
//! `unacked` record it compares with the worker, whose scripts write that record (the client
//! here sends each envelope back in the `HSET`).

use std::time::{Duration, Instant};

use celery_redis::broker::Broker;
use celery_redis::conn::Conn;
use celery_redis::keys::{self, UNACKED, UNACKED_INDEX};
use futures_util::StreamExt;
use redis::Value as Reply;
use serde_json::Value;
use testkit::Stack;

use super::{drain_orders, flush, redis_commands, redis_cpu_seconds, Stat};

/// Tasks per pipeline, as a worker at concurrency 64 has in flight.
const PIPELINE: usize = 64;
/// The queue the orders wait in (priority 0: its list is named as the queue).
const QUEUE: &str = "celery";

/// Result and reservation lifetime (Celery's `result_expires` default, one day).
const TTL: u64 = 86_400;

/// One floor measurement per repetition.
#[derive(Default)]
pub struct Floor {
    pub rate: Stat,
    pub redis_us: Stat,
    pub commands: Stat,
    /// The sending thread's CPU (user and system) per order.
    pub client_us: Stat,
    /// Whether kombu's `unacked` record was written.
    pub unacked: bool,
}

/// What the real worker stores and sends for one order, with that order's task id.
struct Sample {
    id: String,
    started: String,
    success: String,
    confirmation: String,
}

/// Runs the real worker over a few orders, with the confirmations routed to a queue it does not
/// consume, and keeps one STARTED and one SUCCESS as published and one queued confirmation.
async fn sample(stack: &Stack, conn: &mut Conn, broker: &Broker) -> Sample {
    flush(conn).await;
    shop::inventory::set_stock(conn, "A", 1_000_000_000)
        .await
        .unwrap();
    let msgs = drain_orders(PIPELINE);
    let mut pubsub = stack.redis.client().get_async_pubsub().await.unwrap();
    pubsub
        .psubscribe(format!("{}*", keys::task_meta("")))
        .await
        .unwrap();
    broker.publish_many(&msgs).await.unwrap();
    let w = stack
        .worker(&[
            ("WORKER_CONCURRENCY", PIPELINE.to_string()),
            (
                "TASK_ROUTES",
                "send_notification=floor-confirmations".into(),
            ),
            ("WORKER_QUEUES", QUEUE.into()),
            ("RUST_LOG", "warn,worker::worker=info".into()),
        ])
        .proc;
    let (mut started, mut success) = (None, None);
    {
        let mut stream = pubsub.on_message();
        let mut done = 0;
        while done < msgs.len() {
            let msg = tokio::time::timeout(Duration::from_secs(60), stream.next())
                .await
                .unwrap()
                .unwrap();
            let text = String::from_utf8(msg.get_payload_bytes().to_vec()).unwrap();
            let meta: Value = serde_json::from_str(&text).unwrap();
            let id = meta["task_id"].as_str().unwrap().to_owned();
            match meta["status"].as_str() {
                Some("STARTED") => {
                    started.get_or_insert((id, text));
                }
                Some("SUCCESS") => {
                    done += 1;
                    success.get_or_insert((id, text));
                }
                other => panic!("floor sample: unexpected state {other:?}"),
            }
        }
    }
    w.terminate();
    let (id, started) = started.unwrap();
    let (success_id, success) = success.unwrap();
    let success = success.replace(&success_id, &id);
    let confirmations: Vec<String> = redis::cmd("LRANGE")
        .arg("floor-confirmations")
        .arg(0)
        .arg(-1)
        .query_async(conn)
        .await
        .unwrap();
    let confirmation = confirmations
        .into_iter()
        .find(|c| c.contains(&id))
        .expect("the sampled order's confirmation is queued");
    Sample {
        id,
        started,
        success,
        confirmation,
    }
}

/// One task's commands, in the order of its steps.
struct Task {
    tag: String,
    unacked: String,
    started: String,
    reservation_key: String,
    confirmation: String,
    meta_key: String,
    success: String,
}

/// The tasks of the queued orders, oldest first (the order RPOP takes them in), built from the
/// queued envelopes and the sample.
fn tasks(queued: Vec<String>, s: &Sample) -> Vec<Task> {
    queued
        .into_iter()
        .rev()
        .map(|raw| {
            let env: Value = serde_json::from_str(&raw).unwrap();
            let id = env["headers"]["id"].as_str().unwrap().to_owned();
            let tag = env["properties"]["delivery_tag"]
                .as_str()
                .unwrap()
                .to_owned();
            Task {
                unacked: format!("[{raw}, \"\", \"{QUEUE}\"]"),
                started: s.started.replace(&s.id, &id),
                reservation_key: shop::keys::order_reservation(&id),
                confirmation: s.confirmation.replace(&s.id, &id),
                meta_key: keys::task_meta(&id),
                success: s.success.replace(&s.id, &id),
                tag,
            }
        })
        .collect()
}

/// One pipeline's worth of tasks, step by step as a worker's 64 tasks go through them together.
/// `unacked`: with kombu's `unacked` record (off: what dropping the restore's copy would save).
fn pipeline(batch: &[Task], now: f64, unacked: bool) -> redis::Pipeline {
    let mut p = redis::pipe();
    for _ in batch {
        p.cmd("RPOP").arg(keys::queue_list(QUEUE, 0));
    }
    if unacked {
        for t in batch {
            p.cmd("HSET").arg(UNACKED).arg(&t.tag).arg(&t.unacked);
            p.cmd("ZADD").arg(UNACKED_INDEX).arg(now).arg(&t.tag);
        }
    }
    for t in batch {
        p.cmd("SET")
            .arg(&t.meta_key)
            .arg(&t.started)
            .arg("EX")
            .arg(TTL);
        p.cmd("PUBLISH").arg(&t.meta_key).arg(&t.started);
    }
    for t in batch {
        let record = r#"{"status":"confirmed"}"#;
        p.cmd("SET").arg(&t.reservation_key).arg(record);
        p.arg("NX").arg("EX").arg(TTL);
        p.cmd("DECRBY").arg(shop::keys::stock("A")).arg(1);
    }
    for t in batch {
        p.cmd("LPUSH")
            .arg(keys::queue_list(QUEUE, 0))
            .arg(&t.confirmation);
        p.cmd("SET")
            .arg(&t.meta_key)
            .arg(&t.success)
            .arg("EX")
            .arg(TTL);
        p.cmd("PUBLISH").arg(&t.meta_key).arg(&t.success);
    }
    if unacked {
        for t in batch {
            p.cmd("HDEL").arg(UNACKED).arg(&t.tag);
            p.cmd("ZREM").arg(UNACKED_INDEX).arg(&t.tag);
        }
    }
    p
}

/// Sends the pipelines from this thread alone (a current-thread runtime and a connection of its
/// own, so its CPU is the client's whole cost) and checks each `RPOP` took its order. Returns the
/// seconds it took and the thread's CPU seconds meanwhile.
fn send(client: redis::Client, pipes: &[redis::Pipeline], tasks: &[Task]) -> (f64, f64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let (t, cpu) = (Instant::now(), thread_cpu_seconds());
        for (p, batch) in pipes.iter().zip(tasks.chunks(PIPELINE)) {
            let replies: Vec<Reply> = p.query_async(&mut conn).await.unwrap();
            // Each RPOP took one of the orders (the confirmations queue behind them).
            for (reply, task) in replies.iter().zip(batch) {
                let Reply::BulkString(raw) = reply else {
                    panic!("floor: RPOP found the queue empty");
                };
                assert_eq!(
                    task.unacked.as_bytes().get(1..=raw.len()),
                    Some(&raw[..]),
                    "floor: RPOP takes the orders oldest first"
                );
            }
        }
        (t.elapsed().as_secs_f64(), thread_cpu_seconds() - cpu)
    })
}

/// The calling thread's CPU time (user and system) so far, in seconds.
fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for clock_gettime to write.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// The floor, `reps` times over `n` orders; with `unacked` off, without kombu's unacked record.
/// Prints Redis's commandstats of each run when `commandstats`.
pub async fn measure(
    stack: &Stack,
    reps: usize,
    n: usize,
    unacked: bool,
    commandstats: bool,
) -> Floor {
    let mut conn = stack.redis.manager().await;
    let broker = Broker::new(conn.clone(), QUEUE, "test@host");
    let s = sample(stack, &mut conn, &broker).await;
    let mut out = Floor {
        unacked,
        ..Floor::default()
    };
    for _ in 0..reps {
        flush(&mut conn).await;
        shop::inventory::set_stock(&conn, "A", 1_000_000_000)
            .await
            .unwrap();
        for chunk in drain_orders(n).chunks(1000) {
            broker.publish_many(chunk).await.unwrap();
        }
        let queued: Vec<String> = redis::cmd("LRANGE")
            .arg(keys::queue_list(QUEUE, 0))
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .unwrap();
        let tasks = tasks(queued, &s);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
            .ceil(); // the claim's lease score: whole seconds (prelude.lua's `lease_score`)
        let pipes: Vec<redis::Pipeline> = tasks
            .chunks(PIPELINE)
            .map(|b| pipeline(b, now, unacked))
            .collect();
        // One subscriber to the results, as in the drain (the bench's own listener).
        let results = super::results_listener(stack.redis.client()).await;
        if commandstats {
            super::stats::reset(&mut conn, false).await;
        }
        let (redis_cpu, commands) = (
            redis_cpu_seconds(&mut conn).await,
            redis_commands(&mut conn).await,
        );
        let client = stack.redis.client();
        let (elapsed, client_cpu) =
            tokio::task::spawn_blocking(move || send(client, &pipes, &tasks))
                .await
                .unwrap();
        let nf = n as f64;
        out.rate.0.push(nf / elapsed);
        out.client_us.0.push(client_cpu / nf * 1e6);
        out.redis_us
            .0
            .push((redis_cpu_seconds(&mut conn).await - redis_cpu) / nf * 1e6);
        // Less the INFO cpu and INFO stats of the measurement itself.
        out.commands
            .0
            .push((redis_commands(&mut conn).await - commands - 2.0) / nf);
        drop(results);
        let left: (usize, usize) = redis::pipe()
            .cmd("HLEN")
            .arg(UNACKED)
            .cmd("LLEN")
            .arg(keys::queue_list(QUEUE, 0))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(
            left,
            (0, n),
            "floor: every order acked, every confirmation queued"
        );
        if commandstats {
            let what = if unacked {
                "floor"
            } else {
                "floor without unacked"
            };
            super::stats::print(&mut conn, &format!("{what}, {n} orders"), n, false).await;
        }
    }
    out
}
