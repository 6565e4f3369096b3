//! The node lifecycle controller: marks silent nodes Unknown, taints nodes by
//! condition, and evicts pods from nodes with NoExecute taints they do not tolerate.

pub mod controller;
pub mod health;

pub use controller::{LifecycleSettings, NodeLifecycleController};
