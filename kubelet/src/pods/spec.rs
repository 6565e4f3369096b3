//! From a pod's spec to what the runtime runs: the container's argv and environment
//! (with valueFrom and service links), its user, mounts, cgroup limits, the pod's QoS
//! class, and the /etc/hosts and /etc/resolv.conf the kubelet writes for it.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use client::{Api, Client};
use proto::core::v1::{ConfigMap, Container, Pod, Secret, Service};
use proto::quantity::Amount;

use crate::runtime::launch::{Mount, MountKind, TerminationMessage};
use crate::runtime::privileges::Privileges;
use crate::runtime::{ImageSpec, Limits};
use crate::volumes::HostVolume;

/// Why a container cannot be created; the reason goes into its waiting state.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub reason: &'static str,
    pub message: String,
}

fn config_error(message: impl Into<String>) -> ConfigError {
    ConfigError { reason: "CreateContainerConfigError", message: message.into() }
}

fn amount(map: &BTreeMap<String, proto::meta::v1::Quantity>, name: &str) -> Option<Amount> {
    map.get(name).and_then(|q| Amount::parse(&q.string).ok())
}

/// The container's cgroup limits. A CPU request defaults to the limit, as Kubernetes does.
pub fn limits(container: &Container) -> Limits {
    let resources = container.resources.clone().unwrap_or_default();
    let cpu_limit = amount(&resources.limits, "cpu").map(|a| a.milli_value());
    let cpu_request = amount(&resources.requests, "cpu").map(|a| a.milli_value()).or(cpu_limit);
    Limits {
        cpu_request_milli: Some(cpu_request.unwrap_or(2)),
        cpu_limit_milli: cpu_limit,
        memory_bytes: amount(&resources.limits, "memory").map(|a| a.value()),
        pids: None,
    }
}

/// The pod's cgroup: the sum of its containers' requests; its memory limit when every
/// container has one.
pub fn pod_limits(pod: &Pod, pids: Option<i64>) -> Limits {
    let spec = pod.spec.clone().unwrap_or_default();
    let all: Vec<Limits> = spec.containers.iter().map(limits).collect();
    let memory = all.iter().map(|l| l.memory_bytes).sum::<Option<i64>>();
    let cpu_limit = all.iter().map(|l| l.cpu_limit_milli).sum::<Option<i64>>();
    Limits {
        cpu_request_milli: Some(all.iter().filter_map(|l| l.cpu_request_milli).sum::<i64>().max(2)),
        cpu_limit_milli: cpu_limit,
        memory_bytes: memory,
        pids,
    }
}

