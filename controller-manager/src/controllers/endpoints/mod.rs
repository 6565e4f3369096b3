//! The endpoints controller: for each Service with a selector, Endpoints listing the
//! pods that serve it. A Service without a selector keeps the Endpoints its user wrote.

pub mod controller;
pub mod subsets;

pub use controller::EndpointsController;
