//! The worker binary: reads its configuration and runs the consumer until SIGTERM/SIGINT.

use common::config::{self, ProcessEnv, WorkerConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    config::init();
    let cfg = match WorkerConfig::from_source(&ProcessEnv) {
        Ok(cfg) => cfg,
        Err(e) => {
            log::error!("{e}");
            std::process::exit(2);
        }
    };
    worker::run(cfg, common::shutdown::on_signals()).await?;
    Ok(())
}
