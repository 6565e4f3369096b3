//! The Deployment controller: ReplicaSets named by pod-template hash, rolled by
//! RollingUpdate or Recreate.

pub mod controller;
pub mod rolling;
pub mod template_hash;

pub use controller::DeploymentController;
