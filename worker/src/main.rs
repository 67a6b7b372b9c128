//! The worker binary: `worker` (or `worker run`) consumes until SIGTERM/SIGINT; the other
//! subcommands are for operators (see `worker::admin`).

use common::config::{self, ProcessEnv, WorkerConfig};

/// Every task allocates and frees many short strings (envelopes, JSON, Redis replies); mimalloc
/// runs that in about a third fewer instructions per task than glibc's malloc (callgrind).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    config::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cfg = match WorkerConfig::from_source(&ProcessEnv) {
        Ok(cfg) => cfg,
        Err(e) => {
            log::error!("{e}");
            std::process::exit(2);
        }
    };
    if args.is_empty() || args[0] == "run" {
        worker::run(cfg, common::shutdown::on_signals()).await?;
        return Ok(());
    }
    match worker::admin::run(&cfg.redis, &args).await {
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
