//! `create -f` and kubectl's generators: `create namespace|deployment|configmap|
//! secret generic|job|cronjob`, `expose`, `run`. Each builds the object kubectl
//! would; `--dry-run=client -o yaml` prints it without sending anything.

use std::path::Path;

use anyhow::{Context, Result};
use proto::DynamicObject;
use proto::codec::decode_object;
use serde_json::{Map, Value as Json, json};

use super::apply::{self, Mode};
use super::{DryRun, single_target};
use crate::cli::{CreateArgs, CreateCommand, DataArgs, ExposeArgs, FileArgs, RunArgs, SecretCommand};
use crate::connection::Connection;
use crate::output::{self, Format};

pub async fn create(connection: &Connection, args: CreateArgs) -> Result<()> {
    let Some(generator) = args.generator else {
        if args.filename.is_empty() {
            anyhow::bail!(
                "give manifests with -f FILE, or a generator: ctl create namespace|deployment|configmap|secret generic|job|cronjob NAME"
            );
        }
        let files =
            FileArgs { filename: args.filename, recursive: args.recursive, dry_run: args.dry_run, output: args.output };
        return apply::apply(connection, &files, Mode::Create).await;
    };
    let object = match generator {
        CreateCommand::Namespace { name } => {
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        }
        CreateCommand::Deployment { name, image, replicas, port, command } => {
            deployment(&name, &image, replicas, port, &command)
        }
        CreateCommand::Configmap(data) => {
            let (text, binary) = read_data(&data)?;
            let mut object = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": data.name}});
            if !text.is_empty() {
                object["data"] = Json::Object(text);
            }
            if !binary.is_empty() {
                object["binaryData"] = Json::Object(binary);
            }
            object
        }
        CreateCommand::Secret(SecretCommand::Generic { data, secret_type }) => {
            let (text, binary) = read_data(&data)?;
            let mut encoded = Map::new();
            for (key, value) in text {
                encoded.insert(key, Json::String(base64(value.as_str().unwrap_or("").as_bytes())));
            }
            encoded.extend(binary);
            let mut object = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": data.name}});
            if !encoded.is_empty() {
                object["data"] = Json::Object(encoded);
            }
            if let Some(secret_type) = secret_type {
                object["type"] = Json::String(secret_type);
            }
            object
        }
        CreateCommand::Job { name, image, command } => {
            let mut container = json!({"name": name, "image": image});
            if !command.is_empty() {
                container["command"] = json!(command);
            }
            json!({
                "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
                "spec": {"template": {"spec": {"containers": [container], "restartPolicy": "Never"}}},
            })
        }
        CreateCommand::Cronjob { name, image, schedule, restart, command } => {
            let mut container = json!({"name": name, "image": image});
            if !command.is_empty() {
                container["command"] = json!(command);
            }
            let restart = restart.unwrap_or_else(|| "OnFailure".to_string());
            json!({
                "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name},
                "spec": {
                    "schedule": schedule,
                    "jobTemplate": {
                        "metadata": {"name": name},
                        "spec": {"template": {"spec": {"containers": [container], "restartPolicy": restart}}},
                    },
                },
            })
        }
    };
    emit(connection, object, &args.dry_run, args.output.as_deref(), "created").await
}

/// A container's name from its image, as kubectl derives it: `nginx` from
/// `docker.io/library/nginx:1.27`.
fn container_name(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    let last = last.split('@').next().unwrap_or(last);
    last.split(':').next().unwrap_or(last).to_string()
}

fn deployment(name: &str, images: &[String], replicas: i32, port: Option<i32>, command: &[String]) -> Json {
    let containers: Vec<Json> = images
        .iter()
        .map(|image| {
            let mut container = json!({"name": container_name(image), "image": image});
            if let Some(port) = port {
                container["ports"] = json!([{"containerPort": port}]);
            }
            if !command.is_empty() {
                container["command"] = json!(command);
            }
            container
        })
        .collect();
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": containers}},
        },
    })
}

