//! Printing objects: kubectl's tables (the first columns of its per-kind tables), YAML,
//! JSON and `kind/name`.

use chrono::{DateTime, Utc};
use proto::codec::{to_json_pretty, to_yaml};
use proto::{DynamicObject, KindInfo};
use serde_json::{Value as Json, json};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Format {
    Table,
    Wide,
    Yaml,
    Json,
    Name,
}

impl Format {
    pub fn parse(output: Option<&str>) -> anyhow::Result<Format> {
        Ok(match output {
            None | Some("") => Format::Table,
            Some("wide") => Format::Wide,
            Some("yaml") => Format::Yaml,
            Some("json") => Format::Json,
            Some("name") => Format::Name,
            Some(other) => anyhow::bail!(
                "unable to match a printer suitable for the output format \"{other}\", allowed formats are: json, name, wide, yaml"
            ),
        })
    }
}

/// `deployment.apps/web`
pub fn name_of(info: &KindInfo, name: &str) -> String {
    format!("{}/{}", info.qualified_singular(), name)
}

/// Objects as one document (a List when more than one) in YAML or JSON.
pub fn document(objects: &[DynamicObject], format: Format, force_list: bool) -> String {
    let mut items: Vec<Json> = objects.iter().map(DynamicObject::to_json).collect();
    let value = if items.len() == 1 && !force_list {
        items.remove(0)
    } else {
        json!({"apiVersion": "v1", "kind": "List", "items": items, "metadata": {"resourceVersion": ""}})
    };
    match format {
        Format::Json => to_json_pretty(&value),
        _ => to_yaml(&value),
    }
}

/// How `table` lays a table out.
#[derive(Debug, Clone, Copy, Default)]
pub struct TableOptions {
    pub with_namespace: bool,
    pub wide: bool,
    pub show_labels: bool,
    /// Names as `kind/name`, as kubectl prints them when one listing mixes kinds.
    pub kind_prefix: bool,
}

/// A table of objects of one kind.
pub fn table(info: &KindInfo, objects: &[DynamicObject], options: TableOptions) -> String {
    let TableOptions { with_namespace, wide, show_labels, kind_prefix } = options;
    let columns = columns(info, wide);
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut header: Vec<String> = Vec::new();
    if with_namespace {
        header.push("NAMESPACE".into());
    }
    header.extend(columns.iter().map(|(title, _)| title.to_string()));
    if show_labels {
        header.push("LABELS".into());
    }
    rows.push(header);
    for object in objects {
        let value = object.to_json();
        let mut row = Vec::new();
        if with_namespace {
            row.push(text(&value, "/metadata/namespace"));
        }
        row.extend(columns.iter().map(|(_, cell)| cell(&value)));
        if kind_prefix {
            let name_column = usize::from(with_namespace);
            row[name_column] = name_of(info, &row[name_column]);
        }
        if show_labels {
            let labels = value.pointer("/metadata/labels").and_then(Json::as_object);
            let shown = labels
                .map(|l| {
                    l.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect::<Vec<_>>().join(",")
                })
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "<none>".into());
            row.push(shown);
        }
        rows.push(row);
    }
    align(&rows)
}

type Cell = fn(&Json) -> String;

