//! Log setup: human-readable lines on stderr (journald keeps them under systemd),
//! filtered by RUST_LOG, `info` by default.

pub fn init() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
}
