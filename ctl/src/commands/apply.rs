//! `apply -f` and `create -f`.
//!
//! apply creates what is missing and updates what exists with kubectl's three-way
//! merge (see `three_way`): the manifest is saved in the last-applied annotation, and
//! a field dropped from the manifest since the last apply is removed from the object.
//! An object that already matches is not written at all (`unchanged`). Every
//! document is reported on its own; one failing does not stop the rest.

use anyhow::{Context, Result};
use client::PatchType;
use proto::codec::decode_object;
use proto::{DynamicObject, Reason};
use serde_json::{Value as Json, json};

use super::{DryRun, namespace_for, server_error};
use crate::cli::FileArgs;
use crate::connection::Connection;
use crate::manifest::read_documents;
use crate::output::{self, Format};
use crate::three_way::{self, LAST_APPLIED};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    Apply,
    Create,
}

pub async fn apply(connection: &Connection, args: &FileArgs, mode: Mode) -> Result<()> {
    let dry_run = DryRun::parse(&args.dry_run)?;
    let format = Format::parse(args.output.as_deref())?;
    let mut documents = read_documents(&args.filename, args.recursive)?;
    // Namespaces first, so a directory holding a namespace and its objects applies in
    // one pass whatever the file names; otherwise the order of the files is kept.
    documents.sort_by_key(|d| !d.as_ref().is_ok_and(|m| m.object.info.kind == "Namespace"));
    let mut failures = 0;
    let mut results = Vec::new();
    for document in documents {
        let manifest = match document {
            Ok(manifest) => manifest,
            Err(e) => {
                failures += 1;
                eprintln!("error: {e}");
                continue;
            }
        };
        let object = &manifest.object;
        let info = object.info;
        let meta = object.metadata();
        let outcome = async {
            let namespace = namespace_for(info, &meta.namespace, &connection.namespace, connection.explicit_namespace)?;
            match mode {
                Mode::Apply => apply_one(connection, object, &namespace, dry_run).await,
                Mode::Create => create(connection, object, &namespace, dry_run).await,
            }
        }
        .await;
        match outcome {
            Ok((result, verb)) => {
                let name = result.metadata().name;
                match format {
                    Format::Table | Format::Wide => {
                        println!("{} {verb}{}", output::name_of(info, &name), dry_run.suffix())
                    }
                    Format::Name => println!("{}", output::name_of(info, &name)),
                    _ => results.push(result),
                }
            }
            Err(e) => {
                failures += 1;
                let what = format!("{} \"{}\"", info.kind, meta.name);
                match e.downcast_ref::<proto::ApiError>() {
                    Some(api) => eprintln!("{}\n  (applying {what} from {})", server_error(api), manifest.source),
                    None => eprintln!("error: {}: {what}: {e:#}", manifest.source),
                }
            }
        }
    }
    if !results.is_empty() {
        print!("{}", output::document(&results, &format, results.len() > 1));
    }
    if failures > 0 {
        anyhow::bail!("{failures} object(s) failed; the others were applied");
    }
    Ok(())
}

async fn create(
    connection: &Connection,
    object: &DynamicObject,
    namespace: &str,
    dry_run: DryRun,
) -> Result<(DynamicObject, &'static str)> {
    if dry_run == DryRun::Client {
        return Ok((object.clone(), "created"));
    }
    let created =
        connection.client.create(object.info, namespace, object.bytes.clone(), dry_run == DryRun::Server).await?;
    Ok((DynamicObject::new(object.info, created), "created"))
}

/// The manifest as JSON, without what apply never sends (status) and without the
/// last-applied annotation itself.
fn manifest_json(object: &DynamicObject) -> Json {
    let mut value = object.to_json();
    if let Json::Object(fields) = &mut value {
        fields.remove("status");
    }
    if let Some(annotations) = value.pointer_mut("/metadata/annotations").and_then(Json::as_object_mut) {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty()
            && let Some(meta) = value.pointer_mut("/metadata").and_then(Json::as_object_mut)
        {
            meta.remove("annotations");
        }
    }
    value
}

/// The manifest with its own JSON in the last-applied annotation, as kubectl saves it.
fn with_last_applied(manifest: &Json) -> Json {
    let mut modified = manifest.clone();
    let saved = format!("{manifest}\n");
    if !modified.get("metadata").is_some_and(Json::is_object) {
        modified["metadata"] = json!({});
    }
    let meta = &mut modified["metadata"];
    if !meta.get("annotations").is_some_and(Json::is_object) {
        meta["annotations"] = json!({});
    }
    meta["annotations"][LAST_APPLIED] = Json::String(saved);
    modified
}

async fn apply_one(
    connection: &Connection,
    object: &DynamicObject,
    namespace: &str,
    dry_run: DryRun,
) -> Result<(DynamicObject, &'static str)> {
    let info = object.info;
    let manifest = manifest_json(object);
    let modified = with_last_applied(&manifest);
    let name = object.metadata().name;
    if name.is_empty() {
        anyhow::bail!("apply needs metadata.name (generateName works only with create)");
    }
    let live = match connection.client.get(info, namespace, &name).await {
        Ok(live) => DynamicObject::new(info, live),
        Err(e) if e.is(Reason::NotFound) => {
            let with_annotation = decode_object(&modified).context("re-encoding the manifest")?;
            return create(connection, &with_annotation, namespace, dry_run).await;
        }
        Err(e) => return Err(e.into()),
    };
    let current = live.to_json();
    let original = live
        .metadata()
        .annotations
        .get(LAST_APPLIED)
        .and_then(|text| serde_json::from_str::<Json>(text).ok())
        .unwrap_or_else(|| json!({}));
    let mut patch = three_way::patch(&original, &modified, &current);
    if let Json::Object(fields) = &mut patch {
        // The type is fixed by the URL-equivalent resource; status is the controllers'.
        for key in ["apiVersion", "kind", "status"] {
            fields.remove(key);
        }
    }
    if patch.as_object().is_some_and(|p| p.is_empty()) {
        return Ok((live, "unchanged"));
    }
    if dry_run == DryRun::Client {
        let merged = three_way::merge(&current, &patch);
        return Ok((decode_object(&merged).context("merging the manifest")?, "configured"));
    }
    let body = serde_json::to_vec(&patch).context("encoding the patch")?;
    let patched = connection
        .client
        .patch(info, namespace, &name, PatchType::Merge, &body, dry_run == DryRun::Server, false)
        .await?;
    Ok((DynamicObject::new(info, patched), "configured"))
}