fn columns(info: &KindInfo, wide: bool) -> Vec<(&'static str, Cell)> {
    let mut columns: Vec<(&'static str, Cell)> = vec![("NAME", |v| text(v, "/metadata/name"))];
    match info.kind {
        "Pod" => {
            columns.push(("READY", pod_ready));
            columns.push(("STATUS", pod_status));
            columns.push(("RESTARTS", |v| {
                let statuses = v.pointer("/status/containerStatuses").and_then(Json::as_array);
                statuses
                    .map(|s| s.iter().filter_map(|c| c["restartCount"].as_i64()).sum::<i64>())
                    .unwrap_or(0)
                    .to_string()
            }));
            columns.push(("AGE", age));
            if wide {
                columns.push(("IP", |v| or_none(text(v, "/status/podIP"))));
                columns.push(("NODE", |v| or_none(text(v, "/spec/nodeName"))));
            }
        }
        "Service" => {
            columns.push(("TYPE", |v| text(v, "/spec/type")));
            columns.push(("CLUSTER-IP", |v| text(v, "/spec/clusterIP")));
            columns.push(("EXTERNAL-IP", |v| {
                let ips = v.pointer("/spec/externalIPs").and_then(Json::as_array);
                ips.map(|ips| ips.iter().filter_map(Json::as_str).collect::<Vec<_>>().join(","))
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "<none>".into())
            }));
            columns.push(("PORT(S)", service_ports));
            columns.push(("AGE", age));
            if wide {
                columns.push(("SELECTOR", |v| {
                    let selector = v.pointer("/spec/selector").and_then(Json::as_object);
                    selector
                        .map(|s| {
                            s.iter()
                                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                                .collect::<Vec<_>>()
                                .join(",")
                        })
                        .filter(|s| !s.is_empty())
                        .unwrap_or_else(|| "<none>".into())
                }));
            }
        }
        "Deployment" => {
            columns.push(("READY", |v| format!("{}/{}", int(v, "/status/readyReplicas"), int(v, "/spec/replicas"))));
            columns.push(("UP-TO-DATE", |v| int(v, "/status/updatedReplicas").to_string()));
            columns.push(("AVAILABLE", |v| int(v, "/status/availableReplicas").to_string()));
            columns.push(("AGE", age));
        }
        "ReplicaSet" | "ReplicationController" => {
            columns.push(("DESIRED", |v| int(v, "/spec/replicas").to_string()));
            columns.push(("CURRENT", |v| int(v, "/status/replicas").to_string()));
            columns.push(("READY", |v| int(v, "/status/readyReplicas").to_string()));
            columns.push(("AGE", age));
        }
        "Namespace" => {
            columns.push(("STATUS", |v| text(v, "/status/phase")));
            columns.push(("AGE", age));
        }
        "Node" => {
            columns.push(("STATUS", |v| {
                let conditions = v.pointer("/status/conditions").and_then(Json::as_array);
                let ready = conditions
                    .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
                    .map(|c| if c["status"] == "True" { "Ready" } else { "NotReady" })
                    .unwrap_or("Unknown");
                if v.pointer("/spec/unschedulable").and_then(Json::as_bool) == Some(true) {
                    format!("{ready},SchedulingDisabled")
                } else {
                    ready.to_string()
                }
            }));
            columns.push(("ROLES", |_| "<none>".to_string()));
            columns.push(("AGE", age));
            columns.push(("VERSION", |v| text(v, "/status/nodeInfo/kubeletVersion")));
        }
        "ConfigMap" => {
            columns.push(("DATA", |v| {
                let count = |p: &str| v.pointer(p).and_then(Json::as_object).map_or(0, |m| m.len());
                (count("/data") + count("/binaryData")).to_string()
            }));
            columns.push(("AGE", age));
        }
        "Secret" => {
            columns.push(("TYPE", |v| text(v, "/type")));
            columns.push(("DATA", |v| v.pointer("/data").and_then(Json::as_object).map_or(0, |m| m.len()).to_string()));
            columns.push(("AGE", age));
        }
        "Endpoints" => {
            columns.push(("ENDPOINTS", |v| {
                let mut shown = Vec::new();
                for subset in v["subsets"].as_array().into_iter().flatten() {
                    for address in subset["addresses"].as_array().into_iter().flatten() {
                        for port in subset["ports"].as_array().into_iter().flatten() {
                            shown.push(format!("{}:{}", address["ip"].as_str().unwrap_or(""), port["port"]));
                        }
                    }
                }
                if shown.is_empty() { "<none>".to_string() } else { shown.join(",") }
            }));
            columns.push(("AGE", age));
        }
        _ => columns.push(("AGE", age)),
    }
    columns
}

fn text(value: &Json, pointer: &str) -> String {
    value.pointer(pointer).and_then(Json::as_str).unwrap_or("").to_string()
}

