//! Real processes for integration tests and benchmarks: an etcd member or cluster on
//! free loopback ports in a temporary directory, and the project's own daemons.
//!
//! Everything started here dies with its handle (Drop kills it) and with the test
//! process (PR_SET_PDEATHSIG), so a failing or aborted test leaves nothing running.
//! This crate must never be a dependency of a shipped binary.

mod apiserver;
mod daemon;
mod etcd;
mod ports;
pub mod registry;

pub use apiserver::{ApiServer, http_get};
pub use daemon::{Daemon, binary_path};
pub use etcd::{Etcd, EtcdCluster};
pub use ports::free_port;

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot start {program}: {source} (is it installed? run deploy/install-deps.sh)")]
    Spawn { program: String, source: std::io::Error },
    #[error("binary {0} not found: run `cargo build --workspace` first")]
    MissingBinary(PathBuf),
    #[error("{what} was not ready after {waited:?}; its log ({log}):\n{tail}")]
    NotReady { what: String, waited: Duration, log: String, tail: String },
    #[error("{what} exited early with {status}; its log ({log}):\n{tail}")]
    Exited { what: String, status: std::process::ExitStatus, log: String, tail: String },
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Etcd(#[from] etcd_client::Error),
}

pub type Result<T> = std::result::Result<T, Error>;
