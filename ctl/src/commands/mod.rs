//! One module per verb; `run` dispatches.

mod apply;
mod delete;
mod discovery;
mod get;

use anyhow::Result;
use proto::KindInfo;

use crate::cli::{Cli, Command};
use crate::connection::connect;

pub async fn run(cli: Cli) -> Result<()> {
    let connection = connect(&cli.global)?;
    let explicit_namespace = cli.global.namespace.is_some();
    match cli.command {
        Command::Version => discovery::version(&connection).await,
        Command::ApiResources => discovery::api_resources(&connection).await,
        Command::Apply(args) => apply::apply(&connection, explicit_namespace, &args, apply::Mode::Apply).await,
        Command::Create(args) => apply::apply(&connection, explicit_namespace, &args, apply::Mode::Create).await,
        Command::Get(args) => get::get(&connection, &args).await,
        Command::Delete(args) => delete::delete(&connection, explicit_namespace, &args).await,
    }
}

/// Resolves a kind name as kubectl accepts it ("po", "pods", "deployment.apps").
pub fn kind(name: &str) -> Result<&'static KindInfo> {
    proto::resource::by_name(name)
        .ok_or_else(|| anyhow::anyhow!("the server doesn't have a resource type \"{name}\" (see `ctl api-resources`)"))
}

/// The namespace an object from a manifest goes to: its own, else -n's or the
/// context's. A manifest namespace that contradicts an explicit -n is an error.
pub fn namespace_for(info: &KindInfo, own: &str, connection_namespace: &str, explicit: bool) -> Result<String> {
    if !info.namespaced {
        return Ok(String::new());
    }
    if own.is_empty() {
        return Ok(connection_namespace.to_string());
    }
    if explicit && own != connection_namespace {
        anyhow::bail!(
            "the namespace from the provided object \"{own}\" does not match the namespace \"{connection_namespace}\". You must pass '--namespace={own}' to perform this operation."
        );
    }
    Ok(own.to_string())
}
