//! The kubelet: the node agent. It registers its Node, runs the pods bound to it as
//! real Linux containers through its native runtime, and reports their status. It
//! talks to the cluster only through the apiserver; it never reads etcd and never
//! changes objects other than its Node, its Lease and its pods' status.

pub mod config;
pub mod images;
pub mod network;
pub mod node;
pub mod pods;
pub mod runtime;
pub mod streaming;
pub mod volumes;
