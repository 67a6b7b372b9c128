//! A worker that runs the `add` task: configured from the environment like the shop's worker
//! (`REDIS_URL`, `WORKER_QUEUES`, ...), it runs until SIGTERM/SIGINT.

use celery_redis::task::Tasks;
use example_add::Add;
use worker::config::WorkerConfig;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    envconf::init();
    let env = envconf::ProcessEnv;
    let cfg = WorkerConfig::from_source(&env).unwrap_or_else(|e| envconf::fail(&e));
    let tasks = Tasks::new().task::<Add>();
    worker::run(cfg, tasks, celery_redis::shutdown::on_signals()).await?;
    Ok(())
}
