//! The ReplicaSet and ReplicationController controller: keeps `replicas` pods.

pub mod ranking;
