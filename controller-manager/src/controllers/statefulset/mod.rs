//! The StatefulSet controller: pods with stable names, storage and hostnames,
//! created, removed and updated in order.

pub mod controller;
pub mod identity;
pub mod plan;

pub use controller::StatefulSetController;
