//! One module per controller.

pub mod deployment;
pub mod endpoints;
pub mod nodeipam;
pub mod replicaset;
