//! Standard output as kubectl treats it: once whatever reads it has gone (`ctl get pods
//! | head -1`), ctl ends at once and quietly, as a program killed by SIGPIPE, instead of
//! panicking on the broken pipe (Rust ignores SIGPIPE, so a write fails instead). Only
//! standard output ends the process so: a broken connection to the apiserver stays an
//! error like any other. The crate's `print!` and `println!` come here.

use std::io::Write as _;

/// Writes `text` to standard output and flushes it.
pub fn print(text: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(text).and_then(|()| out.flush()) {
        failed(&e);
    }
}

/// Writes `bytes` to standard output and flushes it (logs and exec streams).
pub fn write_all(bytes: &[u8]) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(bytes).and_then(|()| out.flush()) {
        failed(&e);
    }
}

fn failed(error: &std::io::Error) -> ! {
    if error.kind() == std::io::ErrorKind::BrokenPipe {
        // SAFETY: restores SIGPIPE's default action (no handler) and raises it, which
        // ends the process as the shell expects of the left side of a pipeline.
        unsafe {
            nix::libc::signal(nix::libc::SIGPIPE, nix::libc::SIG_DFL);
            nix::libc::raise(nix::libc::SIGPIPE);
        }
        std::process::exit(141);
    }
    eprintln!("error: writing to standard output: {error}");
    std::process::exit(1);
}
