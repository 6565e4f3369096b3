//! The gRPC services: the generic Resources API, Discovery, and Streaming (logs, exec).

pub mod coalesce;
pub mod discovery;
pub mod resources;
pub mod streaming;
