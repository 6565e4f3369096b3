//! The gRPC services: the generic Resources API and Discovery.

pub mod discovery;
pub mod resources;
