//! ctl: the command-line client. It reads kubeconfig files as kubectl does and talks
//! to the apiserver's gRPC API; it holds no state of its own.
//!
//! This build has the verbs a newcomer needs first (version, api-resources, apply,
//! create, get, delete); the rest of kubectl's verbs come with their issue.

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
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
