//! Node verbs: `cordon`, `uncordon`, `drain` (cordon, then evict each pod by a
//! graceful delete and wait for it to go) and `taint`.

use anyhow::Result;
use client::ListParams;
use proto::DynamicObject;
use proto::resource::kinds;
use serde_json::{Value as Json, json};
use tokio::time::Instant;

use super::wait::wait_deleted;
use super::{DryRun, modify, parse_duration, server_error};
use crate::cli::{DrainArgs, NodeArgs, TaintArgs};
use crate::connection::Connection;

const NODE: &proto::KindInfo = &kinds::NODE;
const POD: &proto::KindInfo = &kinds::POD;

async fn node_names(connection: &Connection, names: &[String], selector: &str) -> Result<Vec<String>> {
    if !names.is_empty() {
        return Ok(names.to_vec());
    }
    if selector.is_empty() {
        anyhow::bail!("give node names or -l SELECTOR");
    }
    let list = connection.client.list(NODE, "", &ListParams::labels(selector)).await?;
    Ok(list.items.into_iter().map(|b| DynamicObject::new(NODE, b).metadata().name).collect())
}

/// Sets spec.unschedulable; says `already cordoned` when there was nothing to do.
async fn set_unschedulable(connection: &Connection, node: &str, unschedulable: bool, dry_run: DryRun) -> Result<bool> {
    let changed = modify(connection, NODE, "", node, dry_run, |object| {
        let current = object.pointer("/spec/unschedulable").and_then(Json::as_bool).unwrap_or(false);
        if current == unschedulable {
            return Ok(false);
        }
        if !object.get("spec").is_some_and(Json::is_object) {
            object["spec"] = json!({});
        }
        if unschedulable {
            object["spec"]["unschedulable"] = json!(true);
        } else if let Some(spec) = object["spec"].as_object_mut() {
            spec.remove("unschedulable");
        }
        Ok(true)
    })
    .await?;
    Ok(changed.is_some())
}

pub async fn cordon(connection: &Connection, args: &NodeArgs, unschedulable: bool) -> Result<()> {
    let dry_run = DryRun::parse(&args.dry_run)?;
    let verb = if unschedulable { "cordoned" } else { "uncordoned" };
    for node in node_names(connection, &args.nodes, &args.selector).await? {
        if set_unschedulable(connection, &node, unschedulable, dry_run).await? {
            println!("node/{node} {verb}{}", dry_run.suffix());
        } else {
            println!("node/{node} already {verb}");
        }
    }
    Ok(())
}

/// Why a pod may not be evicted, or a warning about it, by kubectl's rules.
enum Verdict {
    Evict,
    Skip(String),
    Refuse(String),
}

fn verdict(pod: &Json, args: &DrainArgs) -> Verdict {
    let name = format!(
        "{}/{}",
        pod.pointer("/metadata/namespace").and_then(Json::as_str).unwrap_or(""),
        pod.pointer("/metadata/name").and_then(Json::as_str).unwrap_or("")
    );
    if pod.pointer("/metadata/annotations/kubernetes.io~1config.mirror").is_some() {
        return Verdict::Skip(format!("ignoring mirror pod {name}"));
    }
    let phase = pod.pointer("/status/phase").and_then(Json::as_str).unwrap_or("");
    let finished = matches!(phase, "Succeeded" | "Failed");
    let owners = pod.pointer("/metadata/ownerReferences").and_then(Json::as_array);
    let controller = owners.and_then(|o| o.iter().find(|o| o["controller"] == true));
    if controller.is_some_and(|c| c["kind"] == "DaemonSet") {
        return if args.ignore_daemonsets {
            Verdict::Skip(format!("ignoring DaemonSet-managed Pods: {name}"))
        } else {
            Verdict::Refuse(format!("cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): {name}"))
        };
    }
    if controller.is_none() && !finished && !args.force {
        return Verdict::Refuse(format!(
            "cannot delete Pods that declare no controller (use --force to override): {name}"
        ));
    }
    let volumes = pod.pointer("/spec/volumes").and_then(Json::as_array);
    let empty_dir = volumes.is_some_and(|v| v.iter().any(|v| v.get("emptyDir").is_some()));
    if empty_dir && !finished && !args.delete_emptydir_data {
        return Verdict::Refuse(format!(
            "cannot delete Pods with local storage (use --delete-emptydir-data to override): {name}"
        ));
    }
    if controller.is_none() && !finished {
        eprintln!("Warning: deleting Pods that declare no controller: {name}");
    }
    Verdict::Evict
}

