//! The cluster DNS: answers for the cluster domain (`cluster.local` by default)
//! from Services and Endpoints, and everything else forwarded to the node's
//! upstream resolvers. It is a library that kube-proxy serves on every node
//! (node-local DNS): kube-proxy already follows Services and Endpoints, so the
//! server shares its informers and no extra component is deployed.
//!
//! - `wire`: the DNS message format (a small codec of our own).
//! - `records`: what the domain contains and the answer to a question; pure.
//! - `forward`: sending other names upstream (UDP, TCP on truncation).
//! - `server`: the UDP and TCP listeners tying them together.
//! - `config`: settings and the upstreams from /etc/resolv.conf.
//! - `sockets`: the listening sockets (with IP_FREEBIND when asked).
//!
//! It owns no cluster state and writes nothing to the apiserver; it never sends a
//! query anywhere but to the configured upstreams.
//!
//! ```no_run
//! # async fn example(informers: &client::runtime::SharedInformers) -> Result<(), dns::Error> {
//! let config = dns::Config::new("10.96.0.10:53".parse().expect("an address"));
//! let server = dns::Server::bind(config, informers).await?;
//! server.run(std::future::pending()).await
//! # }
//! ```

pub mod config;
pub mod forward;
pub mod records;
pub mod server;
mod sockets;
pub mod wire;

pub use config::Config;
pub use records::{Lookup, Records};
pub use server::{Counts, Server, Status};

use std::net::SocketAddr;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "cannot listen for DNS over {protocol} on {address}: {source} (is another DNS server using it, or is the address not on this host?)"
    )]
    Bind { protocol: &'static str, address: SocketAddr, source: std::io::Error },
    #[error("\"{domain}\" is not a valid cluster domain: {why}")]
    InvalidDomain { domain: String, why: String },
    #[error("cannot read resolver configuration {path}: {source}")]
    ResolvConf { path: String, source: std::io::Error },
}
