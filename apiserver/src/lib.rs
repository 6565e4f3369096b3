//! The apiserver: the cluster's only gateway to etcd.
//!
//! It owns storage (objects in etcd, exact compare-and-swap writes), the watch cache
//! (one etcd watch per resource fanned out to every client watch), per-kind rules
//! (defaults, validation, graceful deletion, ClusterIP and NodePort allocation) and the
//! gRPC API. It must not run control loops: reconciling desired and observed state is
//! the controllers' job, and the apiserver only stores and validates.

pub mod allocation;
pub mod allocator;
pub mod bootstrap;
pub mod config;
pub mod grpc;
pub mod http;
pub mod metrics;
pub mod registry;
pub mod server;
pub mod storage;
pub mod watchcache;