pub async fn drain(connection: &Connection, args: &DrainArgs) -> Result<()> {
    let node = &args.node;
    let deadline = match &args.timeout {
        Some(t) => Some(Instant::now() + parse_duration(t)?),
        None => None,
    };
    // Fails early and clearly when the node does not exist.
    connection.client.get(NODE, "", node).await?;
    if set_unschedulable(connection, node, true, DryRun::None).await? {
        println!("node/{node} cordoned");
    } else {
        println!("node/{node} already cordoned");
    }
    let params = ListParams {
        field_selector: format!("spec.nodeName={node}"),
        label_selector: args.pod_selector.clone(),
        ..Default::default()
    };
    let pods: Vec<Json> = connection
        .client
        .list(POD, "", &params)
        .await?
        .items
        .into_iter()
        .map(|b| DynamicObject::new(POD, b).to_json())
        .collect();
    let mut evict = Vec::new();
    let mut refusals = Vec::new();
    for pod in &pods {
        match verdict(pod, args) {
            Verdict::Evict => evict.push(pod),
            Verdict::Skip(warning) => eprintln!("Warning: {warning}"),
            Verdict::Refuse(reason) => refusals.push(reason),
        }
    }
    if !refusals.is_empty() {
        anyhow::bail!(
            "unable to drain node \"{node}\" due to error:\n{}\nThere are pending nodes to be drained:\n {node}",
            refusals.join("\n")
        );
    }
    let options = proto::meta::v1::DeleteOptions {
        grace_period_seconds: args.grace_period.filter(|g| *g >= 0),
        ..Default::default()
    };
    let mut waiting = Vec::new();
    for pod in evict {
        let namespace = pod.pointer("/metadata/namespace").and_then(Json::as_str).unwrap_or("").to_string();
        let name = pod.pointer("/metadata/name").and_then(Json::as_str).unwrap_or("").to_string();
        let uid = pod.pointer("/metadata/uid").and_then(Json::as_str).unwrap_or("").to_string();
        println!("evicting pod {namespace}/{name}");
        match connection.client.delete(POD, &namespace, &name, options.clone()).await {
            Ok(_) => waiting.push((namespace, name, uid)),
            Err(e) if e.is(proto::Reason::NotFound) => println!("pod/{name} evicted"),
            Err(e) => anyhow::bail!("error when evicting pods/\"{name}\" -n \"{namespace}\": {}", server_error(&e)),
        }
    }
    for (namespace, name, uid) in waiting {
        if wait_deleted(connection, POD, &namespace, &name, &uid, deadline).await? {
            println!("pod/{name} evicted");
        } else {
            anyhow::bail!(
                "drain did not complete within {}: pod {namespace}/{name} is still there",
                args.timeout.as_deref().unwrap_or("")
            );
        }
    }
    println!("node/{node} drained");
    Ok(())
}

/// One taint change from the command line.
#[derive(Debug, Clone, PartialEq)]
enum TaintChange {
    Add {
        key: String,
        value: String,
        effect: String,
    },
    /// Removes taints with this key (and effect, when given).
    Remove {
        key: String,
        effect: Option<String>,
    },
}

fn parse_effect(effect: &str) -> Result<String> {
    match effect {
        "NoSchedule" | "PreferNoSchedule" | "NoExecute" => Ok(effect.to_string()),
        other => anyhow::bail!(
            "invalid taint effect: {other}, unsupported taint effect: use NoSchedule, PreferNoSchedule or NoExecute"
        ),
    }
}

fn parse_taint(word: &str) -> Result<TaintChange> {
    if let Some(spec) = word.strip_suffix('-') {
        let (key, effect) = match spec.split_once(':') {
            Some((key, effect)) => (key, Some(parse_effect(effect)?)),
            None => (spec, None),
        };
        let key = key.split_once('=').map_or(key, |(k, _)| k);
        return Ok(TaintChange::Remove { key: key.to_string(), effect });
    }
    let Some((key_value, effect)) = word.split_once(':') else {
        anyhow::bail!("invalid taint spec: {word}: use key=value:Effect, key:Effect-, or key-");
    };
    let (key, value) = key_value.split_once('=').unwrap_or((key_value, ""));
    let errors = proto::validation::is_qualified_name(key);
    if !errors.is_empty() {
        anyhow::bail!("invalid taint spec: {word}: {}", errors.join("; "));
    }
    Ok(TaintChange::Add { key: key.to_string(), value: value.to_string(), effect: parse_effect(effect)? })
}

