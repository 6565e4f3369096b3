//! End-to-end test support: a whole single-node cluster, every component its own
//! process (etcd, apiserver, controller-manager, scheduler, kubelet, kube-proxy with
//! the cluster DNS), the node in a network namespace of its own, images pulled from
//! a real registry. Tests in `tests/` deploy sample applications onto it.
//!
//! Never a dependency of a shipped binary.

pub mod cluster;
pub mod http;
pub mod netns;

pub use cluster::{Cluster, Options};
pub use netns::NodeNetns;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot run {program}: {source}")]
    Spawn { program: String, source: std::io::Error },
    #[error("`{command}` failed: {stderr}")]
    Command { command: String, stderr: String },
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("{what} was not ready in time; its log:\n{log}")]
    NotReady { what: String, log: String },
    #[error("{what} exited with {status}; its log:\n{log}")]
    Exited { what: String, status: std::process::ExitStatus, log: String },
    #[error("{0}")]
    Api(String),
    #[error("the node's namespace is already gone")]
    Gone,
    #[error(transparent)]
    Testkit(#[from] testkit::Error),
    #[error(transparent)]
    File(#[from] std::io::Error),
}
