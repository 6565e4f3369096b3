//! The Job controller: runs pods to completion.

pub mod controller;
pub mod progress;

pub use controller::{JobController, JobSettings};