/// The data of --from-literal and --from-file: text values, and base64 values of
/// files that are not UTF-8.
fn read_data(args: &DataArgs) -> Result<(Map<String, Json>, Map<String, Json>)> {
    let mut text = Map::new();
    let mut binary = Map::new();
    for literal in &args.from_literal {
        let Some((key, value)) = literal.split_once('=') else {
            anyhow::bail!("invalid literal source \"{literal}\", expected key=value");
        };
        check_key(key)?;
        if text.insert(key.to_string(), Json::String(value.to_string())).is_some() {
            anyhow::bail!("cannot add key \"{key}\", another key by that name already exists");
        }
    }
    for source in &args.from_file {
        let (key, path) = match source.split_once('=') {
            Some((key, path)) => (Some(key.to_string()), path),
            None => (None, source.as_str()),
        };
        let path = Path::new(path);
        let mut files = Vec::new();
        if path.is_dir() {
            if key.is_some() {
                anyhow::bail!("cannot give a key for a directory source ({source})");
            }
            let entries = std::fs::read_dir(path).with_context(|| format!("reading directory {}", path.display()))?;
            let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect();
            paths.sort();
            files.extend(paths.into_iter().map(|p| (None, p)));
        } else {
            files.push((key, path.to_path_buf()));
        }
        for (key, file) in files {
            let key = match key {
                Some(key) => key,
                None => file.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string(),
            };
            check_key(&key)?;
            let bytes = std::fs::read(&file).with_context(|| format!("error reading {}", file.display()))?;
            let duplicate = text.contains_key(&key) || binary.contains_key(&key);
            if duplicate {
                anyhow::bail!("cannot add key \"{key}\", another key by that name already exists");
            }
            match String::from_utf8(bytes) {
                Ok(s) => text.insert(key, Json::String(s)),
                Err(e) => binary.insert(key, Json::String(base64(e.as_bytes()))),
            };
        }
    }
    Ok((text, binary))
}

fn check_key(key: &str) -> Result<()> {
    let errors = proto::validation::is_config_map_key(key);
    if !errors.is_empty() {
        anyhow::bail!("\"{key}\" is not a valid key name: {}", errors.join("; "));
    }
    Ok(())
}

/// Standard base64 with padding, as Secret data is written.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes a generated object (so it is checked as a manifest would be), then prints
/// it (client dry run) or creates it.
async fn emit(connection: &Connection, object: Json, dry_run: &str, output: Option<&str>, verb: &str) -> Result<()> {
    let dry_run = DryRun::parse(dry_run)?;
    let format = Format::parse(output)?;
    let decoded = decode_object(&object).map_err(|e| anyhow::anyhow!("the generated object is invalid: {e}"))?;
    let info = decoded.info;
    let result = if dry_run == DryRun::Client {
        decoded
    } else {
        let namespace = connection.scoped(info);
        let created = connection.client.create(info, &namespace, decoded.bytes, dry_run == DryRun::Server).await?;
        DynamicObject::new(info, created)
    };
    let name = result.metadata().name;
    match format {
        Format::Table | Format::Wide => println!("{} {verb}{}", output::name_of(info, &name), dry_run.suffix()),
        Format::Name => println!("{}", output::name_of(info, &name)),
        Format::CustomColumns(_) => anyhow::bail!("custom-columns is for get; use -o yaml, json, name or jsonpath"),
        other => print!("{}", output::document(&[result], &other, false)),
    }
    Ok(())
}

