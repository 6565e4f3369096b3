//! The ReplicaSet and ReplicationController controller: keeps `replicas` pods.

pub mod controller;
pub mod kinds;
pub mod ranking;

pub use controller::ReplicaSetController;
