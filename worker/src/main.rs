//! The worker binary: `worker` (or `worker run`) consumes until SIGTERM/SIGINT; the other
//! subcommands are for operators (see `worker::admin`); `worker --help` lists them.

use clap::Parser;
use envconf::ProcessEnv;
use worker::cli::{Cli, Command};
use worker::config::WorkerConfig;

/// Every task allocates and frees many short strings (envelopes, JSON, Redis replies); mimalloc
/// runs that in about a third fewer instructions per task than glibc's malloc (callgrind).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    // `--help` and `--version` answer before any setting is read.
    let command = Cli::parse().into_command();
    envconf::init();
    let cfg = WorkerConfig::from_source(&ProcessEnv).unwrap_or_else(|e| envconf::fail(&e));
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
    runtime.block_on(run(cfg, command))
}

async fn run(cfg: WorkerConfig, command: Command) -> anyhow::Result<()> {
    if command == Command::Run {
        // The shop's settings (WEBHOOK_*) stop the program as the worker's own do.
        let tasks = match worker::shop::tasks(&ProcessEnv, &cfg) {
            Err(worker::shop::ShopError::Config(e)) => envconf::fail(&e),
            other => other?,
        };
        match worker::run(cfg, tasks, celery_redis::shutdown::on_signals()).await {
            Err(worker::worker::WorkerError::Config(e)) => envconf::fail(&e),
            other => other?,
        }
        return Ok(());
    }
    match worker::admin::run(&cfg, &command).await {
        Ok(out) => println!("{out}"),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
    Ok(())
}
