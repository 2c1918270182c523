//! The binary under test, as every scenario here runs it: a clean environment for connections
//! (no `DATABASE_URL`, `PG*`, `NATS*` or `RUST_LOG` leaking in from the caller), no stdin, and
//! killed when the test drops it.

use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;

/// The `pg-changestream` binary with a clean environment.
pub(crate) fn cli() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pg-changestream"));
    for (key, _) in std::env::vars() {
        if key == "DATABASE_URL"
            || key.starts_with("PG")
            || key.starts_with("NATS")
            || key == "RUST_LOG"
        {
            cmd.env_remove(key);
        }
    }
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    cmd
}

/// Runs the binary with `args` to completion (at most 120 s).
pub(crate) async fn run(args: &[&str]) -> Output {
    let mut cmd = cli();
    cmd.args(args);
    output(cmd).await
}

/// Runs `cmd` to its end (at most 120 s) and returns its output.
pub(crate) async fn output(mut cmd: Command) -> Output {
    tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("the command finishes within 120 s")
        .expect("the binary runs")
}

/// The command's stderr as text.
pub(crate) fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The JSON lines of the command's stdout.
pub(crate) fn json_lines(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}
