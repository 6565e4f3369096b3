//! The client runtime every component and `ctl` use to reach the apiserver: the
//! kubeconfig, a connection with the API's calls, and typed per-kind access.
//!
//! It owns no cluster state and never talks to etcd; everything goes through the
//! apiserver's gRPC API.

pub mod api;
pub mod client;
pub mod fence;
pub mod kubeconfig;
pub mod runtime;

pub use api::{Api, ObjectList, WatchEvent};
pub use client::{Client, ConnectError, ListParams, PatchType, RawEvent};
pub use fence::Fence;
pub use kubeconfig::Kubeconfig;
