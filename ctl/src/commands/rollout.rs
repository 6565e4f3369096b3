//! `rollout status|history|undo|restart|pause|resume`. The status messages and the
//! "done" tests are kubectl's, per kind (deployments, stateful sets, daemon sets).

use std::time::Duration;

use anyhow::Result;
use client::ListParams;
use proto::resource::kinds;
use proto::{DynamicObject, KindInfo};
use serde_json::{Value as Json, json};
use tokio::time::Instant;

use super::{DryRun, modify, parse_duration, single_target};
use crate::cli::{RolloutCommand, RolloutHistoryArgs, RolloutStatusArgs, RolloutTarget, RolloutUndoArgs};
use crate::connection::Connection;
use crate::output::name_of;

const REVISION: &str = "deployment.kubernetes.io/revision";
const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";
const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";
const POLL: Duration = Duration::from_millis(250);

pub async fn run(connection: &Connection, command: RolloutCommand) -> Result<()> {
    match command {
        RolloutCommand::Status(args) => status(connection, &args).await,
        RolloutCommand::History(args) => history(connection, &args).await,
        RolloutCommand::Undo(args) => undo(connection, &args).await,
        RolloutCommand::Restart(args) => restart(connection, &args).await,
        RolloutCommand::Pause(args) => pause(connection, &args, true).await,
        RolloutCommand::Resume(args) => pause(connection, &args, false).await,
    }
}

