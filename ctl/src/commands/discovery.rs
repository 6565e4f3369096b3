//! `version`, `api-resources` and `cluster-info`.

use anyhow::Result;
use serde_json::json;

use crate::cli::VersionArgs;
use crate::connection::Connection;
use crate::output::align;

const CLIENT_VERSION: &str = concat!("v", env!("CARGO_PKG_VERSION"));

/// Client and (unless `--client`) server versions; an unreachable server is an error
/// after the client's version is printed, as kubectl does.
pub async fn version(connection: Option<&Connection>, args: &VersionArgs) -> Result<()> {
    let server = match connection {
        Some(c) => Some(c.client.version().await),
        None => None,
    };
    match args.output.as_deref() {
        None | Some("") => {
            println!("Client Version: {CLIENT_VERSION}");
            match server {
                Some(Ok(info)) => println!("Server Version: {}", info.git_version),
                Some(Err(e)) => anyhow::bail!("{}", e.message()),
                None => {}
            }
        }
        Some(format @ ("yaml" | "json")) => {
            let mut value = json!({"clientVersion": {"gitVersion": CLIENT_VERSION}});
            let mut failure = None;
            match server {
                Some(Ok(info)) => {
                    value["serverVersion"] = json!({
                        "gitVersion": info.git_version,
                        "gitCommit": info.git_commit,
                        "platform": info.platform,
                    });
                }
                Some(Err(e)) => failure = Some(e),
                None => {}
            }
            if format == "json" {
                println!("{}", proto::codec::to_json_pretty(&value));
            } else {
                print!("{}", proto::codec::to_yaml(&value));
            }
            if let Some(e) = failure {
                anyhow::bail!("{}", e.message());
            }
        }
        Some(other) => anyhow::bail!("--output must be 'yaml' or 'json', not \"{other}\""),
    }
    Ok(())
}

pub async fn api_resources(connection: &Connection) -> Result<()> {
    let resources = connection.client.api_resources().await?;
    let mut rows = vec![["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"].map(String::from).to_vec()];
    for r in resources {
        let api_version = if r.group.is_empty() { r.version.clone() } else { format!("{}/{}", r.group, r.version) };
        rows.push(vec![r.name, r.short_names.join(","), api_version, r.namespaced.to_string(), r.kind]);
    }
    print!("{}", align(&rows));
    Ok(())
}

/// Where the control plane is, after checking that it answers.
pub async fn cluster_info(connection: &Connection) -> Result<()> {
    connection.client.version().await?;
    println!("Kubernetes control plane is running at {}", connection.server());
    println!();
    println!("To further debug and diagnose cluster problems, use 'ctl get events -A' and 'ctl describe'.");
    Ok(())
}
