//! `describe KIND NAME`: the object in kubectl's human layout (metadata, a summary
//! for common kinds, then spec and status as nested fields) with its Events.

use std::fmt::Write as _;

use anyhow::Result;
use chrono::{DateTime, Utc};
use client::ListParams;
use proto::resource::kinds;
use proto::{DynamicObject, KindInfo};
use serde_json::Value as Json;

use super::{server_error, targets};
use crate::cli::DescribeArgs;
use crate::connection::Connection;
use crate::output::human_duration;

pub async fn describe(connection: &Connection, args: &DescribeArgs) -> Result<()> {
    let parsed = targets(&args.args, |_| false)?;
    let mut objects: Vec<DynamicObject> = Vec::new();
    let mut failures = 0;
    if parsed.objects.is_empty() {
        let Some(info) = parsed.kind else { anyhow::bail!("give a kind to describe") };
        let list =
            connection.client.list(info, &connection.list_namespace(info), &ListParams::labels(&args.selector)).await?;
        objects.extend(list.items.into_iter().map(|b| DynamicObject::new(info, b)));
        if objects.is_empty() {
            eprintln!("No resources found in {} namespace.", connection.namespace);
        }
    }
    for (info, name) in &parsed.objects {
        match connection.client.get(info, &connection.scoped(info), name).await {
            Ok(bytes) => objects.push(DynamicObject::new(info, bytes)),
            Err(e) => {
                failures += 1;
                eprintln!("{}", server_error(&e));
            }
        }
    }
    let mut first = true;
    for object in objects {
        if !first {
            println!();
            println!();
        }
        first = false;
        let events = events_of(connection, object.info, &object.to_json()).await?;
        print!("{}", render(object.info, &object.to_json(), &events));
    }
    if failures > 0 {
        anyhow::bail!("{failures} object(s) could not be described");
    }
    Ok(())
}

/// The object's events, oldest first.
async fn events_of(connection: &Connection, info: &KindInfo, object: &Json) -> Result<Vec<Json>> {
    let text = |p: &str| object.pointer(p).and_then(Json::as_str).unwrap_or("").to_string();
    let mut selector = format!("involvedObject.kind={},involvedObject.name={}", info.kind, text("/metadata/name"));
    let uid = text("/metadata/uid");
    if !uid.is_empty() {
        selector.push_str(&format!(",involvedObject.uid={uid}"));
    }
    // Events of cluster-scoped objects live in "default", as Kubernetes records them.
    let namespace = if info.namespaced { text("/metadata/namespace") } else { String::new() };
    let list = connection.client.list(&kinds::EVENT, &namespace, &ListParams::fields(&selector)).await?;
    let mut events: Vec<Json> =
        list.items.into_iter().map(|b| DynamicObject::new(&kinds::EVENT, b).to_json()).collect();
    events.sort_by_key(|e| last_seen(e).map(|t| t.timestamp_millis()).unwrap_or(0));
    Ok(events)
}

fn last_seen(event: &Json) -> Option<DateTime<Utc>> {
    ["/lastTimestamp", "/eventTime", "/firstTimestamp", "/metadata/creationTimestamp"].iter().find_map(|p| {
        let text = event.pointer(p).and_then(Json::as_str)?;
        DateTime::parse_from_rfc3339(text).ok().map(|t| t.with_timezone(&Utc))
    })
}

/// The whole description, as text.
pub fn render(info: &KindInfo, object: &Json, events: &[Json]) -> String {
    let mut out = String::new();
    let text = |p: &str| object.pointer(p).and_then(Json::as_str).unwrap_or("").to_string();
    line(&mut out, 0, "Name", &text("/metadata/name"));
    if info.namespaced {
        line(&mut out, 0, "Namespace", &text("/metadata/namespace"));
    }
    map_lines(&mut out, "Labels", object.pointer("/metadata/labels"));
    map_lines(&mut out, "Annotations", object.pointer("/metadata/annotations"));
    let created = text("/metadata/creationTimestamp");
    if let Ok(t) = DateTime::parse_from_rfc3339(&created) {
        line(&mut out, 0, "CreationTimestamp", &t.format("%a, %d %b %Y %H:%M:%S %z").to_string());
    }
    summary(&mut out, info, object);
    for (title, key) in [("Spec", "spec"), ("Status", "status"), ("Data", "data")] {
        if let Some(value) = object.get(key).filter(|v| v.as_object().is_some_and(|m| !m.is_empty())) {
            if key == "data" && info.kind == "Secret" {
                out.push_str("Data\n====\n");
                for (k, v) in value.as_object().into_iter().flatten() {
                    let bytes = v.as_str().map_or(0, |s| s.len() * 3 / 4 - s.matches('=').count());
                    let _ = writeln!(out, "{k}:  {bytes} bytes");
                }
                continue;
            }
            if key == "data" {
                out.push_str("Data\n====\n");
                for (k, v) in value.as_object().into_iter().flatten() {
                    let _ = writeln!(out, "{k}:\n----\n{}\n", v.as_str().unwrap_or(""));
                }
                continue;
            }
            let _ = writeln!(out, "{title}:");
            nested(&mut out, 1, value);
        }
    }
    events_block(&mut out, events);
    out
}

