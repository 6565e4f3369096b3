//! `get`: by kind and name, by selector, in one namespace or all; tables, documents,
//! names, JSONPath, custom columns; `-w` to follow changes.

use anyhow::Result;
use client::client::next_event;
use client::{ListParams, RawEvent};
use proto::{DynamicObject, KindInfo, Reason};
use serde_json::Value as Json;

use super::{kind, server_error};
use crate::cli::GetArgs;
use crate::connection::Connection;
use crate::output::{self, Format, TableOptions};

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
    let mut kinds = Vec::new();
    for name in args[0].split(',').filter(|k| !k.is_empty()) {
        if name == "all" {
            kinds.extend(proto::KINDS.iter().copied().filter(|k| k.categories.contains(&"all")));
        } else {
            kinds.push(kind(name)?);
        }
    }
    let names: Vec<String> = args[1..].to_vec();
    if kinds.len() > 1 && !names.is_empty() {
        anyhow::bail!("names cannot follow several kinds; use KIND/NAME pairs instead");
    }
    Ok(kinds.into_iter().map(|info| (info, names.clone())).collect())
}

pub async fn get(connection: &Connection, args: &GetArgs) -> Result<()> {
    let format = Format::parse(args.output.as_deref())?;
    let requests = requests(&args.args)?;
    if (args.watch || args.watch_only) && requests.len() != 1 {
        anyhow::bail!("you may only watch one kind at a time (ctl get KIND -w)");
    }
    let client = &connection.client;
    let several = requests.len() > 1;
    let mut all = Vec::new();
    let mut blocks = Vec::new();
    let mut errors = Vec::new();
    let mut list_version = String::new();
    // Column widths of the table printed first, which watched rows keep.
    let mut widths = Vec::new();
    for (info, names) in &requests {
        let ns = connection.list_namespace(info);
        let ns_for_names = connection.scoped(info);
        let mut objects = Vec::new();
        if names.is_empty() {
            let params = ListParams {
                label_selector: args.selector.clone(),
                field_selector: args.field_selector.clone(),
                ..Default::default()
            };
            let list = client.list(info, &ns, &params).await?;
            list_version = list.resource_version;
            objects.extend(list.items.into_iter().map(|bytes| DynamicObject::new(info, bytes)));
        } else {
            for name in names {
                match client.get(info, &ns_for_names, name).await {
                    Ok(bytes) => objects.push(DynamicObject::new(info, bytes)),
                    Err(e) if e.is(Reason::NotFound) && args.ignore_not_found => {}
                    Err(e) => errors.push(server_error(&e)),
                }
            }
        }
        if args.watch_only {
            continue;
        }
        let values: Vec<Json> = objects.iter().map(DynamicObject::to_json).collect();
        match &format {
            Format::Table | Format::Wide if !objects.is_empty() => {
                let options = TableOptions {
                    with_namespace: connection.all_namespaces && info.namespaced,
                    wide: format == Format::Wide,
                    show_labels: args.show_labels,
                    kind_prefix: several,
                    headers: !args.no_headers,
                };
                widths.clear();
                blocks.push(output::align_to(&output::table_rows(info, &values, options), &mut widths));
            }
            Format::CustomColumns(columns) if !objects.is_empty() => {
                widths.clear();
                blocks.push(output::align_to(&output::custom_rows(columns, &values, !args.no_headers), &mut widths));
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
    if !args.watch_only {
        match &format {
            f if f.is_document() => {
                let single = requests.len() == 1 && requests[0].1.len() == 1;
                if !all.is_empty() || !single {
                    print!("{}", output::document(&all, f, !single));
                }
            }
            Format::Name => {}
            _ => print!("{}", blocks.join("\n")),
        }
        let listed = requests.iter().all(|(_, names)| names.is_empty());
        if all.is_empty() && errors.is_empty() && listed && !args.watch {
            if connection.all_namespaces || requests.iter().all(|(info, _)| !info.namespaced) {
                eprintln!("No resources found");
            } else {
                eprintln!("No resources found in {} namespace.", connection.namespace);
            }
        }
    }
    if !errors.is_empty() {
        for error in &errors {
            eprintln!("{error}");
        }
        return Err(super::Reported.into());
    }
    if args.watch || args.watch_only {
        let (info, names) = &requests[0];
        let headers = all.is_empty() && !args.no_headers;
        let start = WatchStart { from: list_version, headers, widths };
        return watch(connection, args, &format, info, names, start).await;
    }
    Ok(())
}

/// Where a watch picks up after the listing: its resourceVersion, whether a header
/// is still to be printed, and the listing's column widths.
struct WatchStart {
    from: String,
    headers: bool,
    widths: Vec<usize>,
}

/// Prints every change after `from` until interrupted: one row per event for tables,
/// one document per event otherwise.
async fn watch(
    connection: &Connection,
    args: &GetArgs,
    format: &Format,
    info: &'static KindInfo,
    names: &[String],
    start: WatchStart,
) -> Result<()> {
    let WatchStart { from, mut headers, mut widths } = start;
    let mut field_selector = args.field_selector.clone();
    if let [name] = names {
        let by_name = format!("metadata.name={name}");
        field_selector = if field_selector.is_empty() { by_name } else { format!("{field_selector},{by_name}") };
    }
    let params = ListParams { label_selector: args.selector.clone(), field_selector, ..Default::default() };
    let ns = if names.is_empty() { connection.list_namespace(info) } else { connection.scoped(info) };
    let mut events = connection.client.watch(info, &ns, &params, &from, false).await?;
    while let Some(event) = next_event(&mut events).await {
        let bytes = match event? {
            RawEvent::Added(b) | RawEvent::Modified(b) | RawEvent::Deleted(b) => b,
            RawEvent::Bookmark(_) => continue,
        };
        let object = DynamicObject::new(info, bytes);
        if names.len() > 1 && !names.contains(&object.metadata().name) {
            continue;
        }
        let value = object.to_json();
        let text = match format {
            Format::Table | Format::Wide => {
                let options = TableOptions {
                    with_namespace: connection.all_namespaces && info.namespaced,
                    wide: *format == Format::Wide,
                    show_labels: args.show_labels,
                    kind_prefix: false,
                    headers,
                };
                output::align_to(&output::table_rows(info, &[value], options), &mut widths)
            }
            Format::CustomColumns(columns) => {
                output::align_to(&output::custom_rows(columns, &[value], headers), &mut widths)
            }
            Format::Name => format!("{}\n", output::name_of(info, &object.metadata().name)),
            Format::Yaml => format!("---\n{}", output::render_value(&value, format)),
            other => output::render_value(&value, other),
        };
        headers = false;
        print!("{text}");
    }
    anyhow::bail!("the watch was closed by the server")
}