pub async fn expose(connection: &Connection, args: &ExposeArgs) -> Result<()> {
    let (info, name) = single_target(&args.args)?;
    let bytes = connection.client.get(info, &connection.scoped(info), &name).await?;
    let object = DynamicObject::new(info, bytes).to_json();
    let selector = match info.kind {
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" => {
            if object
                .pointer("/spec/selector/matchExpressions")
                .is_some_and(|m| m.as_array().is_some_and(|a| !a.is_empty()))
            {
                anyhow::bail!(
                    "couldn't convert expressions in the selector of {}/{name} to a Service selector: give --selector",
                    info.singular
                );
            }
            object.pointer("/spec/selector/matchLabels").cloned()
        }
        "ReplicationController" | "Service" => object.pointer("/spec/selector").cloned(),
        "Pod" => object.pointer("/metadata/labels").cloned(),
        other => anyhow::bail!(
            "cannot expose a {other}: expose a deployment, replica set, replication controller, stateful set, daemon set, pod or service"
        ),
    };
    let Some(selector) = selector.filter(|s| s.as_object().is_some_and(|m| !m.is_empty())) else {
        anyhow::bail!(
            "couldn't retrieve selectors via --selector flag or introspection: {}/{name} has none",
            info.singular
        );
    };
    let protocol = args.protocol.clone().unwrap_or_else(|| "TCP".to_string());
    let mut ports = Vec::new();
    match &args.port {
        Some(port) => {
            let port: i32 = port.parse().map_err(|_| anyhow::anyhow!("--port must be a number, not \"{port}\""))?;
            ports.push(json!({"port": port, "protocol": protocol}));
        }
        None => {
            let containers = match info.kind {
                "Pod" => object.pointer("/spec/containers"),
                "Service" => None,
                _ => object.pointer("/spec/template/spec/containers"),
            };
            let found: Vec<i64> = if info.kind == "Service" {
                object
                    .pointer("/spec/ports")
                    .and_then(Json::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p["port"].as_i64())
                    .collect()
            } else {
                containers
                    .and_then(Json::as_array)
                    .into_iter()
                    .flatten()
                    .flat_map(|c| c["ports"].as_array().cloned().unwrap_or_default())
                    .filter_map(|p| p["containerPort"].as_i64())
                    .collect()
            };
            if found.is_empty() {
                anyhow::bail!("couldn't find port via --port flag or introspection: give --port");
            }
            let named = found.len() > 1;
            for (i, port) in found.iter().enumerate() {
                let mut entry = json!({"port": port, "protocol": protocol});
                if named {
                    entry["name"] = json!(format!("port-{}", i + 1));
                }
                ports.push(entry);
            }
        }
    }
    if let Some(target) = &args.target_port {
        if ports.len() > 1 {
            anyhow::bail!("--target-port cannot be used with several ports; give --port too");
        }
        let value = target.parse::<i64>().map_or_else(|_| json!(target), |n| json!(n));
        ports[0]["targetPort"] = value;
    } else {
        for port in &mut ports {
            port["targetPort"] = port["port"].clone();
        }
    }
    let service_name = args.name.clone().unwrap_or(name);
    let mut metadata = json!({"name": service_name});
    if let Some(labels) = object.pointer("/metadata/labels").filter(|l| l.as_object().is_some_and(|m| !m.is_empty())) {
        metadata["labels"] = labels.clone();
    }
    let mut spec = json!({"ports": ports, "selector": selector});
    if let Some(service_type) = &args.service_type {
        spec["type"] = json!(service_type);
    }
    let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": spec});
    emit(connection, service, &args.dry_run, args.output.as_deref(), "exposed").await
}

pub async fn run(connection: &Connection, args: &RunArgs) -> Result<()> {
    let mut labels = Map::new();
    match &args.labels {
        Some(text) => {
            for pair in text.split(',').filter(|p| !p.is_empty()) {
                let Some((k, v)) = pair.split_once('=') else {
                    anyhow::bail!("invalid label \"{pair}\" in --labels: use key=value,key=value");
                };
                labels.insert(k.to_string(), json!(v));
            }
        }
        None => {
            labels.insert("run".to_string(), json!(args.name));
        }
    }
    let mut container = json!({"name": args.name, "image": args.image});
    if let Some(port) = args.port {
        container["ports"] = json!([{"containerPort": port}]);
    }
    if !args.env.is_empty() {
        let mut env = Vec::new();
        for pair in &args.env {
            let Some((k, v)) = pair.split_once('=') else {
                anyhow::bail!("invalid --env \"{pair}\": use NAME=VALUE");
            };
            env.push(json!({"name": k, "value": v}));
        }
        container["env"] = json!(env);
    }
    if !args.args.is_empty() {
        container[if args.command { "command" } else { "args" }] = json!(args.args);
    }
    let restart = args.restart.clone().unwrap_or_else(|| "Always".to_string());
    if !matches!(restart.as_str(), "Always" | "OnFailure" | "Never") {
        anyhow::bail!("invalid --restart \"{restart}\": use Always, OnFailure or Never");
    }
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": args.name, "labels": labels},
        "spec": {"containers": [container], "restartPolicy": restart, "dnsPolicy": "ClusterFirst"},
    });
    emit(connection, pod, &args.dry_run, args.output.as_deref(), "created").await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_pads_as_the_standard_says() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"b"), "Yg==");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"abc"), "YWJj");
        assert_eq!(base64(b"hello world"), "aGVsbG8gd29ybGQ=");
    }

    #[test]
    fn container_names_come_from_images() {
        assert_eq!(container_name("nginx"), "nginx");
        assert_eq!(container_name("docker.io/library/nginx:1.27"), "nginx");
        assert_eq!(container_name("127.0.0.1:5000/busybox@sha256:abc"), "busybox");
    }

    #[test]
    fn generated_deployments_decode() {
        let object = deployment("web", &["nginx".to_string()], 2, Some(80), &[]);
        let decoded = decode_object(&object).expect("decodes");
        assert_eq!(decoded.info.kind, "Deployment");
        assert_eq!(decoded.to_json()["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"], 80);
    }
}
