//! `version` and `api-resources`.

use anyhow::Result;

use crate::connection::Connection;

pub async fn version(connection: &Connection) -> Result<()> {
    println!("Client Version: v{}", env!("CARGO_PKG_VERSION"));
    let server = connection.client.version().await?;
    println!("Server Version: {}", server.git_version);
    Ok(())
}

pub async fn api_resources(connection: &Connection) -> Result<()> {
    let resources = connection.client.api_resources().await?;
    let mut rows = vec![["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"].map(String::from).to_vec()];
    for r in resources {
        let api_version = if r.group.is_empty() { r.version.clone() } else { format!("{}/{}", r.group, r.version) };
        rows.push(vec![r.name, r.short_names.join(","), api_version, r.namespaced.to_string(), r.kind]);
    }
    let widths: Vec<usize> = (0..5).map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0)).collect();
    for row in rows {
        let line: Vec<String> = row.iter().enumerate().map(|(c, cell)| format!("{cell:<w$}", w = widths[c])).collect();
        println!("{}", line.join("   ").trim_end());
    }
    Ok(())
}
