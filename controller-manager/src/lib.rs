//! The controller-manager: the control loops that drive the cluster toward its
//! desired state (replication, deployments, endpoints, garbage collection, nodes,
//! namespaces). It reads and writes only through the apiserver, never etcd, and each
//! controller lives in its own module under `controllers/`.

pub mod config;
pub mod context;
pub mod controllers;
pub mod expectations;
pub mod ownership;
pub mod pods;
pub mod revisions;
pub mod tasks;
pub mod tolerations;
