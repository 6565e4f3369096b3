//! Pods on this node: the manager watching the bound pods, a worker per pod, what a
//! pod's spec turns into for the runtime, probes, restart back-off, and the status
//! reported back.

pub mod backoff;
pub mod manager;
pub mod probes;
pub mod spec;
pub mod status;
pub mod worker;
