//! ctl: the command-line client, driven as kubectl is. It reads kubeconfig files as
//! kubectl does and talks only to the apiserver's gRPC API; it holds no state of its
//! own. Verbs whose server side does not exist yet (logs, exec) say so and fail.

mod cli;
mod commands;
mod connection;
mod manifest;
mod output;
mod three_way;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        // The command has already printed its own errors, one per object.
        Err(e) if e.downcast_ref::<commands::Reported>().is_some() => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
