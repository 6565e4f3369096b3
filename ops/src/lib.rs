//! What every daemon does for its operators, the same way in each: the HTTP
//! operations endpoint (/healthz, /readyz, /metrics), log setup, stopping on
//! SIGTERM, and reading flags and settings files. It knows nothing of the cluster's
//! API or of any one daemon's state: daemons plug their readiness and metrics in
//! through `Probe`.

pub mod endpoint;
pub mod logging;
pub mod settings;
pub mod signals;

pub use endpoint::{Probe, serve};
