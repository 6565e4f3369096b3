//! `get`: by kind and name, by selector, in one namespace or all.

use anyhow::Result;
use client::ListParams;
use proto::{DynamicObject, KindInfo};

use super::kind;
use crate::cli::GetArgs;
use crate::connection::Connection;
use crate::output::{self, Format};

/// What one `get` asks for: per kind, the names (empty: list them all).
fn requests(args: &[String]) -> Result<Vec<(&'static KindInfo, Vec<String>)>> {
    let mut requests: Vec<(&'static KindInfo, Vec<String>)> = Vec::new();
    if args.iter().any(|a| a.contains('/')) {
        for arg in args {
            let Some((kind_name, name)) = arg.split_once('/') else {
                anyhow::bail!(
                    "there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (e.g. 'ctl get resource/<resource_name>' instead of 'ctl get resource resource/<resource_name>')"
                );
            };
            let info = kind(kind_name)?;
            match requests.iter_mut().find(|(i, _)| *i == info) {
                Some((_, names)) => names.push(name.to_string()),
                None => requests.push((info, vec![name.to_string()])),
            }
        }
        return Ok(requests);
    }
    let kinds = args[0].split(',').filter(|k| !k.is_empty()).map(kind).collect::<Result<Vec<_>>>()?;
    let names: Vec<String> = args[1..].to_vec();
    if kinds.len() > 1 && !names.is_empty() {
        anyhow::bail!("names cannot follow several kinds; use KIND/NAME pairs instead");
    }
    Ok(kinds.into_iter().map(|info| (info, names.clone())).collect())
}

pub async fn get(connection: &Connection, args: &GetArgs) -> Result<()> {
    let format = Format::parse(args.output.as_deref())?;
    let requests = requests(&args.args)?;
    let client = &connection.client;
    let namespace = if args.all_namespaces { String::new() } else { connection.namespace.clone() };
    let several = requests.len() > 1;
    let mut all = Vec::new();
    let mut tables = Vec::new();
    let mut errors = Vec::new();
    for (info, names) in &requests {
        let ns = if info.namespaced { namespace.as_str() } else { "" };
        let mut objects = Vec::new();
        if names.is_empty() {
            let params = ListParams {
                label_selector: args.selector.clone(),
                field_selector: args.field_selector.clone(),
                ..Default::default()
            };
            let list = client.list(info, ns, &params).await?;
            objects.extend(list.items.into_iter().map(|bytes| DynamicObject::new(info, bytes)));
        } else {
            for name in names {
                match client.get(info, ns, name).await {
                    Ok(bytes) => objects.push(DynamicObject::new(info, bytes)),
                    Err(e) => errors.push(format!("Error from server ({}): {}", e.reason().as_str(), e.message())),
                }
            }
        }
        match format {
            Format::Table | Format::Wide if !objects.is_empty() => {
                let options = output::TableOptions {
                    with_namespace: args.all_namespaces && info.namespaced,
                    wide: format == Format::Wide,
                    show_labels: args.show_labels,
                    kind_prefix: several,
                };
                tables.push(output::table(info, &objects, options));
            }
            Format::Name => {
                for object in &objects {
                    println!("{}", output::name_of(info, &object.metadata().name));
                }
            }
            _ => {}
        }
        all.extend(objects);
    }
    match format {
        Format::Yaml | Format::Json => {
            let single = requests.len() == 1 && requests[0].1.len() == 1;
            if !all.is_empty() || !single {
                print!("{}", output::document(&all, format, !single));
            }
        }
        Format::Table | Format::Wide => print!("{}", tables.join("\n")),
        Format::Name => {}
    }
    if all.is_empty() && errors.is_empty() && requests.iter().all(|(_, names)| names.is_empty()) {
        if args.all_namespaces || requests.iter().all(|(info, _)| !info.namespaced) {
            eprintln!("No resources found");
        } else {
            eprintln!("No resources found in {namespace} namespace.");
        }
    }
    if !errors.is_empty() {
        for error in &errors {
            eprintln!("{error}");
        }
        anyhow::bail!("{} object(s) not found or not readable", errors.len());
    }
    Ok(())
}
