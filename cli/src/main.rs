//! The `pg-changestream` command-line tool: a thin layer over the library.
//!
//! Each subcommand lives in a module named after what it does; `main` only parses the
//! command line, sets up logging and the runtime, and turns the outcome into an exit status
//! (see [`failure`]).

mod args;
mod connect;
mod demo;
mod failure;
mod metrics;
mod output;
mod progress;
mod publish;
mod source;
mod status;
mod tables;
mod tail;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};
use crate::failure::Failure;

fn main() -> ExitCode {
    quiet_panics();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return failure::from_clap(e),
    };
    init_logging(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return Failure::other(format!("cannot start the async runtime: {e}")).report(),
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let url = cli.url.as_deref();
    match cli.command {
        Command::Demo(args) => demo::demo(args).await,
        Command::Enable {
            table,
            no_before_images,
        } => tables::enable(&connect::resolve(url)?, &table, !no_before_images).await,
        Command::Disable { table } => tables::disable(&connect::resolve(url)?, &table).await,
        Command::Tail(args) => tail::tail(&connect::resolve(url)?, *args).await,
        Command::Publish(args) => publish::publish(&connect::resolve(url)?, *args).await,
        Command::Groups { json } => status::groups(&connect::resolve(url)?, json).await,
        Command::Status { group, json } => {
            status::status(&connect::resolve(url)?, group.as_deref(), json).await
        }
        Command::DeleteGroup { group, force } => {
            status::delete_group(&connect::resolve(url)?, &group, force).await
        }
    }
}

/// Logs go to stderr; `RUST_LOG` wins over `-v`.
fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Through the progress bar's screen: a log line never lands inside the bar.
        .with_writer(progress::Logs)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(verbose >= 2)
        .init();
}

/// A bug must still end in one line and exit status 1, not a backtrace.
fn quiet_panics() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let payload = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        eprintln!("pg-changestream: internal error{location}: {payload}; please report it");
        std::process::exit(1);
    }));
}
