//! `check-layout [ROOT]`: the layout rules of the workspace under ROOT (default: the current
//! directory), exit 1 on any problem; `check-layout --self-test`: the checker against small
//! trees with known answers (see the library's documentation for the rules).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Checks the workspace's layout rules: no module cycles, no production file over 350 lines, a
/// `//!` line first in every file.
#[derive(Debug, Parser)]
#[command(name = "check-layout")]
struct Cli {
    /// Check the checker instead, against small trees with known answers.
    #[arg(long)]
    self_test: bool,
    /// The repository's root.
    #[arg(default_value = ".", conflicts_with = "self_test")]
    root: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.self_test {
        true => check_layout::selftest::run()
            .map_err(|e| vec![format!("check-layout: self-test FAILED: {e}")]),
        false => check_layout::report::check(&cli.root),
    };
    match result {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(lines) => {
            eprintln!("{}", lines.join("\n"));
            ExitCode::FAILURE
        }
    }
}
