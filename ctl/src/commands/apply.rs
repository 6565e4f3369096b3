//! `apply -f` and `create -f`.
//!
//! apply creates what is missing and merges the manifest into what exists (a JSON
//! merge patch), writing nothing when the live object already holds every field of the
//! manifest. Removing fields dropped from a manifest (kubectl's three-way merge against
//! a last-applied annotation) is not in this build.

use anyhow::{Context, Result};
use proto::meta::v1::ObjectMeta;
use proto::{DynamicObject, Reason};
use serde_json::Value as Json;

use super::namespace_for;
use crate::cli::FileArgs;
use crate::connection::Connection;
use crate::manifest::read_all;
use crate::output::{self, Format};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    Apply,
    Create,
}

pub async fn apply(connection: &Connection, explicit_namespace: bool, args: &FileArgs, mode: Mode) -> Result<()> {
    let dry_run = match args.dry_run.as_str() {
        "none" | "" => false,
        "server" => true,
        other => anyhow::bail!("--dry-run must be \"none\" or \"server\", not \"{other}\""),
    };
    let format = Format::parse(args.output.as_deref())?;
    let manifests = read_all(&args.filename, args.recursive)?;
    let client = &connection.client;
    let mut failures = 0;
    let mut results = Vec::new();
    for manifest in manifests {
        let object = &manifest.object;
        let info = object.info;
        let meta: ObjectMeta = object.metadata();
        let namespace = namespace_for(info, &meta.namespace, &connection.namespace, explicit_namespace)?;
        let outcome = async {
            if mode == Mode::Apply && !meta.name.is_empty() {
                match client.get(info, &namespace, &meta.name).await {
                    Ok(live) => {
                        return update(connection, object, &namespace, &meta.name, live, dry_run).await;
                    }
                    Err(e) if e.is(Reason::NotFound) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            let created = client.create(info, &namespace, object.bytes.clone(), dry_run).await?;
            Ok::<_, anyhow::Error>((DynamicObject::new(info, created), "created"))
        }
        .await;
        match outcome {
            Ok((result, verb)) => {
                let name = result.metadata().name;
                match format {
                    Format::Table => {
                        let suffix = if dry_run { " (server dry run)" } else { "" };
                        println!("{} {verb}{suffix}", output::name_of(info, &name));
                    }
                    Format::Name => println!("{}", output::name_of(info, &name)),
                    _ => results.push(result),
                }
            }
            Err(e) => {
                failures += 1;
                eprintln!("error: {}: {} \"{}\": {e:#}", manifest.source, info.kind, meta.name);
            }
        }
    }
    if !results.is_empty() {
        print!("{}", output::document(&results, format, false));
    }
    if failures > 0 {
        anyhow::bail!("{failures} object(s) failed");
    }
    Ok(())
}

async fn update(
    connection: &Connection,
    object: &DynamicObject,
    namespace: &str,
    name: &str,
    live: bytes::Bytes,
    dry_run: bool,
) -> Result<(DynamicObject, &'static str)> {
    let info = object.info;
    let live = DynamicObject::new(info, live);
    let mut wanted = object.to_json();
    if let Json::Object(fields) = &mut wanted {
        fields.remove("apiVersion");
        fields.remove("kind");
        fields.remove("status");
    }
    if contains(&live.to_json(), &wanted) {
        return Ok((live, "unchanged"));
    }
    let patch = serde_json::to_vec(&wanted).context("encoding the patch")?;
    let patched =
        connection.client.patch(info, namespace, name, client::PatchType::Merge, &patch, dry_run, false).await?;
    Ok((DynamicObject::new(info, patched), "configured"))
}

/// Whether `live` holds every field of `wanted` with the same value.
fn contains(live: &Json, wanted: &Json) -> bool {
    match (live, wanted) {
        (Json::Object(live), Json::Object(wanted)) => {
            wanted.iter().all(|(key, value)| live.get(key).is_some_and(|l| contains(l, value)))
        }
        (Json::Array(live), Json::Array(wanted)) => {
            live.len() == wanted.len() && live.iter().zip(wanted).all(|(l, w)| contains(l, w))
        }
        (live, wanted) => live == wanted,
    }
}

#[cfg(test)]
mod tests {
    use super::contains;
    use serde_json::json;

    #[test]
    fn a_live_object_with_server_fields_still_contains_the_manifest() {
        let live = json!({"metadata": {"name": "a", "uid": "u"}, "spec": {"ports": [{"port": 80, "protocol": "TCP"}]}});
        assert!(contains(&live, &json!({"metadata": {"name": "a"}, "spec": {"ports": [{"port": 80}]}})));
        assert!(!contains(&live, &json!({"spec": {"ports": [{"port": 81}]}})));
        assert!(!contains(&live, &json!({"spec": {"ports": [{"port": 80}, {"port": 81}]}})));
        assert!(!contains(&live, &json!({"spec": {"selector": {"app": "x"}}})));
    }
}
