use anyhow::Context as _;
use clap::Parser as _;

use apiserver::config::{Flags, Settings};

// The runtime is built by hand so that --worker-threads sizes it.
fn main() -> anyhow::Result<()> {
    apiserver::allocator::without_huge_pages();
    ops::logging::init();
    let settings = Settings::load(Flags::parse())?;
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = settings.worker_threads {
        runtime.worker_threads(threads);
    }
    let runtime = runtime.enable_all().build().context("starting the async runtime")?;
    runtime.block_on(apiserver::server::run(settings, ops::signals::shutdown()))
}