fn line(out: &mut String, indent: usize, key: &str, value: &str) {
    let pad = "  ".repeat(indent);
    let label = format!("{key}:");
    let _ = writeln!(out, "{pad}{label:<19} {value}");
}

fn map_lines(out: &mut String, key: &str, map: Option<&Json>) {
    let entries: Vec<(String, String)> = map
        .and_then(Json::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string())).collect())
        .unwrap_or_default();
    if entries.is_empty() {
        line(out, 0, key, "<none>");
        return;
    }
    for (i, (k, v)) in entries.iter().enumerate() {
        // Long values (a last-applied manifest) would drown the description.
        let v = if v.len() > 200 {
            format!("{}...", &v[..v.char_indices().nth(200).map_or(v.len(), |(i, _)| i)])
        } else {
            v.clone()
        };
        let v = v.replace('\n', " ");
        if i == 0 {
            line(out, 0, key, &format!("{k}={v}"));
        } else {
            let _ = writeln!(out, "{:<20}{k}={v}", "");
        }
    }
}

/// What kubectl puts first for a few kinds.
fn summary(out: &mut String, info: &KindInfo, v: &Json) {
    let text = |p: &str| v.pointer(p).and_then(Json::as_str).unwrap_or("").to_string();
    let int = |p: &str| v.pointer(p).and_then(Json::as_i64).unwrap_or(0);
    match info.kind {
        "Pod" => {
            line(out, 0, "Node", &or_none(text("/spec/nodeName")));
            line(out, 0, "Status", &or_none(text("/status/phase")));
            line(out, 0, "IP", &text("/status/podIP"));
        }
        "Deployment" => {
            let replicas = v.pointer("/spec/replicas").and_then(Json::as_i64).unwrap_or(1);
            line(
                out,
                0,
                "Replicas",
                &format!(
                    "{replicas} desired | {} updated | {} total | {} available | {} unavailable",
                    int("/status/updatedReplicas"),
                    int("/status/replicas"),
                    int("/status/availableReplicas"),
                    int("/status/unavailableReplicas")
                ),
            );
            line(out, 0, "StrategyType", &or_none(text("/spec/strategy/type")));
        }
        "Node" => {
            let taints: Vec<String> = v
                .pointer("/spec/taints")
                .and_then(Json::as_array)
                .into_iter()
                .flatten()
                .map(|t| {
                    let value = t["value"].as_str().map(|v| format!("={v}")).unwrap_or_default();
                    format!("{}{value}:{}", t["key"].as_str().unwrap_or(""), t["effect"].as_str().unwrap_or(""))
                })
                .collect();
            line(out, 0, "Taints", &if taints.is_empty() { "<none>".to_string() } else { taints.join(", ") });
            let unschedulable = v.pointer("/spec/unschedulable").and_then(Json::as_bool).unwrap_or(false);
            line(out, 0, "Unschedulable", &unschedulable.to_string());
        }
        "Service" => {
            line(out, 0, "Type", &text("/spec/type"));
            line(out, 0, "IP", &or_none(text("/spec/clusterIP")));
        }
        _ => {}
    }
}

fn or_none(text: String) -> String {
    if text.is_empty() { "<none>".into() } else { text }
}

/// Maps whose keys are data (label keys, config keys), printed as they are.
const DATA_MAPS: &[&str] = &[
    "labels",
    "annotations",
    "selector",
    "matchLabels",
    "nodeSelector",
    "data",
    "capacity",
    "allocatable",
    "limits",
    "requests",
];