fn int(value: &Json, pointer: &str) -> i64 {
    value.pointer(pointer).and_then(Json::as_i64).unwrap_or(0)
}

fn or_none(text: String) -> String {
    if text.is_empty() { "<none>".into() } else { text }
}

fn pod_ready(value: &Json) -> String {
    let total = value.pointer("/spec/containers").and_then(Json::as_array).map_or(0, Vec::len);
    let statuses = value.pointer("/status/containerStatuses").and_then(Json::as_array);
    let ready = statuses.map_or(0, |s| s.iter().filter(|c| c["ready"] == true).count());
    format!("{ready}/{total}")
}

fn pod_status(value: &Json) -> String {
    if value.pointer("/metadata/deletionTimestamp").is_some() {
        return "Terminating".into();
    }
    let statuses = value.pointer("/status/containerStatuses").and_then(Json::as_array);
    for status in statuses.into_iter().flatten() {
        if let Some(reason) = status.pointer("/state/waiting/reason").and_then(Json::as_str) {
            return reason.to_string();
        }
        if let Some(reason) = status.pointer("/state/terminated/reason").and_then(Json::as_str) {
            return reason.to_string();
        }
    }
    let phase = text(value, "/status/phase");
    if phase.is_empty() { "Pending".into() } else { phase }
}

fn service_ports(value: &Json) -> String {
    let ports = value.pointer("/spec/ports").and_then(Json::as_array);
    let shown: Vec<String> = ports
        .into_iter()
        .flatten()
        .map(|p| {
            let protocol = p["protocol"].as_str().unwrap_or("TCP");
            match p["nodePort"].as_i64() {
                Some(node_port) if node_port != 0 => {
                    format!("{}:{}/{}", p["port"], node_port, protocol)
                }
                _ => format!("{}/{}", p["port"], protocol),
            }
        })
        .collect();
    if shown.is_empty() { "<none>".into() } else { shown.join(",") }
}

fn age(value: &Json) -> String {
    let created = value.pointer("/metadata/creationTimestamp").and_then(Json::as_str);
    let Some(created) = created.and_then(|t| DateTime::parse_from_rfc3339(t).ok()) else {
        return "<unknown>".into();
    };
    human_duration((Utc::now() - created.with_timezone(&Utc)).num_seconds().max(0))
}

/// kubectl's short ages: 45s, 3m20s, 5m, 2h10m, 3d4h, 12d, 2y.
pub fn human_duration(seconds: i64) -> String {
    let (m, h, d) = (seconds / 60, seconds / 3600, seconds / 86400);
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 600 => format!("{m}m{}s", s % 60),
        s if s < 3 * 3600 => format!("{m}m"),
        s if s < 8 * 3600 => {
            if m % 60 == 0 {
                format!("{h}h")
            } else {
                format!("{h}h{}m", m % 60)
            }
        }
        s if s < 48 * 3600 => format!("{h}h"),
        s if s < 8 * 86400 => {
            if h % 24 == 0 {
                format!("{d}d")
            } else {
                format!("{d}d{}h", h % 24)
            }
        }
        s if s < 365 * 86400 => format!("{d}d"),
        _ => format!("{}y", d / 365),
    }
}

fn align(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}   ", width = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_as_kubectl_prints_them() {
        assert_eq!(human_duration(45), "45s");
        assert_eq!(human_duration(200), "3m20s");
        assert_eq!(human_duration(3600), "60m");
        assert_eq!(human_duration(4 * 3600 + 600), "4h10m");
        assert_eq!(human_duration(3 * 86400 + 4 * 3600), "3d4h");
        assert_eq!(human_duration(20 * 86400), "20d");
    }

    #[test]
    fn columns_line_up() {
        let rows = vec![vec!["NAME".to_string(), "AGE".to_string()], vec!["a-long-name".to_string(), "5s".to_string()]];
        assert_eq!(align(&rows), "NAME          AGE\na-long-name   5s\n");
    }
}
