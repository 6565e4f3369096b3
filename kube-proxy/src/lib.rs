//! kube-proxy: makes each Service's ClusterIP and NodePorts reach the Service's ready
//! endpoints on this node. It watches Services, Endpoints and its own Node through the
//! apiserver (`watch`), reduces them to a pure description of what to program
//! (`model`), and hands that to a proxier: nftables rules in a table of its own
//! (`nftables`, the default) or sockets it forwards itself (`userspace`). `sync` runs
//! a proxier's syncs, coalescing bursts of changes, and keeps the health and metrics
//! that `/healthz` and `/metrics` report. With `--cluster-dns-address` it also serves
//! the cluster DNS (`cluster_dns`, the `dns` crate) from the same informers.
//!
//! It must never touch netfilter state other than its own table (and the conntrack
//! entries of its own UDP services), and it never writes to the API.

pub mod cluster_dns;
pub mod config;
pub mod conntrack;
pub mod model;
pub mod nftables;
pub mod sync;
pub mod userspace;
pub mod watch;
