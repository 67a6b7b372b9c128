//! The worker's command line: `worker [run]` consumes tasks; the other subcommands are for
//! operators ([`crate::admin`]). Settings come from the environment, never from flags.

use clap::{Parser, Subcommand};

/// Where every setting is documented, shown under `--help`.
const SETTINGS: &str = "Settings come from environment variables (and a .env file in the \
working directory); every variable is documented in .env.example and in the table of \
docs/configuration.md.";

/// A Celery worker for Redis, written in Rust: runs the registered tasks of a Celery fleet.
#[derive(Debug, Parser)]
#[command(name = "worker", version, after_help = SETTINGS)]
pub struct Cli {
    /// The subcommand given, if any ([`Cli::into_command`] reads none as `run`).
    #[command(subcommand)]
    command: Option<Command>,
}

/// What to do; without a subcommand, `run`.
#[derive(Debug, Subcommand, PartialEq, Eq)]
pub enum Command {
    /// Consume tasks until SIGTERM or SIGINT (the default).
    Run,
    /// Exit 0 when this worker answers a remote-control ping (a liveness probe).
    Healthcheck,
    /// Queue counts: one JSON line per consumed queue.
    Stats {
        /// Only this queue.
        #[arg(long, value_name = "QUEUE", value_parser = queue_name)]
        queue: Option<String>,
    },
    /// The newest dead letters, one JSON line each.
    DeadLetters {
        /// How many (newest first).
        #[arg(default_value_t = 20)]
        count: usize,
        /// Only the dead letters taken from this queue.
        #[arg(long, value_name = "QUEUE", value_parser = queue_name)]
        queue: Option<String>,
    },
    /// Put dead letters back on their queues (oldest first).
    RequeueDead {
        /// How many (0: all).
        #[arg(default_value_t = 0)]
        count: usize,
        /// Only the dead letters taken from this queue.
        #[arg(long, value_name = "QUEUE", value_parser = queue_name)]
        queue: Option<String>,
    },
    /// Return every parked eta/countdown/retry message to its queue (a rollback to Python
    /// workers: run it once the Rust workers are stopped).
    ReturnScheduled {
        /// Only this queue's schedule (default: every queue of WORKER_QUEUES).
        #[arg(long, value_name = "QUEUE", value_parser = queue_name)]
        queue: Option<String>,
    },
    /// Delete dead letters.
    PurgeDead {
        /// Only the dead letters taken from this queue.
        #[arg(long, value_name = "QUEUE", value_parser = queue_name)]
        queue: Option<String>,
    },
    /// The queue each task is sent to under these settings (`TASK_ROUTES`, `CELERY_QUEUE`, a
    /// task's own queue): one JSON line per task. Reads no Redis.
    Route {
        /// Task names, e.g. `process_order`.
        #[arg(required = true, value_name = "TASK")]
        tasks: Vec<String>,
    },
    /// The queues this worker consumes (`WORKER_QUEUES`, else `CELERY_QUEUE`), in the order
    /// it claims from them: one JSON line. Reads no Redis.
    Queues,
    /// With no worker consuming: every accepted submission of a kind is one valid message on
    /// the queue its task is routed to and one idempotency key holding that message's task id,
    /// with an expiry; no key lacks its message. Exit 1 naming each problem.
    CheckSubmissions {
        /// What the services accepted.
        #[arg(value_enum)]
        kind: crate::rules::Kind,
        /// Also a problem: more messages waiting than this (the services' MAX_QUEUE_DEPTH).
        #[arg(long, value_name = "N")]
        max_depth: Option<usize>,
    },
}

/// A queue name the worker may use (`celery_redis::keys::is_queue_name`).
fn queue_name(s: &str) -> Result<String, String> {
    match celery_redis::keys::is_queue_name(s) {
        true => Ok(s.to_owned()),
        false => Err("not a usable queue name".to_owned()),
    }
}

impl Cli {
    /// The subcommand, `run` when none was given.
    pub fn into_command(self) -> Command {
        self.command.unwrap_or(Command::Run)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        Cli::try_parse_from(std::iter::once("worker").chain(args.iter().copied()))
            .map(Cli::into_command)
    }

    #[test]
    fn the_table_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn subcommands_and_their_arguments() {
        assert_eq!(parse(&[]).unwrap(), Command::Run);
        assert_eq!(parse(&["run"]).unwrap(), Command::Run);
        assert_eq!(
            parse(&["dead-letters", "5", "--queue", "orders"]).unwrap(),
            Command::DeadLetters {
                count: 5,
                queue: Some("orders".into())
            }
        );
        assert_eq!(
            parse(&["requeue-dead"]).unwrap(),
            Command::RequeueDead {
                count: 0,
                queue: None
            }
        );
        assert_eq!(
            parse(&["route", "process_order", "send_notification"]).unwrap(),
            Command::Route {
                tasks: vec!["process_order".into(), "send_notification".into()]
            }
        );
        assert_eq!(parse(&["queues"]).unwrap(), Command::Queues);
        assert_eq!(
            parse(&["check-submissions", "order", "--max-depth", "30"]).unwrap(),
            Command::CheckSubmissions {
                kind: crate::rules::Kind::Order,
                max_depth: Some(30)
            }
        );
        for bad in [
            &["dead-letters", "many"][..],
            &["route"],
            &["check-submissions", "invoice"],
            &["check-submissions", "order", "--max-depth", "-1"],
            &["stats", "--queue", "unacked"],
            &["stats", "--queue"],
            &["frobnicate"],
        ] {
            let err = parse(bad).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad:?}");
        }
    }

    #[test]
    fn help_lists_the_subcommands_and_where_settings_are_documented() {
        let help = Cli::command().render_help().to_string();
        for word in [
            "healthcheck",
            "dead-letters",
            "requeue-dead",
            "route",
            "queues",
            "check-submissions",
            ".env.example",
        ] {
            assert!(help.contains(word), "{help}");
        }
        assert_eq!(
            parse(&["--version"]).unwrap_err().kind(),
            clap::error::ErrorKind::DisplayVersion
        );
    }
}
