//! Configuration refusals: bad values, taken addresses and unfit Redis servers stop the binaries
//! at start (`startup`); `.env` files (`envfile`).

mod envfile;
mod startup;

use std::process::{Command, Output};

/// The three binaries, each of which must refuse what the worker refuses.
pub(super) const BINARIES: [&str; 3] = ["worker", "service-order", "service-notification"];

/// The binary `name`, built beside the worker.
pub(super) fn binary(name: &str) -> std::path::PathBuf {
    testkit::sibling_binary(env!("CARGO_BIN_EXE_worker"), name)
}

/// Runs `cmd` to its end. A binary still running after 20 s has not refused anything: it is
/// killed and the test fails, saying it `kept running` instead of `refusing`.
pub(super) fn refusal(mut cmd: Command, refusing: &str) -> Output {
    let child = cmd.spawn().expect("run the binary");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(std::time::Duration::from_secs(20)) {
        Ok(out) => out.expect("wait for the binary"),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("{cmd:?} kept running instead of refusing {refusing}");
        }
    }
}
