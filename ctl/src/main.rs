//! ctl: the command-line client, driven as kubectl is. It reads kubeconfig files as
//! kubectl does and talks only to the apiserver's gRPC API; it holds no state of its
//! own; `logs` and `exec` stream through the apiserver from the pod's kubelet.

// Before the modules, so that theirs are these (see `stdout`).
macro_rules! print {
    ($($arg:tt)*) => { $crate::stdout::print(format_args!($($arg)*)) };
}
macro_rules! println {
    () => { $crate::stdout::print(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::stdout::print(format_args!("{}\n", format_args!($($arg)*))) };
}

mod cli;
mod commands;
mod connection;
mod manifest;
mod output;
mod stdout;
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
        // `exec`: the command's own exit code, as kubectl exits with it.
        Err(e) if e.downcast_ref::<commands::streaming::ExitCode>().is_some() => {
            let code = e.downcast_ref::<commands::streaming::ExitCode>().map_or(1, |c| c.0);
            ExitCode::from(u8::try_from(code).unwrap_or(1))
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