/// Nested fields as `Key:  value`, maps and lists indented below their key.
fn nested(out: &mut String, indent: usize, value: &Json) {
    nested_map(out, indent, value, false);
}

fn nested_map(out: &mut String, indent: usize, value: &Json, raw_keys: bool) {
    let pad = "  ".repeat(indent);
    match value {
        Json::Object(map) => {
            for (k, v) in map {
                let shown = if raw_keys { k.clone() } else { title(k) };
                let raw = DATA_MAPS.contains(&k.as_str());
                match v {
                    Json::Object(m) if !m.is_empty() => {
                        let _ = writeln!(out, "{pad}{shown}:");
                        nested_map(out, indent + 1, v, raw);
                    }
                    Json::Array(items) if items.iter().any(|i| i.is_object()) => {
                        let _ = writeln!(out, "{pad}{shown}:");
                        for item in items {
                            nested_map(out, indent + 1, item, false);
                            let _ = writeln!(out, "{pad}  ---");
                        }
                    }
                    _ => {
                        let _ = writeln!(out, "{pad}{shown}:  {}", scalar(v));
                    }
                }
            }
        }
        other => {
            let _ = writeln!(out, "{pad}{}", scalar(other));
        }
    }
}

fn scalar(value: &Json) -> String {
    match value {
        Json::String(s) => s.clone(),
        Json::Array(items) => items.iter().map(scalar).collect::<Vec<_>>().join(", "),
        Json::Object(m) if m.is_empty() => "<none>".to_string(),
        other => other.to_string(),
    }
}

/// `containerPort` → `Container Port`, as kubectl titles fields.
fn title(key: &str) -> String {
    let mut out = String::new();
    for (i, c) in key.chars().enumerate() {
        if i == 0 {
            out.extend(c.to_uppercase());
        } else if c.is_uppercase()
            && !key[..key.char_indices().nth(i).map_or(0, |(b, _)| b)].ends_with(|p: char| p.is_uppercase())
        {
            out.push(' ');
            out.push(c);
        } else {
            out.push(c);
        }
    }
    out
}

fn events_block(out: &mut String, events: &[Json]) {
    if events.is_empty() {
        out.push_str("Events:  <none>\n");
        return;
    }
    out.push_str("Events:\n");
    let mut rows = vec![
        ["Type", "Reason", "Age", "From", "Message"].map(String::from).to_vec(),
        ["----", "------", "----", "----", "-------"].map(String::from).to_vec(),
    ];
    for e in events {
        let text = |p: &str| e.pointer(p).and_then(Json::as_str).unwrap_or("").to_string();
        let age =
            last_seen(e).map_or("<unknown>".to_string(), |t| human_duration((Utc::now() - t).num_seconds().max(0)));
        let count = e.pointer("/count").and_then(Json::as_i64).unwrap_or(1);
        let age = if count > 1 { format!("{age} (x{count})") } else { age };
        let from =
            if text("/source/component").is_empty() { text("/reportingComponent") } else { text("/source/component") };
        rows.push(vec![text("/type"), text("/reason"), age, from, text("/message").trim().to_string()]);
    }
    for row in crate::output::align(&rows).lines() {
        let _ = writeln!(out, "  {row}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn titles_read_as_kubectl_writes_them() {
        assert_eq!(title("containerPort"), "Container Port");
        assert_eq!(title("clusterIP"), "Cluster IP");
        assert_eq!(title("replicas"), "Replicas");
    }

    #[test]
    fn descriptions_hold_metadata_fields_and_events() {
        let object = json!({
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}, "creationTimestamp": "2026-01-01T00:00:00Z"},
            "data": {"k": "v"},
        });
        let events =
            [json!({"type": "Normal", "reason": "Created", "message": "made it", "source": {"component": "test"},
            "lastTimestamp": "2026-01-01T00:00:00Z"})];
        let text = render(&kinds::CONFIG_MAP, &object, &events);
        assert!(
            text.starts_with("Name:               web\nNamespace:          default\nLabels:             app=web\n"),
            "{text}"
        );
        assert!(text.contains("Data\n====\nk:\n----\nv\n"), "{text}");
        assert!(text.contains("Events:\n  Type     Reason    Age"), "{text}");
        assert!(text.contains("Normal   Created"), "{text}");
        assert!(render(&kinds::CONFIG_MAP, &object, &[]).ends_with("Events:  <none>\n"));
    }
}