/// Guaranteed, Burstable or BestEffort, as Kubernetes classifies.
pub fn qos_class(pod: &Pod) -> &'static str {
    let spec = pod.spec.clone().unwrap_or_default();
    let containers: Vec<&Container> = spec.init_containers.iter().chain(spec.containers.iter()).collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in &containers {
        let r = c.resources.clone().unwrap_or_default();
        if !r.requests.is_empty() || !r.limits.is_empty() {
            any = true;
        }
        for name in ["cpu", "memory"] {
            let limit = amount(&r.limits, name);
            let request = amount(&r.requests, name).or(limit);
            if limit.is_none() || request != limit {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// Expands $(VAR) references from `env`; $$ escapes; unknown references stay as written.
pub fn expand(text: &str, env: &HashMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
        {
            let name = &inner[..end];
            match env.get(name) {
                Some(value) => out.push_str(value),
                None => out.push_str(&format!("$({name})")),
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The value of a downward-API fieldRef.
pub fn field_value(pod: &Pod, path: &str, pod_ip: Option<Ipv4Addr>, host_ip: Ipv4Addr) -> Result<String, String> {
    let meta = pod.metadata.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let key_in = |prefix: &str| -> Option<String> {
        path.strip_prefix(prefix)?.strip_prefix("['")?.strip_suffix("']").map(String::from)
    };
    Ok(match path {
        "metadata.name" => meta.name,
        "metadata.namespace" => meta.namespace,
        "metadata.uid" => meta.uid,
        "spec.nodeName" => spec.node_name,
        "spec.serviceAccountName" => spec.service_account_name,
        "status.hostIP" | "status.hostIPs" => host_ip.to_string(),
        "status.podIP" | "status.podIPs" => pod_ip.map(|ip| ip.to_string()).unwrap_or_default(),
        _ => {
            if let Some(key) = key_in("metadata.labels") {
                meta.labels.get(&key).cloned().unwrap_or_default()
            } else if let Some(key) = key_in("metadata.annotations") {
                meta.annotations.get(&key).cloned().unwrap_or_default()
            } else {
                return Err(format!("fieldRef {path:?} is not supported"));
            }
        }
    })
}

/// A container's resource (limits.cpu, requests.memory, ...) in units of `divisor`, rounded up.
pub(crate) fn resource_value(container: &Container, resource: &str, divisor: Option<&str>) -> Result<String, String> {
    let r = container.resources.clone().unwrap_or_default();
    let (map, name) = match resource.split_once('.') {
        Some(("limits", name)) => (&r.limits, name),
        Some(("requests", name)) => (&r.requests, name),
        _ => return Err(format!("resourceFieldRef {resource:?} is not limits.* or requests.*")),
    };
    let divisor = match divisor {
        Some(d) if !d.is_empty() => Amount::parse(d).map_err(|e| format!("divisor {d}: {e}"))?,
        _ => Amount::from_int(1),
    };
    let value = match amount(map, name) {
        Some(a) => a,
        // An unset limit reads as the node's capacity in Kubernetes; report the CPUs.
        None if name == "cpu" => Amount::from_int(crate::node::machine::cpu_count()),
        None => Amount::from_int(crate::node::machine::meminfo_bytes("MemTotal").unwrap_or(0)),
    };
    if divisor.is_zero() {
        return Err("divisor must not be zero".into());
    }
    // Round up, as Kubernetes does.
    let n = value.nanos();
    let d = divisor.nanos();
    Ok(((n + d - 1) / d).to_string())
}

/// Docker-link-style variables for the Services in the namespace.
pub fn service_env(services: &[Service]) -> Vec<(String, String)> {
    let mut vars = Vec::new();
    for service in services {
        let name = service.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default();
        let spec = service.spec.clone().unwrap_or_default();
        if spec.cluster_ip.is_empty() || spec.cluster_ip == "None" {
            continue;
        }
        let prefix = name.to_uppercase().replace('-', "_");
        let ip = &spec.cluster_ip;
        vars.push((format!("{prefix}_SERVICE_HOST"), ip.clone()));
        if let Some(first) = spec.ports.first() {
            vars.push((format!("{prefix}_SERVICE_PORT"), first.port.to_string()));
            let proto = if first.protocol.is_empty() { "tcp".to_string() } else { first.protocol.to_lowercase() };
            vars.push((format!("{prefix}_PORT"), format!("{proto}://{ip}:{}", first.port)));
        }
        for port in &spec.ports {
            if !port.name.is_empty() {
                vars.push((
                    format!("{prefix}_SERVICE_PORT_{}", port.name.to_uppercase().replace('-', "_")),
                    port.port.to_string(),
                ));
            }
            let proto = if port.protocol.is_empty() { "tcp".to_string() } else { port.protocol.to_lowercase() };
            let base = format!("{prefix}_PORT_{}_{}", port.port, proto.to_uppercase());
            vars.push((base.clone(), format!("{proto}://{ip}:{}", port.port)));
            vars.push((format!("{base}_PROTO"), proto.clone()));
            vars.push((format!("{base}_PORT"), port.port.to_string()));
            vars.push((format!("{base}_ADDR"), ip.clone()));
        }
    }
    vars
}

/// Everything needed to build a container's environment.
pub struct EnvContext<'a> {
    pub client: &'a Client,
    pub pod: &'a Pod,
    pub pod_ip: Option<Ipv4Addr>,
    pub host_ip: Ipv4Addr,
    pub services: &'a [Service],
}

/// The container's environment: image env, service links, envFrom, env (in that
/// order, later wins), with $(VAR) expansion in env values.
pub async fn environment(
    ctx: &EnvContext<'_>,
    container: &Container,
    image: &ImageSpec,
) -> Result<Vec<String>, ConfigError> {
    let namespace = ctx.pod.metadata.as_ref().map(|m| m.namespace.clone()).unwrap_or_default();
    let mut order: Vec<String> = Vec::new();
    let mut values: HashMap<String, String> = HashMap::new();
    let set = |order: &mut Vec<String>, values: &mut HashMap<String, String>, k: String, v: String| {
        if !values.contains_key(&k) {
            order.push(k.clone());
        }
        values.insert(k, v);
    };
    for entry in &image.env {
        let (k, v) = entry.split_once('=').unwrap_or((entry, ""));
        set(&mut order, &mut values, k.to_string(), v.to_string());
    }
    if ctx.pod.spec.as_ref().and_then(|s| s.enable_service_links).unwrap_or(true) {
        for (k, v) in service_env(ctx.services) {
            set(&mut order, &mut values, k, v);
        }
    }
    let configmaps: Api<ConfigMap> = Api::namespaced(ctx.client, &namespace);
    let secrets: Api<Secret> = Api::namespaced(ctx.client, &namespace);
    for from in &container.env_from {
        if let Some(r) = &from.config_map_ref {
            match configmaps.get_opt(&r.name).await {
                Ok(Some(cm)) => {
                    for (k, v) in cm.data {
                        set(&mut order, &mut values, format!("{}{k}", from.prefix), v);
                    }
                }
                Ok(None) if r.optional == Some(true) => {}
                Ok(None) => return Err(config_error(format!("configmap \"{}\" not found", r.name))),
                Err(e) => return Err(config_error(format!("reading configmap \"{}\": {e}", r.name))),
            }
        }
        if let Some(r) = &from.secret_ref {
            match secrets.get_opt(&r.name).await {
                Ok(Some(s)) => {
                    for (k, v) in s.data {
                        set(
                            &mut order,
                            &mut values,
                            format!("{}{k}", from.prefix),
                            String::from_utf8_lossy(&v).into_owned(),
                        );
                    }
                }
                Ok(None) if r.optional == Some(true) => {}
                Ok(None) => return Err(config_error(format!("secret \"{}\" not found", r.name))),
                Err(e) => return Err(config_error(format!("reading secret \"{}\": {e}", r.name))),
            }
        }
    }
    for var in &container.env {
        let value = match &var.value_from {
            None => expand(&var.value, &values),
            Some(source) => {
                if let Some(f) = &source.field_ref {
                    field_value(ctx.pod, &f.field_path, ctx.pod_ip, ctx.host_ip)
                        .map_err(|e| config_error(format!("env {}: {e}", var.name)))?
                } else if let Some(r) = &source.resource_field_ref {
                    let divisor = r.divisor.as_ref().map(|d| d.string.as_str());
                    resource_value(container, &r.resource, divisor)
                        .map_err(|e| config_error(format!("env {}: {e}", var.name)))?
                } else if let Some(r) = &source.config_map_key_ref {
                    match configmaps.get_opt(&r.name).await {
                        Ok(Some(cm)) => match cm.data.get(&r.key) {
                            Some(v) => v.clone(),
                            None if r.optional == Some(true) => continue,
                            None => {
                                return Err(config_error(format!(
                                    "couldn't find key {} in ConfigMap {namespace}/{}",
                                    r.key, r.name
                                )));
                            }
                        },
                        Ok(None) if r.optional == Some(true) => continue,
                        Ok(None) => return Err(config_error(format!("configmap \"{}\" not found", r.name))),
                        Err(e) => return Err(config_error(format!("reading configmap \"{}\": {e}", r.name))),
                    }
                } else if let Some(r) = &source.secret_key_ref {
                    match secrets.get_opt(&r.name).await {
                        Ok(Some(s)) => match s.data.get(&r.key) {
                            Some(v) => String::from_utf8_lossy(v).into_owned(),
                            None if r.optional == Some(true) => continue,
                            None => {
                                return Err(config_error(format!(
                                    "couldn't find key {} in Secret {namespace}/{}",
                                    r.key, r.name
                                )));
                            }
                        },
                        Ok(None) if r.optional == Some(true) => continue,
                        Ok(None) => return Err(config_error(format!("secret \"{}\" not found", r.name))),
                        Err(e) => return Err(config_error(format!("reading secret \"{}\": {e}", r.name))),
                    }
                } else {
                    return Err(config_error(format!("env {}: valueFrom names no source", var.name)));
                }
            }
        };
        set(&mut order, &mut values, var.name.clone(), value);
    }
    if !values.contains_key("PATH") {
        set(
            &mut order,
            &mut values,
            "PATH".into(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        );
    }
    let hostname = ctx.pod.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default();
    if !values.contains_key("HOSTNAME") {
        set(&mut order, &mut values, "HOSTNAME".into(), hostname);
    }
    Ok(order.into_iter().map(|k| format!("{k}={}", values[&k])).collect())
}

/// command/args over the image's entrypoint/cmd, as Kubernetes combines them.
pub fn argv(container: &Container, image: &ImageSpec, env: &[String]) -> Vec<String> {
    let vars: HashMap<String, String> =
        env.iter().filter_map(|e| e.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let expand_all = |items: &[String]| items.iter().map(|s| expand(s, &vars)).collect::<Vec<_>>();
    match (container.command.is_empty(), container.args.is_empty()) {
        (false, _) => [expand_all(&container.command), expand_all(&container.args)].concat(),
        (true, false) => [image.entrypoint.clone(), expand_all(&container.args)].concat(),
        (true, true) => [image.entrypoint.clone(), image.cmd.clone()].concat(),
    }
}

/// Looks `name` up in the image's /etc/passwd (or /etc/group), top layer first.
fn lookup(layers: &[PathBuf], file: &str, name: &str) -> Option<(u32, u32)> {
    for layer in layers.iter().rev() {
        let Ok(text) = std::fs::read_to_string(layer.join(file)) else { continue };
        for line in text.lines() {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.first() == Some(&name) && fields.len() >= 3 {
                let id = fields[2].parse().ok()?;
                let gid = fields.get(3).and_then(|g| g.parse().ok()).unwrap_or(id);
                return Some((id, gid));
            }
        }
    }
    None
}

/// The container's capabilities, no_new_privs, read-only root and seccomp filter,
/// from its securityContext and the pod's.
pub fn privileges(pod: &Pod, container: &Container) -> Result<Privileges, ConfigError> {
    let pod_seccomp =
        pod.spec.as_ref().and_then(|s| s.security_context.as_ref()).and_then(|c| c.seccomp_profile.as_ref());
    Privileges::for_container(container.security_context.as_ref(), pod_seccomp).map_err(config_error)
}

/// Where the container may leave its termination message (none without a path; the
/// apiserver defaults it to /dev/termination-log) and whether its log stands in.
pub fn termination_message(container: &Container) -> Option<TerminationMessage> {
    (!container.termination_message_path.is_empty()).then(|| TerminationMessage {
        path: PathBuf::from(&container.termination_message_path),
        fallback_to_logs: container.termination_message_policy == "FallbackToLogsOnError",
    })
}

/// (uid, gid, supplementary groups): securityContext first, then the image's USER.
pub fn user(pod: &Pod, container: &Container, image: &ImageSpec) -> Result<(u32, u32, Vec<u32>), ConfigError> {
    let pod_sc = pod.spec.as_ref().and_then(|s| s.security_context.clone()).unwrap_or_default();
    let sc = container.security_context.clone().unwrap_or_default();
    let (mut uid, mut gid) = (0u32, 0u32);
    if !image.user.is_empty() {
        let (u, g) = image.user.split_once(':').map_or((image.user.as_str(), None), |(u, g)| (u, Some(g)));
        (uid, gid) = match u.parse::<u32>() {
            Ok(n) => (n, lookup(&image.layers, "etc/passwd", u).map(|(_, g)| g).unwrap_or(0)),
            Err(_) => lookup(&image.layers, "etc/passwd", u)
                .ok_or_else(|| config_error(format!("user {u:?} of the image is not in its /etc/passwd")))?,
        };
        if let Some(g) = g {
            gid = match g.parse::<u32>() {
                Ok(n) => n,
                Err(_) => lookup(&image.layers, "etc/group", g)
                    .map(|(id, _)| id)
                    .ok_or_else(|| config_error(format!("group {g:?} of the image is not in its /etc/group")))?,
            };
        }
    }
    if let Some(u) = sc.run_as_user.or(pod_sc.run_as_user) {
        uid = u32::try_from(u).map_err(|_| config_error(format!("runAsUser {u} is out of range")))?;
    }
    if let Some(g) = sc.run_as_group.or(pod_sc.run_as_group) {
        gid = u32::try_from(g).map_err(|_| config_error(format!("runAsGroup {g} is out of range")))?;
    }
    if sc.run_as_non_root.or(pod_sc.run_as_non_root) == Some(true) && uid == 0 {
        return Err(config_error("container has runAsNonRoot and would run as root"));
    }
    let mut groups: Vec<u32> = pod_sc.supplemental_groups.iter().filter_map(|g| u32::try_from(*g).ok()).collect();
    if let Some(fs) = pod_sc.fs_group.and_then(|g| u32::try_from(g).ok()) {
        groups.push(fs);
    }
    Ok((uid, gid, groups))
}

/// The files of /etc the kubelet writes for each pod.
pub const ETC_FILES: [&str; 3] = ["hosts", "resolv.conf", "hostname"];

/// Where the pod's copy of /etc/`file` is: `etc-<file>` directly in its directory (as
/// Kubernetes' etc-hosts), not in a directory of their own: one inode less per pod.
pub fn etc_file(pod_dir: &Path, file: &str) -> PathBuf {
    pod_dir.join(format!("etc-{file}"))
}

/// Bind mounts for the container's volumeMounts (with subPath), plus the kubelet's
/// /etc/hosts, /etc/resolv.conf and /etc/hostname from `etc-hosts`, `etc-resolv.conf`
/// and `etc-hostname` in `pod_dir` (see `ETC_FILES`).
pub fn mounts(
    container: &Container,
    volumes: &HashMap<String, HostVolume>,
    pod_dir: &Path,
) -> Result<Vec<Mount>, ConfigError> {
    let mut mounts = Vec::new();
    for vm in &container.volume_mounts {
        let volume = volumes
            .get(&vm.name)
            .ok_or_else(|| config_error(format!("volumeMount {:?}: the pod has no volume of that name", vm.name)))?;
        let mut source = volume.path.clone();
        let sub = if vm.sub_path.is_empty() { &vm.sub_path_expr } else { &vm.sub_path };
        if !sub.is_empty() {
            let rel = Path::new(sub);
            if rel.is_absolute() || rel.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
                return Err(config_error(format!("subPath {sub:?} must be relative and must not contain \"..\"")));
            }
            source = source.join(rel);
            if !source.exists() {
                std::fs::create_dir_all(&source)
                    .map_err(|e| config_error(format!("creating subPath {}: {e}", source.display())))?;
            }
            // A subPath must stay inside its volume even through symlinks.
            let real = source.canonicalize().map_err(|e| config_error(format!("subPath {sub}: {e}")))?;
            let base = volume.path.canonicalize().map_err(|e| config_error(format!("volume {}: {e}", vm.name)))?;
            if !real.starts_with(&base) {
                return Err(config_error(format!("subPath {sub:?} leaves its volume")));
            }
        }
        mounts.push(Mount {
            kind: MountKind::Bind,
            source,
            target: PathBuf::from(&vm.mount_path),
            read_only: vm.read_only || volume.read_only,
        });
    }
    for file in ETC_FILES {
        let target = PathBuf::from("/etc").join(file);
        if !container.volume_mounts.iter().any(|m| Path::new(&m.mount_path) == target) {
            mounts.push(Mount { kind: MountKind::Bind, source: etc_file(pod_dir, file), target, read_only: false });
        }
    }
    Ok(mounts)
}

/// /etc/hosts for a pod.
pub fn hosts_file(pod: &Pod, pod_ip: Option<Ipv4Addr>, cluster_domain: &str) -> String {
    let meta = pod.metadata.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    if spec.host_network {
        return std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    }
    let hostname = if spec.hostname.is_empty() { meta.name.clone() } else { spec.hostname.clone() };
    let mut text = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    if let Some(ip) = pod_ip {
        if spec.subdomain.is_empty() {
            text.push_str(&format!("{ip}\t{hostname}\n"));
        } else {
            text.push_str(&format!(
                "{ip}\t{hostname}.{}.{}.svc.{cluster_domain}\t{hostname}\n",
                spec.subdomain, meta.namespace
            ));
        }
    }
    for alias in &spec.host_aliases {
        text.push_str(&format!("{}\t{}\n", alias.ip, alias.hostnames.join("\t")));
    }
    text
}

/// /etc/resolv.conf for a pod, following its dnsPolicy and dnsConfig.
pub fn resolv_conf(pod: &Pod, cluster_dns: Option<Ipv4Addr>, cluster_domain: &str) -> String {
    let meta = pod.metadata.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let policy = if spec.dns_policy.is_empty() { "ClusterFirst" } else { spec.dns_policy.as_str() };
    let cluster = match (policy, cluster_dns) {
        ("ClusterFirst", Some(dns)) if !spec.host_network => Some(dns),
        ("ClusterFirstWithHostNet", Some(dns)) => Some(dns),
        _ => None,
    };
    let (mut servers, mut searches, mut options): (Vec<String>, Vec<String>, Vec<String>) = match (policy, cluster) {
        ("None", _) => (Vec::new(), Vec::new(), Vec::new()),
        (_, Some(dns)) => (
            vec![dns.to_string()],
            vec![
                format!("{}.svc.{cluster_domain}", meta.namespace),
                format!("svc.{cluster_domain}"),
                cluster_domain.to_string(),
            ],
            vec!["ndots:5".to_string()],
        ),
        _ => {
            let field = |key: &str| -> Vec<String> {
                host.lines()
                    .filter_map(|l| l.trim().strip_prefix(key))
                    .flat_map(|rest| rest.split_whitespace().map(String::from).collect::<Vec<_>>())
                    .collect()
            };
            (field("nameserver"), field("search"), field("options"))
        }
    };
    if let Some(config) = &spec.dns_config {
        servers.extend(config.nameservers.iter().cloned());
        searches.extend(config.searches.iter().cloned());
        for option in &config.options {
            let text = match &option.value {
                Some(v) => format!("{}:{v}", option.name),
                None => option.name.clone(),
            };
            options.retain(|o| o.split(':').next() != Some(option.name.as_str()));
            options.push(text);
        }
    }
    let mut text = String::new();
    for server in &servers {
        text.push_str(&format!("nameserver {server}\n"));
    }
    if !searches.is_empty() {
        text.push_str(&format!("search {}\n", searches.join(" ")));
    }
    if !options.is_empty() {
        text.push_str(&format!("options {}\n", options.join(" ")));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::core::v1::{PodSpec, ResourceRequirements};
    use proto::meta::v1::{ObjectMeta, Quantity};

    fn q(s: &str) -> Quantity {
        Quantity { string: s.into() }
    }

    fn container(requests: &[(&str, &str)], limits: &[(&str, &str)]) -> Container {
        Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                requests: requests.iter().map(|(k, v)| (k.to_string(), q(v))).collect(),
                limits: limits.iter().map(|(k, v)| (k.to_string(), q(v))).collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pod(containers: Vec<Container>) -> Pod {
        Pod {
            metadata: Some(ObjectMeta { name: "p".into(), namespace: "ns".into(), ..Default::default() }),
            spec: Some(PodSpec { containers, ..Default::default() }),
            status: None,
        }
    }

    #[test]
    fn qos_classes_follow_requests_and_limits() {
        assert_eq!(qos_class(&pod(vec![container(&[], &[])])), "BestEffort");
        assert_eq!(qos_class(&pod(vec![container(&[], &[("cpu", "1"), ("memory", "1Gi")])])), "Guaranteed");
        assert_eq!(qos_class(&pod(vec![container(&[("cpu", "100m")], &[])])), "Burstable");
        let l = limits(&container(&[], &[("cpu", "500m"), ("memory", "64Mi")]));
        assert_eq!((l.cpu_request_milli, l.cpu_limit_milli, l.memory_bytes), (Some(500), Some(500), Some(64 << 20)));
    }

    #[test]
    fn command_args_and_expansion_follow_kubernetes() {
        let image = ImageSpec { entrypoint: vec!["/ep".into()], cmd: vec!["x".into()], ..Default::default() };
        let env = vec!["A=1".to_string()];
        let mut c = Container::default();
        assert_eq!(argv(&c, &image, &env), ["/ep", "x"]);
        c.args = vec!["$(A)".into(), "$$(A)".into(), "$(B)".into()];
        assert_eq!(argv(&c, &image, &env), ["/ep", "1", "$(A)", "$(B)"]);
        c.command = vec!["sh".into()];
        assert_eq!(argv(&c, &image, &env), ["sh", "1", "$(A)", "$(B)"]);
    }

    #[test]
    fn resolv_conf_uses_cluster_dns_for_cluster_first() {
        let p = pod(vec![]);
        let text = resolv_conf(&p, Some(Ipv4Addr::new(10, 96, 0, 10)), "cluster.local");
        assert!(text.contains("nameserver 10.96.0.10"));
        assert!(text.contains("search ns.svc.cluster.local svc.cluster.local cluster.local"));
        assert!(text.contains("options ndots:5"));
        let hosts = hosts_file(&p, Some(Ipv4Addr::new(10, 1, 0, 5)), "cluster.local");
        assert!(hosts.contains("10.1.0.5\tp\n"));
    }
}