/// Applies taint changes to a node's spec.taints; returns whether any taint was
/// removed and whether any was added.
fn apply_taints(taints: &mut Vec<Json>, changes: &[TaintChange], overwrite: bool, node: &str) -> Result<(bool, bool)> {
    let (mut removed, mut added) = (false, false);
    for change in changes {
        match change {
            TaintChange::Remove { key, effect } => {
                let before = taints.len();
                taints.retain(|t| {
                    !(t["key"].as_str() == Some(key) && effect.as_ref().is_none_or(|e| t["effect"].as_str() == Some(e)))
                });
                if taints.len() == before {
                    let shown = effect.as_ref().map_or(key.clone(), |e| format!("{key}:{e}"));
                    anyhow::bail!("taint \"{shown}\" not found");
                }
                removed = true;
            }
            TaintChange::Add { key, value, effect } => {
                let existing =
                    taints.iter_mut().find(|t| t["key"].as_str() == Some(key) && t["effect"].as_str() == Some(effect));
                match existing {
                    Some(_) if !overwrite => anyhow::bail!(
                        "node {node} already has {key} taint(s) with same effect(s) and --overwrite is false"
                    ),
                    Some(t) => {
                        *t = taint_json(key, value, effect);
                    }
                    None => taints.push(taint_json(key, value, effect)),
                }
                added = true;
            }
        }
    }
    Ok((removed, added))
}

fn taint_json(key: &str, value: &str, effect: &str) -> Json {
    let mut taint = json!({"key": key, "effect": effect});
    if !value.is_empty() {
        taint["value"] = json!(value);
    }
    if effect == "NoExecute" {
        taint["timeAdded"] = json!(chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string());
    }
    taint
}

pub async fn taint(connection: &Connection, args: &TaintArgs) -> Result<()> {
    let Some((kind_word, rest)) = args.args.split_first() else {
        anyhow::bail!("give: ctl taint nodes NODE key=value:Effect");
    };
    let (names, specs): (Vec<String>, Vec<String>) = match kind_word.split_once('/') {
        Some((kind, name)) => {
            check_node_kind(kind)?;
            (vec![name.to_string()], rest.to_vec())
        }
        None => {
            check_node_kind(kind_word)?;
            let split =
                rest.iter().position(|w| w.contains(':') || w.contains('=') || w.ends_with('-')).unwrap_or(rest.len());
            (rest[..split].to_vec(), rest[split..].to_vec())
        }
    };
    if specs.is_empty() {
        anyhow::bail!("at least one taint update is required: key=value:Effect, key:Effect- or key-");
    }
    let changes = specs.iter().map(|s| parse_taint(s)).collect::<Result<Vec<_>>>()?;
    let names = if args.all {
        let list = connection.client.list(NODE, "", &ListParams::default()).await?;
        list.items.into_iter().map(|b| DynamicObject::new(NODE, b).metadata().name).collect()
    } else {
        node_names(connection, &names, &args.selector).await?
    };
    for node in names {
        let mut outcome = (false, false);
        modify(connection, NODE, "", &node, DryRun::None, |object| {
            if !object.get("spec").is_some_and(Json::is_object) {
                object["spec"] = json!({});
            }
            let mut taints = object["spec"]["taints"].as_array().cloned().unwrap_or_default();
            outcome = apply_taints(&mut taints, &changes, args.overwrite, &node)?;
            if taints.is_empty() {
                if let Some(spec) = object["spec"].as_object_mut() {
                    spec.remove("taints");
                }
            } else {
                object["spec"]["taints"] = Json::Array(taints);
            }
            Ok(true)
        })
        .await?;
        let verb = match outcome {
            (true, false) => "untainted",
            _ => "tainted",
        };
        println!("node/{node} {verb}");
    }
    Ok(())
}

fn check_node_kind(kind: &str) -> Result<()> {
    match proto::resource::by_name(kind) {
        Some(info) if info.kind == "Node" => Ok(()),
        _ => anyhow::bail!("taint applies to nodes only: ctl taint nodes NODE key=value:Effect (got \"{kind}\")"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taints_add_overwrite_and_remove() {
        let mut taints = Vec::new();
        let add = [parse_taint("dedicated=gpu:NoSchedule").unwrap()];
        assert_eq!(apply_taints(&mut taints, &add, false, "n").unwrap(), (false, true));
        assert!(apply_taints(&mut taints, &add, false, "n").is_err());
        assert_eq!(taints, vec![json!({"key": "dedicated", "effect": "NoSchedule", "value": "gpu"})]);
        let remove = [parse_taint("dedicated:NoSchedule-").unwrap()];
        assert_eq!(apply_taints(&mut taints, &remove, false, "n").unwrap(), (true, false));
        assert!(taints.is_empty());
        assert!(apply_taints(&mut taints, &[parse_taint("dedicated-").unwrap()], false, "n").is_err());
        assert!(parse_taint("a=b:Sometimes").is_err());
        assert!(parse_taint("nocolon").is_err());
    }
}