fn rollout_kind(info: &'static KindInfo) -> Result<&'static KindInfo> {
    match info.kind {
        "Deployment" | "StatefulSet" | "DaemonSet" => Ok(info),
        other => anyhow::bail!("no rollout for a {other}: use a deployment, stateful set or daemon set"),
    }
}

/// A rollout's state: the message to show and whether it is finished.
#[derive(Debug, PartialEq)]
pub struct Progress {
    pub message: String,
    pub done: bool,
}

fn progress(message: String, done: bool) -> Result<Progress> {
    Ok(Progress { message, done })
}

/// kubectl's status viewers, on the object's JSON.
pub fn rollout_progress(kind: &str, v: &Json) -> Result<Progress> {
    let int = |p: &str| v.pointer(p).and_then(Json::as_i64).unwrap_or(0);
    let name = v.pointer("/metadata/name").and_then(Json::as_str).unwrap_or("");
    let generation = int("/metadata/generation");
    let observed = int("/status/observedGeneration");
    match kind {
        "Deployment" => {
            if generation > observed {
                return progress("Waiting for deployment spec update to be observed...".into(), false);
            }
            let conditions = v.pointer("/status/conditions").and_then(Json::as_array);
            let deadline = conditions.is_some_and(|c| {
                c.iter().any(|c| c["type"] == "Progressing" && c["reason"] == "ProgressDeadlineExceeded")
            });
            if deadline {
                anyhow::bail!("deployment \"{name}\" exceeded its progress deadline");
            }
            let replicas = v.pointer("/spec/replicas").and_then(Json::as_i64).unwrap_or(1);
            let updated = int("/status/updatedReplicas");
            let total = int("/status/replicas");
            let available = int("/status/availableReplicas");
            if updated < replicas {
                return progress(
                    format!(
                        "Waiting for deployment \"{name}\" rollout to finish: {updated} out of {replicas} new replicas have been updated..."
                    ),
                    false,
                );
            }
            if total > updated {
                return progress(
                    format!(
                        "Waiting for deployment \"{name}\" rollout to finish: {} old replicas are pending termination...",
                        total - updated
                    ),
                    false,
                );
            }
            if available < updated {
                return progress(
                    format!(
                        "Waiting for deployment \"{name}\" rollout to finish: {available} of {updated} updated replicas are available..."
                    ),
                    false,
                );
            }
            progress(format!("deployment \"{name}\" successfully rolled out"), true)
        }
        "StatefulSet" => {
            let strategy = v.pointer("/spec/updateStrategy/type").and_then(Json::as_str).unwrap_or("RollingUpdate");
            if strategy != "RollingUpdate" {
                anyhow::bail!("rollout status is only available for RollingUpdate strategy type");
            }
            if observed == 0 || generation > observed {
                return progress("Waiting for statefulset spec update to be observed...".into(), false);
            }
            let replicas = v.pointer("/spec/replicas").and_then(Json::as_i64).unwrap_or(1);
            let ready = int("/status/readyReplicas");
            if ready < replicas {
                return progress(format!("Waiting for {} pods to be ready...", replicas - ready), false);
            }
            let updated = int("/status/updatedReplicas");
            if let Some(partition) = v.pointer("/spec/updateStrategy/rollingUpdate/partition").and_then(Json::as_i64) {
                if updated < replicas - partition {
                    return progress(
                        format!(
                            "Waiting for partitioned roll out to finish: {updated} out of {} new pods have been updated...",
                            replicas - partition
                        ),
                        false,
                    );
                }
                return progress(
                    format!("partitioned roll out complete: {updated} new pods have been updated..."),
                    true,
                );
            }
            let update_revision = v.pointer("/status/updateRevision").and_then(Json::as_str).unwrap_or("");
            let current_revision = v.pointer("/status/currentRevision").and_then(Json::as_str).unwrap_or("");
            if update_revision != current_revision {
                return progress(
                    format!(
                        "waiting for statefulset rolling update to complete {updated} pods at revision {update_revision}..."
                    ),
                    false,
                );
            }
            progress(
                format!(
                    "statefulset rolling update complete {} pods at revision {current_revision}...",
                    int("/status/currentReplicas")
                ),
                true,
            )
        }
        "DaemonSet" => {
            let strategy = v.pointer("/spec/updateStrategy/type").and_then(Json::as_str).unwrap_or("RollingUpdate");
            if strategy != "RollingUpdate" {
                anyhow::bail!("rollout status is only available for RollingUpdate strategy type");
            }
            if generation > observed {
                return progress("Waiting for daemon set spec update to be observed...".into(), false);
            }
            let desired = int("/status/desiredNumberScheduled");
            let updated = int("/status/updatedNumberScheduled");
            let available = int("/status/numberAvailable");
            if updated < desired {
                return progress(
                    format!(
                        "Waiting for daemon set \"{name}\" rollout to finish: {updated} out of {desired} new pods have been updated..."
                    ),
                    false,
                );
            }
            if available < desired {
                return progress(
                    format!(
                        "Waiting for daemon set \"{name}\" rollout to finish: {available} of {desired} updated pods are available..."
                    ),
                    false,
                );
            }
            progress(format!("daemon set \"{name}\" successfully rolled out"), true)
        }
        other => anyhow::bail!("no rollout status for a {other}"),
    }
}

async fn status(connection: &Connection, args: &RolloutStatusArgs) -> Result<()> {
    let (info, name) = single_target(&args.args)?;
    let info = rollout_kind(info)?;
    let watch = match args.watch.as_str() {
        "true" => true,
        "false" => false,
        other => anyhow::bail!("invalid --watch \"{other}\": use true or false"),
    };
    let deadline = match &args.timeout {
        Some(t) => Some(Instant::now() + parse_duration(t)?),
        None => None,
    };
    if args.revision.is_some() && info.kind != "Deployment" {
        anyhow::bail!("--revision is only supported for deployments; {} have no revision to wait for", info.plural);
    }
    let namespace = connection.scoped(info);
    let mut last = String::new();
    loop {
        let object = DynamicObject::new(info, connection.client.get(info, &namespace, &name).await?).to_json();
        if let Some(revision) = args.revision {
            let current = deployment_revision(connection, &object).await?;
            if current != revision {
                anyhow::bail!("desired revision ({revision}) is different from the running revision ({current})");
            }
        }
        let state = rollout_progress(info.kind, &object)?;
        if state.message != last {
            println!("{}", state.message);
            last = state.message.clone();
        }
        if state.done || !watch {
            return Ok(());
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            anyhow::bail!("timed out waiting for the condition");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The ReplicaSets a Deployment controls, with their revision numbers.
async fn replica_sets(connection: &Connection, deployment: &Json) -> Result<Vec<(i64, Json)>> {
    let uid = deployment.pointer("/metadata/uid").and_then(Json::as_str).unwrap_or("");
    let namespace = deployment.pointer("/metadata/namespace").and_then(Json::as_str).unwrap_or("");
    let list = connection.client.list(&kinds::REPLICA_SET, namespace, &ListParams::default()).await?;
    let mut sets: Vec<(i64, Json)> = list
        .items
        .into_iter()
        .map(|b| DynamicObject::new(&kinds::REPLICA_SET, b).to_json())
        .filter(|rs| {
            let owners = rs.pointer("/metadata/ownerReferences").and_then(Json::as_array);
            owners.is_some_and(|o| o.iter().any(|o| o["uid"] == uid && o["controller"] == true))
        })
        .map(|rs| {
            let revision = rs
                .pointer("/metadata/annotations")
                .and_then(|a| a.get(REVISION))
                .and_then(Json::as_str)
                .and_then(|r| r.parse().ok())
                .unwrap_or(0);
            (revision, rs)
        })
        .collect();
    sets.sort_by_key(|(revision, _)| *revision);
    Ok(sets)
}

async fn deployment_revision(connection: &Connection, deployment: &Json) -> Result<i64> {
    let annotated = deployment.pointer("/metadata/annotations").and_then(|a| a.get(REVISION)).and_then(Json::as_str);
    if let Some(revision) = annotated.and_then(|r| r.parse().ok()) {
        return Ok(revision);
    }
    Ok(replica_sets(connection, deployment).await?.last().map_or(0, |(r, _)| *r))
}

/// ControllerRevisions a StatefulSet or DaemonSet controls.
async fn controller_revisions(connection: &Connection, owner: &Json) -> Result<Vec<(i64, Json)>> {
    let uid = owner.pointer("/metadata/uid").and_then(Json::as_str).unwrap_or("");
    let namespace = owner.pointer("/metadata/namespace").and_then(Json::as_str).unwrap_or("");
    let list = connection.client.list(&kinds::CONTROLLER_REVISION, namespace, &ListParams::default()).await?;
    let mut revisions: Vec<(i64, Json)> = list
        .items
        .into_iter()
        .map(|b| DynamicObject::new(&kinds::CONTROLLER_REVISION, b).to_json())
        .filter(|cr| {
            let owners = cr.pointer("/metadata/ownerReferences").and_then(Json::as_array);
            owners.is_some_and(|o| o.iter().any(|o| o["uid"] == uid && o["controller"] == true))
        })
        .map(|cr| {
            // An int64: a number in Kubernetes' JSON, a string in proto3's mapping.
            let revision = match cr.get("revision") {
                Some(Json::String(text)) => text.parse().unwrap_or(0),
                Some(number) => number.as_i64().unwrap_or(0),
                None => 0,
            };
            (revision, cr)
        })
        .collect();
    revisions.sort_by_key(|(r, _)| *r);
    Ok(revisions)
}

async fn history(connection: &Connection, args: &RolloutHistoryArgs) -> Result<()> {
    let (info, name) = single_target(&args.args)?;
    let info = rollout_kind(info)?;
    let object =
        DynamicObject::new(info, connection.client.get(info, &connection.scoped(info), &name).await?).to_json();
    let revisions = if info.kind == "Deployment" {
        replica_sets(connection, &object).await?
    } else {
        controller_revisions(connection, &object).await?
    };
    let shown = name_of(info, &name);
    if let Some(wanted) = args.revision {
        let Some((_, found)) = revisions.iter().find(|(r, _)| *r == wanted) else {
            anyhow::bail!("unable to find the specified revision {wanted}");
        };
        println!("{shown} with revision #{wanted}");
        let template = if info.kind == "Deployment" {
            found.pointer("/spec/template")
        } else {
            found.pointer("/data/spec/template")
        };
        println!("Pod Template:");
        let text = template.map(proto::codec::to_yaml).unwrap_or_default();
        for line in text.lines() {
            println!("  {line}");
        }
        return Ok(());
    }
    if revisions.is_empty() {
        println!("No rollout history found in {shown}");
        return Ok(());
    }
    println!("{shown} ");
    let mut rows = vec![vec!["REVISION".to_string(), "CHANGE-CAUSE".to_string()]];
    for (revision, object) in &revisions {
        let cause = object.pointer("/metadata/annotations").and_then(|a| a.get(CHANGE_CAUSE)).and_then(Json::as_str);
        rows.push(vec![revision.to_string(), cause.unwrap_or("<none>").to_string()]);
    }
    print!("{}", crate::output::align(&rows));
    println!();
    Ok(())
}

/// A template without what the controller adds (the template hash label), for comparing.
fn bare_template(template: &Json) -> Json {
    let mut template = template.clone();
    if let Some(labels) = template.pointer_mut("/metadata/labels").and_then(Json::as_object_mut) {
        labels.remove("pod-template-hash");
    }
    template
}

async fn undo(connection: &Connection, args: &RolloutUndoArgs) -> Result<()> {
    let (info, name) = single_target(&args.args)?;
    let info = rollout_kind(info)?;
    if info.kind != "Deployment" {
        return undo_to_controller_revision(connection, info, &name, args.to_revision).await;
    }
    let namespace = connection.scoped(info);
    let object = DynamicObject::new(info, connection.client.get(info, &namespace, &name).await?).to_json();
    if object.pointer("/spec/paused").and_then(Json::as_bool) == Some(true) {
        anyhow::bail!(
            "you cannot rollback a paused deployment; resume it first with 'ctl rollout resume' and try again"
        );
    }
    let revisions = replica_sets(connection, &object).await?;
    let target = if args.to_revision == 0 {
        // The previous revision: the highest below the current one.
        let current = revisions.last().map_or(0, |(r, _)| *r);
        revisions.iter().rev().find(|(r, _)| *r < current)
    } else {
        revisions.iter().find(|(r, _)| *r == args.to_revision)
    };
    let Some((revision, rs)) = target else {
        if args.to_revision == 0 {
            anyhow::bail!("no rollout history found for deployment \"{name}\"");
        }
        anyhow::bail!("unable to find specified revision {} in history", args.to_revision);
    };
    let template = bare_template(rs.pointer("/spec/template").unwrap_or(&Json::Null));
    restore_template(connection, info, &namespace, &name, *revision, &template, |current| {
        bare_template(current) == template
    })
    .await
}

/// Makes `template` the object's pod template again unless `matches` says the
/// current one already is it, and says which happened as kubectl does.
async fn restore_template(
    connection: &Connection,
    info: &'static KindInfo,
    namespace: &str,
    name: &str,
    revision: i64,
    template: &Json,
    matches: impl Fn(&Json) -> bool,
) -> Result<()> {
    let changed = modify(connection, info, namespace, name, DryRun::None, |object| {
        if matches(object.pointer("/spec/template").unwrap_or(&Json::Null)) {
            return Ok(false);
        }
        object["spec"]["template"] = template.clone();
        Ok(true)
    })
    .await?;
    let shown = name_of(info, name);
    if changed.is_some() {
        println!("{shown} rolled back");
    } else {
        println!("{shown} skipped rollback (current template already matches revision {revision})");
    }
    Ok(())
}

/// The revision `to_revision` names (0: the one before the newest), as kubectl
/// picks it; the errors are kubectl's.
fn pick_revision(revisions: &[(i64, Json)], to_revision: i64) -> Result<&(i64, Json)> {
    if to_revision == 0 {
        return match revisions {
            [.., previous, _] => Ok(previous),
            _ => anyhow::bail!("no last revision to roll back to"),
        };
    }
    revisions
        .iter()
        .find(|(r, _)| *r == to_revision)
        .ok_or_else(|| anyhow::anyhow!("unable to find specified revision {to_revision} in history"))
}

/// StatefulSets and DaemonSets: the pod template of a ControllerRevision becomes
/// the set's template again (the controller then makes that revision the newest).
async fn undo_to_controller_revision(
    connection: &Connection,
    info: &'static KindInfo,
    name: &str,
    to_revision: i64,
) -> Result<()> {
    let namespace = connection.scoped(info);
    let object = DynamicObject::new(info, connection.client.get(info, &namespace, name).await?).to_json();
    let revisions = controller_revisions(connection, &object).await?;
    let (revision, found) = pick_revision(&revisions, to_revision)?;
    let revision_name = found.pointer("/metadata/name").and_then(Json::as_str).unwrap_or("");
    let Some(template) = found.pointer("/data/spec/template").filter(|t| t.is_object()) else {
        anyhow::bail!(
            "controllerrevision \"{revision_name}\" (revision {revision}) holds no pod template under data.spec.template"
        );
    };
    restore_template(connection, info, &namespace, name, *revision, template, |current| current == template).await
}

async fn restart(connection: &Connection, args: &RolloutTarget) -> Result<()> {
    let (info, name) = single_target(&args.args)?;
    let info = rollout_kind(info)?;
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    modify(connection, info, &connection.scoped(info), &name, DryRun::None, |object| {
        if object.pointer("/spec/paused").and_then(Json::as_bool) == Some(true) {
            anyhow::bail!("can't restart paused deployment (run rollout resume first)");
        }
        let template = object
            .pointer_mut("/spec/template")
            .and_then(Json::as_object_mut)
            .ok_or_else(|| anyhow::anyhow!("the object has no pod template"))?;
        let meta = template.entry("metadata").or_insert_with(|| json!({}));
        if !meta.get("annotations").is_some_and(Json::is_object) {
            meta["annotations"] = json!({});
        }
        meta["annotations"][RESTARTED_AT] = json!(now);
        Ok(true)
    })
    .await?;
    println!("{} restarted", name_of(info, &name));
    Ok(())
}

async fn pause(connection: &Connection, args: &RolloutTarget, paused: bool) -> Result<()> {
    let (info, name) = single_target(&args.args)?;
    if info.kind != "Deployment" {
        anyhow::bail!(
            "{} are not supported for {}: only deployments can be paused and resumed",
            info.plural,
            if paused { "pause" } else { "resume" }
        );
    }
    let shown = name_of(info, &name);
    let changed = modify(connection, info, &connection.scoped(info), &name, DryRun::None, |object| {
        let current = object.pointer("/spec/paused").and_then(Json::as_bool).unwrap_or(false);
        if current == paused {
            return Ok(false);
        }
        if paused {
            object["spec"]["paused"] = json!(true);
        } else if let Some(spec) = object["spec"].as_object_mut() {
            spec.remove("paused");
        }
        Ok(true)
    })
    .await?;
    match (changed.is_some(), paused) {
        (true, true) => println!("{shown} paused"),
        (true, false) => println!("{shown} resumed"),
        (false, true) => anyhow::bail!("{shown} is already paused"),
        (false, false) => anyhow::bail!("{shown} is not paused"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_progress_reads_as_kubectl_prints_it() {
        let mut d = json!({"metadata": {"name": "web", "generation": 2}, "spec": {"replicas": 3},
            "status": {"observedGeneration": 1}});
        assert_eq!(
            rollout_progress("Deployment", &d).unwrap().message,
            "Waiting for deployment spec update to be observed..."
        );
        d["status"] = json!({"observedGeneration": 2, "updatedReplicas": 1, "replicas": 3, "availableReplicas": 1});
        assert_eq!(
            rollout_progress("Deployment", &d).unwrap().message,
            "Waiting for deployment \"web\" rollout to finish: 1 out of 3 new replicas have been updated..."
        );
        d["status"] = json!({"observedGeneration": 2, "updatedReplicas": 3, "replicas": 4, "availableReplicas": 3});
        assert!(rollout_progress("Deployment", &d).unwrap().message.contains("1 old replicas are pending termination"));
        d["status"] = json!({"observedGeneration": 2, "updatedReplicas": 3, "replicas": 3, "availableReplicas": 3});
        assert_eq!(
            rollout_progress("Deployment", &d).unwrap(),
            Progress { message: "deployment \"web\" successfully rolled out".into(), done: true }
        );
    }

    #[test]
    fn stateful_and_daemon_sets() {
        let s = json!({"metadata": {"name": "db", "generation": 1}, "spec": {"replicas": 2},
            "status": {"observedGeneration": 1, "readyReplicas": 1}});
        assert_eq!(rollout_progress("StatefulSet", &s).unwrap().message, "Waiting for 1 pods to be ready...");
        let d = json!({"metadata": {"name": "agent", "generation": 1},
            "status": {"observedGeneration": 1, "desiredNumberScheduled": 2, "updatedNumberScheduled": 2, "numberAvailable": 2}});
        assert!(rollout_progress("DaemonSet", &d).unwrap().done);
        let ondelete = json!({"spec": {"updateStrategy": {"type": "OnDelete"}}});
        assert!(rollout_progress("DaemonSet", &ondelete).is_err());
    }

    #[test]
    fn undo_picks_the_previous_or_the_named_revision_as_kubectl_does() {
        let revisions: Vec<(i64, Json)> = [1, 3, 4].iter().map(|r| (*r, json!({"revision": r}))).collect();
        assert_eq!(pick_revision(&revisions, 0).unwrap().0, 3);
        assert_eq!(pick_revision(&revisions, 1).unwrap().0, 1);
        let missing = pick_revision(&revisions, 2).unwrap_err().to_string();
        assert_eq!(missing, "unable to find specified revision 2 in history");
        let alone = pick_revision(&revisions[..1], 0).unwrap_err().to_string();
        assert_eq!(alone, "no last revision to roll back to");
        assert!(pick_revision(&[], 0).is_err());
    }
}
