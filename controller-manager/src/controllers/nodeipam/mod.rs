//! Node IPAM: gives every Node a spec.podCIDR from the cluster CIDR, never the same
//! one twice, and takes it back when the Node is deleted.

pub mod cidrs;
pub mod controller;

pub use controller::NodeIpamController;
