//! One module per controller.

pub mod deployment;
pub mod replicaset;
