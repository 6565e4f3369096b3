//! `patch`, `scale` and `set image`.

use anyhow::{Context, Result};
use client::{ListParams, PatchType};
use proto::DynamicObject;
use serde_json::{Value as Json, json};

use super::{DryRun, modify, single_target, targets};
use crate::cli::{PatchArgs, ScaleArgs, SetCommand};
use crate::connection::Connection;
use crate::output::{self, Format};
use crate::three_way;

pub async fn patch(connection: &Connection, args: &PatchArgs) -> Result<()> {
    let (info, name) = single_target(&args.args)?;
    let dry_run = DryRun::parse(&args.dry_run)?;
    let format = Format::parse(args.output.as_deref())?;
    let kind = match args.patch_type.as_str() {
        "merge" => PatchType::Merge,
        "json" => PatchType::Json,
        "strategic" => {
            anyhow::bail!("strategic merge patches are not supported by this server: use --type merge or --type json")
        }
        other => anyhow::bail!("--type must be one of [json merge], not \"{other}\""),
    };
    let text = match (&args.patch, &args.patch_file) {
        (Some(text), None) => text.clone(),
        (None, Some(file)) => std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?,
        _ => anyhow::bail!("give the patch with exactly one of -p PATCH or --patch-file FILE"),
    };
    // kubectl takes the patch as JSON or YAML.
    let mut values =
        proto::codec::parse_documents(&text).map_err(|e| anyhow::anyhow!("unable to parse the patch: {e}"))?;
    let value = match values.len() {
        1 => values.remove(0),
        _ => anyhow::bail!("the patch must be one JSON or YAML document"),
    };
    match (kind, &value) {
        (PatchType::Merge, Json::Object(_)) | (PatchType::Json, Json::Array(_)) => {}
        (PatchType::Merge, _) => {
            anyhow::bail!("a merge patch must be a JSON object, like '{{\"spec\":{{\"replicas\":2}}}}'")
        }
        (PatchType::Json, _) => anyhow::bail!(
            "a JSON patch must be a list of operations, like '[{{\"op\":\"replace\",\"path\":\"/spec/replicas\",\"value\":2}}]'"
        ),
    }
    let status = match args.subresource.as_deref() {
        None | Some("") => false,
        Some("status") => true,
        Some(other) => anyhow::bail!("unsupported --subresource \"{other}\": only status"),
    };
    let namespace = connection.scoped(info);
    let live = connection.client.get(info, &namespace, &name).await?;
    let before = DynamicObject::new(info, live).metadata().resource_version;
    let result = if dry_run == DryRun::Client {
        if kind != PatchType::Merge {
            anyhow::bail!("--dry-run=client works with merge patches only; use --dry-run=server");
        }
        let live = connection.client.get(info, &namespace, &name).await?;
        let merged = three_way::merge(&DynamicObject::new(info, live).to_json(), &value);
        proto::codec::decode_object(&merged).map_err(|e| anyhow::anyhow!("{e}"))?
    } else {
        let body = serde_json::to_vec(&value).context("encoding the patch")?;
        let bytes =
            connection.client.patch(info, &namespace, &name, kind, &body, dry_run == DryRun::Server, status).await?;
        DynamicObject::new(info, bytes)
    };
    let shown = output::name_of(info, &name);
    match format {
        Format::Table | Format::Wide => {
            if result.metadata().resource_version == before && dry_run == DryRun::None {
                println!("{shown} patched (no change)");
            } else {
                println!("{shown} patched{}", dry_run.suffix());
            }
        }
        Format::Name => println!("{shown}"),
        other => print!("{}", output::document(&[result], &other, false)),
    }
    Ok(())
}

