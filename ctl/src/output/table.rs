//! kubectl's per-kind tables: the columns `kubectl get` prints for each kind, and
//! the wide columns of `-o wide`.

use chrono::{DateTime, Utc};
use proto::KindInfo;
use serde_json::Value as Json;

use super::name_of;

/// How `table_rows` lays a table out.
#[derive(Debug, Clone, Copy, Default)]
pub struct TableOptions {
    pub with_namespace: bool,
    pub wide: bool,
    pub show_labels: bool,
    /// Names as `kind/name`, as kubectl prints them when one listing mixes kinds.
    pub kind_prefix: bool,
    pub headers: bool,
}

/// The rows of a table of objects of one kind (with the header row first when
/// `options.headers`).
pub fn table_rows(info: &KindInfo, objects: &[Json], options: TableOptions) -> Vec<Vec<String>> {
    let columns = columns(info, options.wide);
    let mut rows: Vec<Vec<String>> = Vec::new();
    if options.headers {
        let mut header: Vec<String> = Vec::new();
        if options.with_namespace {
            header.push("NAMESPACE".into());
        }
        header.extend(columns.iter().map(|(title, _)| title.to_string()));
        if options.show_labels {
            header.push("LABELS".into());
        }
        rows.push(header);
    }
    let name_column = columns.iter().position(|(title, _)| *title == "NAME");
    for value in objects {
        let mut row = Vec::new();
        if options.with_namespace {
            row.push(text(value, "/metadata/namespace"));
        }
        let offset = row.len();
        row.extend(columns.iter().map(|(_, cell)| cell(value)));
        if options.kind_prefix
            && let Some(c) = name_column
        {
            row[offset + c] = name_of(info, &row[offset + c]);
        }
        if options.show_labels {
            row.push(pairs(value.pointer("/metadata/labels")));
        }
        rows.push(row);
    }
    rows
}

type Cell = fn(&Json) -> String;

