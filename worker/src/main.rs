//! The worker binary: `worker` (or `worker run`) consumes until SIGTERM/SIGINT; the other
//! subcommands are for operators (see `worker::admin`).

use celery_redis::config::{self, ProcessEnv};
use worker::config::WorkerConfig;

/// Every task allocates and frees many short strings (envelopes, JSON, Redis replies); mimalloc
/// runs that in about a third fewer instructions per task than glibc's malloc (callgrind).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    config::init();
    let cfg = WorkerConfig::from_source(&ProcessEnv).unwrap_or_else(|e| config::fail(&e));
    // Tasks wait on Redis and HTTP: one thread avoids cross-thread wake-ups between tasks and
    // the Redis connection's driver (WORKER_THREADS raises it).
    let runtime = match cfg.threads {
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build()?,
    };
    runtime.block_on(run(cfg))
}

async fn run(cfg: WorkerConfig) -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() || args[0] == "run" {
        match worker::run(cfg, celery_redis::shutdown::on_signals()).await {
            Err(worker::worker::WorkerError::Config(e)) => config::fail(&e),
            other => other?,
        }
        return Ok(());
    }
    match worker::admin::run(&cfg, &args).await {
        Ok(out) => println!("{out}"),
        Err(worker::admin::AdminError::Usage(msg)) => {
            eprintln!("{msg}");
            std::process::exit(2);
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
    Ok(())
}
