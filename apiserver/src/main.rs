use clap::Parser as _;

use apiserver::config::{Flags, Settings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    ops::logging::init();
    let settings = Settings::load(Flags::parse())?;
    apiserver::server::run(settings, ops::signals::shutdown()).await
}