fn columns(info: &KindInfo, wide: bool) -> Vec<(&'static str, Cell)> {
    let name: (&'static str, Cell) = ("NAME", |v| text(v, "/metadata/name"));
    let age: (&'static str, Cell) = ("AGE", |v| age_of(v, "/metadata/creationTimestamp"));
    let containers: (&'static str, Cell) = ("CONTAINERS", |v| template_containers(v, "name"));
    let images: (&'static str, Cell) = ("IMAGES", |v| template_containers(v, "image"));
    let selector: (&'static str, Cell) = ("SELECTOR", |v| label_selector(v.pointer("/spec/selector")));
    let mut c: Vec<(&'static str, Cell)> = Vec::new();
    match info.kind {
        "Pod" => {
            c.extend([name, ("READY", pod_ready), ("STATUS", pod_status), ("RESTARTS", pod_restarts), age]);
            if wide {
                c.push(("IP", |v| or_none(text(v, "/status/podIP"))));
                c.push(("NODE", |v| or_none(text(v, "/spec/nodeName"))));
                c.push(("NOMINATED NODE", |v| or_none(text(v, "/status/nominatedNodeName"))));
                c.push(("READINESS GATES", |v| {
                    let gates = v.pointer("/spec/readinessGates").and_then(Json::as_array).map_or(0, Vec::len);
                    if gates == 0 { "<none>".into() } else { format!("0/{gates}") }
                }));
            }
        }
        "Service" => {
            c.extend([
                name,
                ("TYPE", |v| text(v, "/spec/type")),
                ("CLUSTER-IP", |v| or_none(text(v, "/spec/clusterIP"))),
                ("EXTERNAL-IP", service_external_ips),
                ("PORT(S)", service_ports),
                age,
            ]);
            if wide {
                c.push(("SELECTOR", |v| pairs(v.pointer("/spec/selector"))));
            }
        }
        "Deployment" => {
            c.extend([
                name,
                ("READY", |v| format!("{}/{}", int(v, "/status/readyReplicas"), replicas(v))),
                ("UP-TO-DATE", |v| int(v, "/status/updatedReplicas").to_string()),
                ("AVAILABLE", |v| int(v, "/status/availableReplicas").to_string()),
                age,
            ]);
            if wide {
                c.extend([containers, images, selector]);
            }
        }
        "ReplicaSet" | "ReplicationController" => {
            c.extend([
                name,
                ("DESIRED", |v| replicas(v).to_string()),
                ("CURRENT", |v| int(v, "/status/replicas").to_string()),
                ("READY", |v| int(v, "/status/readyReplicas").to_string()),
                age,
            ]);
            if wide {
                let selector: (&'static str, Cell) = if info.kind == "ReplicaSet" {
                    selector
                } else {
                    ("SELECTOR", |v| pairs(v.pointer("/spec/selector")))
                };
                c.extend([containers, images, selector]);
            }
        }
        "StatefulSet" => {
            c.extend([name, ("READY", |v| format!("{}/{}", int(v, "/status/readyReplicas"), replicas(v))), age]);
            if wide {
                c.extend([containers, images]);
            }
        }
        "DaemonSet" => {
            c.extend([
                name,
                ("DESIRED", |v| int(v, "/status/desiredNumberScheduled").to_string()),
                ("CURRENT", |v| int(v, "/status/currentNumberScheduled").to_string()),
                ("READY", |v| int(v, "/status/numberReady").to_string()),
                ("UP-TO-DATE", |v| int(v, "/status/updatedNumberScheduled").to_string()),
                ("AVAILABLE", |v| int(v, "/status/numberAvailable").to_string()),
                ("NODE SELECTOR", |v| pairs(v.pointer("/spec/template/spec/nodeSelector"))),
                age,
            ]);
            if wide {
                c.extend([containers, images, selector]);
            }
        }
        "Job" => {
            c.extend([name, ("STATUS", job_status), ("COMPLETIONS", job_completions), ("DURATION", job_duration), age]);
            if wide {
                c.extend([containers, images, selector]);
            }
        }
        "CronJob" => {
            c.extend([
                name,
                ("SCHEDULE", |v| text(v, "/spec/schedule")),
                ("TIMEZONE", |v| or_none(text(v, "/spec/timeZone"))),
                ("SUSPEND", |v| {
                    (v.pointer("/spec/suspend").and_then(Json::as_bool) == Some(true))
                        .to_string()
                        .replace("true", "True")
                        .replace("false", "False")
                }),
                ("ACTIVE", |v| v.pointer("/status/active").and_then(Json::as_array).map_or(0, Vec::len).to_string()),
                ("LAST SCHEDULE", |v| {
                    if v.pointer("/status/lastScheduleTime").is_some() {
                        age_of(v, "/status/lastScheduleTime")
                    } else {
                        "<none>".into()
                    }
                }),
                age,
            ]);
            if wide {
                c.push(("CONTAINERS", |v| {
                    containers_of(v.pointer("/spec/jobTemplate/spec/template/spec/containers"), "name")
                }));
                c.push(("IMAGES", |v| {
                    containers_of(v.pointer("/spec/jobTemplate/spec/template/spec/containers"), "image")
                }));
                c.push(("SELECTOR", |v| label_selector(v.pointer("/spec/jobTemplate/spec/selector"))));
            }
        }
        "Namespace" => c.extend([name, ("STATUS", |v| text(v, "/status/phase")), age]),
        "Node" => {
            c.extend([
                name,
                ("STATUS", node_status),
                ("ROLES", node_roles),
                age,
                ("VERSION", |v| text(v, "/status/nodeInfo/kubeletVersion")),
            ]);
            if wide {
                c.push(("INTERNAL-IP", |v| node_address(v, "InternalIP")));
                c.push(("EXTERNAL-IP", |v| node_address(v, "ExternalIP")));
                c.push(("OS-IMAGE", |v| or_unknown(text(v, "/status/nodeInfo/osImage"))));
                c.push(("KERNEL-VERSION", |v| or_unknown(text(v, "/status/nodeInfo/kernelVersion"))));
                c.push(("CONTAINER-RUNTIME", |v| or_unknown(text(v, "/status/nodeInfo/containerRuntimeVersion"))));
            }
        }
        "ConfigMap" => c.extend([
            name,
            ("DATA", |v| {
                let count = |p: &str| v.pointer(p).and_then(Json::as_object).map_or(0, |m| m.len());
                (count("/data") + count("/binaryData")).to_string()
            }),
            age,
        ]),
        "Secret" => c.extend([
            name,
            ("TYPE", |v| text(v, "/type")),
            ("DATA", |v| v.pointer("/data").and_then(Json::as_object).map_or(0, |m| m.len()).to_string()),
            age,
        ]),
        "Endpoints" => c.extend([name, ("ENDPOINTS", endpoints), age]),
        "ServiceAccount" => c.extend([
            name,
            ("SECRETS", |v| v.pointer("/secrets").and_then(Json::as_array).map_or(0, Vec::len).to_string()),
            age,
        ]),
        "PersistentVolume" => {
            c.extend([
                name,
                ("CAPACITY", |v| text(v, "/spec/capacity/storage")),
                ("ACCESS MODES", access_modes),
                ("RECLAIM POLICY", |v| text(v, "/spec/persistentVolumeReclaimPolicy")),
                ("STATUS", |v| text(v, "/status/phase")),
                ("CLAIM", |v| {
                    let ns = text(v, "/spec/claimRef/namespace");
                    let name = text(v, "/spec/claimRef/name");
                    if name.is_empty() { String::new() } else { format!("{ns}/{name}") }
                }),
                ("STORAGECLASS", |v| text(v, "/spec/storageClassName")),
                ("VOLUMEATTRIBUTESCLASS", |v| or_unset(text(v, "/spec/volumeAttributesClassName"))),
                ("REASON", |v| text(v, "/status/reason")),
                age,
            ]);
            if wide {
                c.push(("VOLUMEMODE", |v| text(v, "/spec/volumeMode")));
            }
        }
        "PersistentVolumeClaim" => {
            c.extend([
                name,
                ("STATUS", |v| text(v, "/status/phase")),
                ("VOLUME", |v| text(v, "/spec/volumeName")),
                ("CAPACITY", |v| text(v, "/status/capacity/storage")),
                ("ACCESS MODES", |v| modes(v.pointer("/status/accessModes"))),
                ("STORAGECLASS", |v| text(v, "/spec/storageClassName")),
                ("VOLUMEATTRIBUTESCLASS", |v| or_unset(text(v, "/spec/volumeAttributesClassName"))),
                age,
            ]);
            if wide {
                c.push(("VOLUMEMODE", |v| text(v, "/spec/volumeMode")));
            }
        }
        "Event" => {
            c.extend([
                ("LAST SEEN", event_last_seen as Cell),
                ("TYPE", |v| text(v, "/type")),
                ("REASON", |v| text(v, "/reason")),
                ("OBJECT", |v| {
                    format!(
                        "{}/{}",
                        text(v, "/involvedObject/kind").to_ascii_lowercase(),
                        text(v, "/involvedObject/name")
                    )
                }),
            ]);
            if wide {
                c.push(("SUBOBJECT", |v| text(v, "/involvedObject/fieldPath")));
                c.push(("SOURCE", |v| {
                    let component = text(v, "/source/component");
                    let host = text(v, "/source/host");
                    if host.is_empty() { component } else { format!("{component}, {host}") }
                }));
            }
            c.push(("MESSAGE", |v| text(v, "/message").trim().to_string()));
            if wide {
                c.push(("FIRST SEEN", |v| age_of(v, "/firstTimestamp")));
                c.push(("COUNT", |v| int(v, "/count").max(1).to_string()));
                c.push(("NAME", |v| text(v, "/metadata/name")));
            }
        }
        "Lease" => c.extend([name, ("HOLDER", |v| text(v, "/spec/holderIdentity")), age]),
        "ControllerRevision" => c.extend([
            name,
            ("CONTROLLER", |v| {
                let owners = v.pointer("/metadata/ownerReferences").and_then(Json::as_array);
                owners
                    .and_then(|o| o.iter().find(|o| o["controller"] == true))
                    .map(|o| {
                        format!(
                            "{}/{}",
                            kind_resource(o["kind"].as_str().unwrap_or("")),
                            o["name"].as_str().unwrap_or("")
                        )
                    })
                    .unwrap_or_else(|| "<none>".into())
            }),
            ("REVISION", |v| int(v, "/revision").to_string()),
            age,
        ]),
        _ => c.extend([name, age]),
    }
    c
}

fn kind_resource(kind: &str) -> String {
    proto::resource::by_name(kind).map_or_else(|| kind.to_ascii_lowercase(), |k| k.qualified_singular())
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

fn or_unknown(text: String) -> String {
    if text.is_empty() { "<unknown>".into() } else { text }
}

fn or_unset(text: String) -> String {
    if text.is_empty() { "<unset>".into() } else { text }
}

/// spec.replicas, which defaults to 1 when unset.
fn replicas(value: &Json) -> i64 {
    value.pointer("/spec/replicas").and_then(Json::as_i64).unwrap_or(1)
}

/// `a=b,c=d` of a string map, `<none>` when empty.
fn pairs(map: Option<&Json>) -> String {
    let shown = map
        .and_then(Json::as_object)
        .map(|m| m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect::<Vec<_>>().join(","))
        .unwrap_or_default();
    if shown.is_empty() { "<none>".into() } else { shown }
}

/// A LabelSelector as kubectl prints it: `app=web,tier in (a,b)`.
fn label_selector(selector: Option<&Json>) -> String {
    let Some(selector) = selector else { return "<none>".into() };
    let mut parts: Vec<String> = Vec::new();
    if let Some(labels) = selector.get("matchLabels").and_then(Json::as_object) {
        parts.extend(labels.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))));
    }
    for expression in selector.get("matchExpressions").and_then(Json::as_array).into_iter().flatten() {
        let key = expression["key"].as_str().unwrap_or("");
        let values: Vec<&str> =
            expression["values"].as_array().into_iter().flatten().filter_map(Json::as_str).collect();
        parts.push(match expression["operator"].as_str().unwrap_or("") {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            other => format!("{key} {other}"),
        });
    }
    if parts.is_empty() { "<none>".into() } else { parts.join(",") }
}

fn template_containers(value: &Json, field: &str) -> String {
    containers_of(value.pointer("/spec/template/spec/containers"), field)
}

fn containers_of(containers: Option<&Json>, field: &str) -> String {
    containers
        .and_then(Json::as_array)
        .map(|c| c.iter().filter_map(|c| c[field].as_str()).collect::<Vec<_>>().join(","))
        .unwrap_or_default()
}

fn pod_restarts(value: &Json) -> String {
    let statuses = value.pointer("/status/containerStatuses").and_then(Json::as_array);
    statuses.map(|s| s.iter().filter_map(|c| c["restartCount"].as_i64()).sum::<i64>()).unwrap_or(0).to_string()
}

fn service_external_ips(value: &Json) -> String {
    let mut ips: Vec<String> = Vec::new();
    for ingress in value.pointer("/status/loadBalancer/ingress").and_then(Json::as_array).into_iter().flatten() {
        if let Some(ip) = ingress["ip"].as_str().or(ingress["hostname"].as_str()) {
            ips.push(ip.to_string());
        }
    }
    for ip in value.pointer("/spec/externalIPs").and_then(Json::as_array).into_iter().flatten() {
        ips.extend(ip.as_str().map(String::from));
    }
    if !ips.is_empty() {
        return ips.join(",");
    }
    if text(value, "/spec/type") == "LoadBalancer" { "<pending>".into() } else { "<none>".into() }
}

fn node_status(value: &Json) -> String {
    let conditions = value.pointer("/status/conditions").and_then(Json::as_array);
    let ready = conditions
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .map(|c| if c["status"] == "True" { "Ready" } else { "NotReady" })
        .unwrap_or("Unknown");
    if value.pointer("/spec/unschedulable").and_then(Json::as_bool) == Some(true) {
        format!("{ready},SchedulingDisabled")
    } else {
        ready.to_string()
    }
}

/// Roles from `node-role.kubernetes.io/ROLE` labels (and `kubernetes.io/role`).
fn node_roles(value: &Json) -> String {
    let mut roles: Vec<String> = Vec::new();
    for (key, v) in value.pointer("/metadata/labels").and_then(Json::as_object).into_iter().flatten() {
        if let Some(role) = key.strip_prefix("node-role.kubernetes.io/") {
            if !role.is_empty() {
                roles.push(role.to_string());
            }
        } else if key == "kubernetes.io/role" {
            roles.extend(v.as_str().map(String::from));
        }
    }
    roles.sort();
    if roles.is_empty() { "<none>".into() } else { roles.join(",") }
}

fn node_address(value: &Json, kind: &str) -> String {
    let addresses = value.pointer("/status/addresses").and_then(Json::as_array);
    addresses
        .and_then(|a| a.iter().find(|a| a["type"] == kind))
        .and_then(|a| a["address"].as_str())
        .map_or_else(|| "<none>".into(), String::from)
}

fn modes(list: Option<&Json>) -> String {
    let short = |mode: &str| match mode {
        "ReadWriteOnce" => "RWO",
        "ReadOnlyMany" => "ROX",
        "ReadWriteMany" => "RWX",
        "ReadWriteOncePod" => "RWOP",
        _ => "",
    };
    list.and_then(Json::as_array)
        .map(|m| m.iter().filter_map(Json::as_str).map(short).filter(|s| !s.is_empty()).collect::<Vec<_>>().join(","))
        .unwrap_or_default()
}

fn access_modes(value: &Json) -> String {
    modes(value.pointer("/spec/accessModes"))
}

fn condition_true(value: &Json, kind: &str) -> bool {
    let conditions = value.pointer("/status/conditions").and_then(Json::as_array);
    conditions.is_some_and(|c| c.iter().any(|c| c["type"] == kind && c["status"] == "True"))
}

fn job_status(value: &Json) -> String {
    if condition_true(value, "Complete") {
        "Complete"
    } else if condition_true(value, "Failed") {
        "Failed"
    } else if condition_true(value, "Suspended") {
        "Suspended"
    } else if condition_true(value, "FailureTarget") {
        "FailureTarget"
    } else if value.pointer("/metadata/deletionTimestamp").is_some() {
        "Terminating"
    } else {
        "Running"
    }
    .to_string()
}

fn job_completions(value: &Json) -> String {
    let succeeded = int(value, "/status/succeeded");
    match value.pointer("/spec/completions").and_then(Json::as_i64) {
        Some(completions) => format!("{succeeded}/{completions}"),
        None => {
            let parallelism = value.pointer("/spec/parallelism").and_then(Json::as_i64).unwrap_or(1);
            if parallelism > 1 { format!("{succeeded}/1 of {parallelism}") } else { format!("{succeeded}/1") }
        }
    }
}

fn timestamp(value: &Json, pointer: &str) -> Option<DateTime<Utc>> {
    let text = value.pointer(pointer).and_then(Json::as_str)?;
    DateTime::parse_from_rfc3339(text).ok().map(|t| t.with_timezone(&Utc))
}

fn job_duration(value: &Json) -> String {
    let Some(start) = timestamp(value, "/status/startTime") else { return String::new() };
    let end = timestamp(value, "/status/completionTime").unwrap_or_else(Utc::now);
    human_duration((end - start).num_seconds().max(0))
}

fn event_last_seen(value: &Json) -> String {
    for pointer in ["/lastTimestamp", "/eventTime", "/firstTimestamp", "/metadata/creationTimestamp"] {
        if timestamp(value, pointer).is_some() {
            return age_of(value, pointer);
        }
    }
    "<unknown>".into()
}

/// `ip:port` pairs, at most three and then `+ N more...`, as kubectl shows them.
fn endpoints(value: &Json) -> String {
    let mut shown = Vec::new();
    for subset in value["subsets"].as_array().into_iter().flatten() {
        for address in subset["addresses"].as_array().into_iter().flatten() {
            let ip = address["ip"].as_str().unwrap_or("");
            match subset["ports"].as_array().filter(|p| !p.is_empty()) {
                Some(ports) => shown.extend(ports.iter().map(|p| format!("{ip}:{}", p["port"]))),
                None => shown.push(ip.to_string()),
            }
        }
    }
    match shown.len() {
        0 => "<none>".into(),
        n if n > 3 => format!("{} + {} more...", shown[..3].join(","), n - 3),
        _ => shown.join(","),
    }
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

fn age_of(value: &Json, pointer: &str) -> String {
    let created = value.pointer(pointer).and_then(Json::as_str);
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

pub fn align(rows: &[Vec<String>]) -> String {
    let mut widths = Vec::new();
    align_to(rows, &mut widths)
}

/// Aligns rows to at least `widths` (widened as the rows need), so the rows a watch
/// prints one by one line up under the table printed first.
pub fn align_to(rows: &[Vec<String>], widths: &mut Vec<usize>) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    widths.resize(widths.len().max(columns), 0);
    for row in rows {
        for (c, cell) in row.iter().enumerate() {
            widths[c] = widths[c].max(cell.chars().count());
        }
    }
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
