//! End-to-end test support: a whole single-node cluster, every component its own
//! process (etcd, apiserver, controller-manager, scheduler, kubelet, kube-proxy with
//! the cluster DNS), the node in a network namespace of its own, images pulled from
//! a real registry. Tests in `tests/` deploy sample applications onto it.
//!
//! Never a dependency of a shipped binary.
