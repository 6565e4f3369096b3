//! The DaemonSet controller: one pod on every eligible node.

pub mod controller;
pub mod eligibility;
pub mod plan;

pub use controller::DaemonSetController;