pub async fn scale(connection: &Connection, args: &ScaleArgs) -> Result<()> {
    if args.replicas < 0 {
        anyhow::bail!("the --replicas=COUNT flag is required, and COUNT must be greater than or equal to 0");
    }
    let parsed = targets(&args.args, |_| false)?;
    let mut objects: Vec<(&'static proto::KindInfo, String)> = parsed.objects.clone();
    if objects.is_empty() {
        let Some(info) = parsed.kind else { anyhow::bail!("give objects to scale") };
        if args.selector.is_empty() {
            anyhow::bail!("resource(s) were provided, but no name was specified: give names or -l SELECTOR");
        }
        let list = connection.client.list(info, &connection.scoped(info), &ListParams::labels(&args.selector)).await?;
        objects.extend(list.items.into_iter().map(|b| (info, DynamicObject::new(info, b).metadata().name)));
    }
    for (info, name) in objects {
        if !matches!(info.kind, "Deployment" | "ReplicaSet" | "ReplicationController" | "StatefulSet") {
            anyhow::bail!(
                "cannot scale a {}: scale deployments, replica sets, replication controllers or stateful sets",
                info.kind
            );
        }
        let replicas = args.replicas;
        modify(connection, info, &connection.scoped(info), &name, DryRun::None, |object| {
            let current = object.pointer("/spec/replicas").and_then(Json::as_i64).unwrap_or(1);
            if let Some(expected) = args.current_replicas
                && current != i64::from(expected)
            {
                anyhow::bail!("Expected replicas to be {expected}, was {current}");
            }
            object["spec"]["replicas"] = json!(replicas);
            Ok(current != i64::from(replicas) || object.pointer("/spec/replicas").is_none())
        })
        .await?;
        println!("{} scaled", output::name_of(info, &name));
    }
    Ok(())
}

/// The pointer to the pod spec of an object that has one.
fn pod_spec_pointer(kind: &str) -> Option<&'static str> {
    match kind {
        "Pod" => Some("/spec"),
        "Deployment" | "ReplicaSet" | "ReplicationController" | "StatefulSet" | "DaemonSet" | "Job" => {
            Some("/spec/template/spec")
        }
        "CronJob" => Some("/spec/jobTemplate/spec/template/spec"),
        _ => None,
    }
}

pub async fn set(connection: &Connection, command: SetCommand) -> Result<()> {
    let SetCommand::Image { args } = command;
    let parsed = targets(&args, |w| w.contains('='))?;
    if parsed.objects.is_empty() {
        anyhow::bail!("give the object: ctl set image KIND/NAME CONTAINER=IMAGE");
    }
    let mut images = Vec::new();
    for word in &parsed.rest {
        let Some((container, image)) = word.split_once('=') else {
            anyhow::bail!("\"{word}\": give images as CONTAINER=IMAGE");
        };
        if image.is_empty() {
            anyhow::bail!("\"{word}\": the image is empty");
        }
        images.push((container.to_string(), image.to_string()));
    }
    if images.is_empty() {
        anyhow::bail!("at least one image update is required: CONTAINER=IMAGE");
    }
    for (info, name) in &parsed.objects {
        let Some(pointer) = pod_spec_pointer(info.kind) else {
            anyhow::bail!("a {} has no containers whose image could be set", info.kind);
        };
        let result = modify(connection, info, &connection.scoped(info), name, DryRun::None, |object| {
            let spec = object.pointer_mut(pointer).ok_or_else(|| anyhow::anyhow!("the object has no pod template"))?;
            let mut changed = false;
            for (container, image) in &images {
                let mut found = false;
                for list in ["initContainers", "containers"] {
                    for c in spec.get_mut(list).and_then(Json::as_array_mut).into_iter().flatten() {
                        if container == "*" || c["name"].as_str() == Some(container) {
                            found = true;
                            if c["image"].as_str() != Some(image) {
                                c["image"] = json!(image);
                                changed = true;
                            }
                        }
                    }
                }
                if !found {
                    anyhow::bail!("unable to find container named \"{container}\"");
                }
            }
            Ok(changed)
        })
        .await?;
        if result.is_some() {
            println!("{} image updated", output::name_of(info, name));
        }
    }
    Ok(())
}
