//! Pods: defaults, validation, the fields kubelets and schedulers select on, and
//! graceful deletion.

use proto::codec::FieldError;
use proto::core::v1::{Container, Pod, PodSpec, PodStatus, Toleration};
use proto::meta::v1::DeleteOptions;
use proto::quantity::Amount;
use proto::validation;

use crate::registry::Strategy;

pub struct PodStrategy;

/// Kubernetes' DefaultTolerationSeconds admission: pods ride out a short node
/// outage before they are evicted.
const DEFAULT_TOLERATION_SECONDS: i64 = 300;

impl Strategy<Pod> for PodStrategy {
    fn prepare_for_create(&self, pod: &mut Pod) {
        let mut status = PodStatus { phase: "Pending".to_string(), ..Default::default() };
        // As Kubernetes says it of a pod the scheduler must not yet place.
        if pod.spec.as_ref().is_some_and(|s| !s.scheduling_gates.is_empty()) {
            status.conditions.push(proto::core::v1::PodCondition {
                r#type: "PodScheduled".to_string(),
                status: "False".to_string(),
                reason: "SchedulingGated".to_string(),
                message: "Scheduling is blocked due to non-empty scheduling gates".to_string(),
                last_transition_time: Some(proto::meta::v1::Time::now_seconds()),
                ..Default::default()
            });
        }
        pod.status = Some(status);
    }

    fn default(&self, pod: &mut Pod) {
        let spec = pod.spec.get_or_insert_with(PodSpec::default);
        default_pod_spec(spec);
        default_tolerations(spec);
        if spec.priority.is_none()
            && let Some(value) = system_priority(&spec.priority_class_name)
        {
            spec.priority = Some(value);
        }
    }

    fn validate(&self, pod: &Pod) -> Vec<FieldError> {
        match pod.spec.as_ref() {
            Some(spec) => {
                let mut errors = validate_pod_spec(spec, "spec");
                if !spec.priority_class_name.is_empty() && system_priority(&spec.priority_class_name).is_none() {
                    errors.push(FieldError::new(
                        "spec.priorityClassName",
                        format!(
                            "Not found: no PriorityClass with name {:?} (this cluster serves none but system-cluster-critical and system-node-critical; or set spec.priority)",
                            spec.priority_class_name
                        ),
                    ));
                }
                if !spec.scheduling_gates.is_empty() && !spec.node_name.is_empty() {
                    errors.push(FieldError::forbidden(
                        "spec.nodeName",
                        "cannot be set until all schedulingGates have been cleared",
                    ));
                }
                errors
            }
            None => vec![FieldError::required("spec", "")],
        }
    }

    /// As Kubernetes: a pod's spec is fixed once created, but for images, the active
    /// deadline and added tolerations; the node comes only through a Binding.
    fn validate_update(&self, new: &Pod, old: &Pod) -> Vec<FieldError> {
        let (Some(new_spec), Some(old_spec)) = (new.spec.as_ref(), old.spec.as_ref()) else {
            return Vec::new();
        };
        let mut comparable = new_spec.clone();
        for (container, was) in comparable.containers.iter_mut().zip(&old_spec.containers) {
            container.image = was.image.clone();
        }
        for (container, was) in comparable.init_containers.iter_mut().zip(&old_spec.init_containers) {
            container.image = was.image.clone();
        }
        comparable.active_deadline_seconds = old_spec.active_deadline_seconds;
        // Scheduling gates may be removed (never added), which lets the scheduler in.
        let mut remaining = old_spec.scheduling_gates.iter();
        if new_spec.scheduling_gates.iter().all(|gate| remaining.any(|old| old == gate)) {
            comparable.scheduling_gates = old_spec.scheduling_gates.clone();
        }
        let keeps_old_tolerations = old_spec.tolerations.iter().all(|t| new_spec.tolerations.contains(t));
        if keeps_old_tolerations {
            comparable.tolerations = old_spec.tolerations.clone();
        }
        if comparable == *old_spec {
            return Vec::new();
        }
        vec![FieldError::forbidden(
            "spec",
            "pod updates may not change fields other than `spec.containers[*].image`, `spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, `spec.tolerations` (only additions to existing tolerations) or `spec.schedulingGates` (only removals)",
        )]
    }

    fn fields(&self, pod: &Pod) -> Vec<(&'static str, String)> {
        let spec = pod.spec.as_ref();
        let status = pod.status.as_ref();
        let text = |f: Option<&String>| f.cloned().unwrap_or_default();
        vec![
            ("spec.nodeName", text(spec.map(|s| &s.node_name))),
            ("spec.restartPolicy", text(spec.map(|s| &s.restart_policy))),
            ("spec.schedulerName", text(spec.map(|s| &s.scheduler_name))),
            ("spec.serviceAccountName", text(spec.map(|s| &s.service_account_name))),
            ("spec.hostNetwork", spec.is_some_and(|s| s.host_network).to_string()),
            ("status.phase", text(status.map(|s| &s.phase))),
            ("status.podIP", text(status.map(|s| &s.pod_ip))),
            ("status.nominatedNodeName", text(status.map(|s| &s.nominated_node_name))),
        ]
    }

    fn field_names(&self) -> &'static [&'static str] {
        &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ]
    }

    /// A pod on a node gets its grace period so the kubelet can stop it; one that
    /// never reached a node, or has finished, goes at once.
    fn grace_period(&self, pod: &Pod, options: &DeleteOptions) -> Option<i64> {
        let spec = pod.spec.as_ref()?;
        let phase = pod.status.as_ref().map(|s| s.phase.as_str()).unwrap_or("");
        if spec.node_name.is_empty() || phase == "Succeeded" || phase == "Failed" {
            return None;
        }
        let grace = options.grace_period_seconds.or(spec.termination_grace_period_seconds).unwrap_or(30).max(0);
        Some(grace)
    }
}

/// Kubernetes' DefaultTolerationSeconds admission (pods only, not templates).
fn default_tolerations(spec: &mut PodSpec) {
    for (key, effect) in
        [("node.kubernetes.io/not-ready", "NoExecute"), ("node.kubernetes.io/unreachable", "NoExecute")]
    {
        let tolerated = spec.tolerations.iter().any(|t| {
            (t.key == key || (t.key.is_empty() && t.operator == "Exists"))
                && (t.effect.is_empty() || t.effect == effect)
        });
        if !tolerated {
            spec.tolerations.push(Toleration {
                key: key.to_string(),
                operator: "Exists".to_string(),
                effect: effect.to_string(),
                toleration_seconds: Some(DEFAULT_TOLERATION_SECONDS),
                ..Default::default()
            });
        }
    }
}

/// Kubernetes' defaults for a pod spec, shared with the pod templates of workloads.
pub fn default_pod_spec(spec: &mut PodSpec) {
    if spec.restart_policy.is_empty() {
        spec.restart_policy = "Always".to_string();
    }
    spec.termination_grace_period_seconds.get_or_insert(30);
    if spec.dns_policy.is_empty() {
        spec.dns_policy = "ClusterFirst".to_string();
    }
    if spec.scheduler_name.is_empty() {
        spec.scheduler_name = "default-scheduler".to_string();
    }
    if spec.service_account_name.is_empty() {
        spec.service_account_name =
            if spec.service_account.is_empty() { "default".to_string() } else { spec.service_account.clone() };
    }
    spec.enable_service_links.get_or_insert(true);
    spec.security_context.get_or_insert_with(Default::default);
    for container in spec.init_containers.iter_mut().chain(spec.containers.iter_mut()) {
        default_container(container);
    }
}

/// Validates a pod spec found at `path` ("spec", "spec.template.spec").
/// The built-in PriorityClasses every Kubernetes cluster has, and their values.
fn system_priority(class: &str) -> Option<i32> {
    match class {
        "system-node-critical" => Some(2_000_001_000),
        "system-cluster-critical" => Some(2_000_000_000),
        _ => None,
    }
}

/// What this cluster's kubelet cannot give a pod: refused by name rather than run
/// without (a pod that asked for the host's processes must not silently get its own).
fn unsupported_by_kubelet(spec: &PodSpec, path: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let no = |field: &str, what: &str| {
        FieldError::forbidden(format!("{path}.{field}"), &format!("{what} is not supported by this cluster's kubelet"))
    };
    if spec.share_process_namespace == Some(true) && spec.host_pid {
        errors.push(FieldError::invalid(
            format!("{path}.shareProcessNamespace"),
            true,
            "ShareProcessNamespace and HostPID cannot both be enabled",
        ));
    }
    if spec.host_users == Some(false) {
        errors.push(no("hostUsers", "a user namespace per pod"));
    }
    if spec.runtime_class_name.as_deref().is_some_and(|name| !name.is_empty()) {
        errors.push(no("runtimeClassName", "choosing a runtime (the kubelet has one, for Linux containers)"));
    }
    if let Some(os) = spec.os.as_ref().filter(|os| os.name != "linux") {
        errors.push(FieldError::not_supported(format!("{path}.os.name"), &os.name, &["linux"]));
    }
    errors
}

pub fn validate_pod_spec(spec: &PodSpec, path: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if spec.containers.is_empty() {
        errors.push(FieldError::required(format!("{path}.containers"), ""));
    }
    errors.extend(unsupported_by_kubelet(spec, path));
    let mut volumes = std::collections::BTreeSet::new();
    for (i, volume) in spec.volumes.iter().enumerate() {
        let at = format!("{path}.volumes[{i}].name");
        for problem in validation::is_dns1123_label(&volume.name) {
            errors.push(FieldError::invalid(&at, &volume.name, &problem));
        }
        if !volumes.insert(volume.name.as_str()) {
            errors.push(FieldError::duplicate(&at, &volume.name));
        }
    }
    let mut names = std::collections::BTreeSet::new();
    let all = spec
        .init_containers
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("{path}.initContainers[{i}]"), c))
        .chain(spec.containers.iter().enumerate().map(|(i, c)| (format!("{path}.containers[{i}]"), c)));
    for (path, container) in all {
        if container.name.is_empty() {
            errors.push(FieldError::required(format!("{path}.name"), ""));
        } else {
            for problem in validation::is_dns1123_label(&container.name) {
                errors.push(FieldError::invalid(format!("{path}.name"), &container.name, &problem));
            }
            if !names.insert(container.name.clone()) {
                errors.push(FieldError::duplicate(format!("{path}.name"), &container.name));
            }
        }
        if container.image.trim().is_empty() {
            errors.push(FieldError::required(format!("{path}.image"), ""));
        }
        errors.extend(validate_container(container, &path, &volumes));
    }
    let policies = ["Always", "OnFailure", "Never"];
    if !policies.contains(&spec.restart_policy.as_str()) {
        errors.push(FieldError::not_supported(format!("{path}.restartPolicy"), &spec.restart_policy, &policies));
    }
    errors
}

/// Ports, environment names, volume mounts and resources of one container.
fn validate_container(
    container: &Container,
    path: &str,
    volumes: &std::collections::BTreeSet<&str>,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (i, port) in container.ports.iter().enumerate() {
        for problem in validation::is_valid_port_num(port.container_port) {
            errors.push(FieldError::invalid(format!("{path}.ports[{i}].containerPort"), port.container_port, &problem));
        }
        if port.host_port != 0 {
            for problem in validation::is_valid_port_num(port.host_port) {
                errors.push(FieldError::invalid(format!("{path}.ports[{i}].hostPort"), port.host_port, &problem));
            }
        }
        let protocols = ["TCP", "UDP", "SCTP"];
        if !protocols.contains(&port.protocol.as_str()) {
            errors.push(FieldError::not_supported(format!("{path}.ports[{i}].protocol"), &port.protocol, &protocols));
        }
    }
    let policies = ["File", "FallbackToLogsOnError"];
    if !policies.contains(&container.termination_message_policy.as_str()) {
        errors.push(FieldError::not_supported(
            format!("{path}.terminationMessagePolicy"),
            &container.termination_message_policy,
            &policies,
        ));
    }
    for (i, env) in container.env.iter().enumerate() {
        for problem in validation::is_env_var_name(&env.name) {
            errors.push(FieldError::invalid(format!("{path}.env[{i}].name"), &env.name, &problem));
        }
    }
    for (i, mount) in container.volume_mounts.iter().enumerate() {
        if !volumes.contains(mount.name.as_str()) {
            errors.push(FieldError::new(
                format!("{path}.volumeMounts[{i}].name"),
                format!("Not found: {:?}", mount.name),
            ));
        }
        if mount.mount_path.is_empty() {
            errors.push(FieldError::required(format!("{path}.volumeMounts[{i}].mountPath"), ""));
        }
    }
    if let Some(resources) = &container.resources {
        for (name, request) in &resources.requests {
            let (Some(limit), Ok(request)) = (resources.limits.get(name), Amount::parse(&request.string)) else {
                continue;
            };
            if Amount::parse(&limit.string).is_ok_and(|limit| request > limit) {
                errors.push(FieldError::invalid(
                    format!("{path}.resources.requests[{name}]"),
                    request.to_string(),
                    &format!("must be less than or equal to {name} limit of {}", limit.string),
                ));
            }
        }
    }
    errors
}

fn default_container(container: &mut Container) {
    if container.image_pull_policy.is_empty() {
        let tag = image_tag(&container.image);
        container.image_pull_policy =
            if tag.is_none_or(|t| t == "latest") { "Always" } else { "IfNotPresent" }.to_string();
    }
    if container.termination_message_path.is_empty() {
        container.termination_message_path = "/dev/termination-log".to_string();
    }
    if container.termination_message_policy.is_empty() {
        container.termination_message_policy = "File".to_string();
    }
    // A limit without a request is also the request, as in Kubernetes.
    if let Some(resources) = &mut container.resources {
        for (name, limit) in &resources.limits {
            resources.requests.entry(name.clone()).or_insert_with(|| limit.clone());
        }
    }
    for port in &mut container.ports {
        if port.protocol.is_empty() {
            port.protocol = "TCP".to_string();
        }
    }
    for probe in [&mut container.liveness_probe, &mut container.readiness_probe, &mut container.startup_probe]
        .into_iter()
        .flatten()
    {
        if probe.timeout_seconds == 0 {
            probe.timeout_seconds = 1;
        }
        if probe.period_seconds == 0 {
            probe.period_seconds = 10;
        }
        if probe.success_threshold == 0 {
            probe.success_threshold = 1;
        }
        if probe.failure_threshold == 0 {
            probe.failure_threshold = 3;
        }
    }
}

/// The tag of an image reference, if it has one ("nginx:1.25" -> "1.25"; a digest
/// reference has none).
fn image_tag(image: &str) -> Option<&str> {
    if image.contains('@') {
        return Some("digest");
    }
    let last_segment = image.rsplit('/').next().unwrap_or(image);
    last_segment.split_once(':').map(|(_, tag)| tag)
}

impl crate::registry::Registry<Pod> {
    /// The pods/binding subresource: assigns an unbound pod to a node, once.
    pub async fn bind(&self, binding: proto::core::v1::Binding) -> Result<Pod, proto::ApiError> {
        use proto::{ApiError, Resource as _};
        let meta = binding.metadata.unwrap_or_default();
        let target = binding.target.unwrap_or_default();
        let info = &proto::resource::kinds::POD;
        if target.name.is_empty() {
            return Err(ApiError::invalid(info, &meta.name, &[FieldError::required("target.name", "")]));
        }
        if !target.kind.is_empty() && target.kind != "Node" {
            return Err(ApiError::invalid(
                info,
                &meta.name,
                &[FieldError::not_supported("target.kind", &target.kind, &["Node"])],
            ));
        }
        let namespace = if meta.namespace.is_empty() { "default" } else { meta.namespace.as_str() };
        let subresource = crate::registry::Subresource::Binding;
        self.guaranteed_update(namespace, &meta.name, None, false, subresource, |pod| {
            let name = &pod.metadata().name;
            if !meta.uid.is_empty() && meta.uid != pod.metadata().uid {
                return Err(ApiError::conflict(info, name, "the binding is for another pod with the same name"));
            }
            if pod.metadata().deletion_timestamp.is_some() {
                return Err(ApiError::conflict(
                    info,
                    name,
                    &format!("pod {name} is being deleted, cannot be assigned to a host"),
                ));
            }
            if pod.spec.as_ref().is_some_and(|s| !s.scheduling_gates.is_empty()) {
                return Err(ApiError::conflict(
                    info,
                    name,
                    &format!("pod {name} has scheduling gates; remove spec.schedulingGates before binding it"),
                ));
            }
            let assigned = pod.spec.as_ref().map(|s| s.node_name.as_str()).unwrap_or("");
            if !assigned.is_empty() {
                return Err(ApiError::conflict(
                    info,
                    name,
                    &format!("pod {name} is already assigned to node \"{assigned}\""),
                ));
            }
            let mut bound = pod.clone();
            bound.spec.get_or_insert_with(PodSpec::default).node_name = target.name.clone();
            let status = bound.status.get_or_insert_with(PodStatus::default);
            // A nomination (from preemption) is spent once the pod is placed: a stale
            // one would keep holding room on that node (Kubernetes 1.34 clears it here).
            status.nominated_node_name.clear();
            status.conditions.retain(|c| c.r#type != "PodScheduled");
            status.conditions.push(proto::core::v1::PodCondition {
                r#type: "PodScheduled".to_string(),
                status: "True".to_string(),
                last_transition_time: Some(proto::meta::v1::Time::now_seconds()),
                ..Default::default()
            });
            Ok(bound)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policy_follows_the_tag() {
        assert_eq!(image_tag("nginx"), None);
        assert_eq!(image_tag("nginx:latest"), Some("latest"));
        assert_eq!(image_tag("mydocker.io:5000/zhidan-web:0.1"), Some("0.1"));
        assert_eq!(image_tag("mydocker.io:5000/zhidan-web"), None);
        assert_eq!(image_tag("busybox@sha256:abc"), Some("digest"));
    }

    fn gated(gates: &[&str]) -> Pod {
        Pod {
            spec: Some(PodSpec {
                scheduling_gates: gates
                    .iter()
                    .map(|g| proto::core::v1::PodSchedulingGate { name: g.to_string() })
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn scheduling_gates_mark_the_pod_and_may_only_be_removed() {
        let mut pod = gated(&["a", "b"]);
        PodStrategy.prepare_for_create(&mut pod);
        let condition = &pod.status.as_ref().unwrap().conditions[0];
        assert_eq!((condition.r#type.as_str(), condition.status.as_str()), ("PodScheduled", "False"));
        assert_eq!(condition.reason, "SchedulingGated");
        let old = gated(&["a", "b"]);
        assert!(PodStrategy.validate_update(&gated(&["b"]), &old).is_empty());
        assert!(PodStrategy.validate_update(&gated(&[]), &old).is_empty());
        assert!(!PodStrategy.validate_update(&gated(&["a", "b", "c"]), &old).is_empty(), "a gate was added");
        assert!(!PodStrategy.validate_update(&gated(&["b", "a"]), &old).is_empty(), "gates were reordered");
        let mut placed = gated(&["a"]);
        placed.spec.as_mut().unwrap().node_name = "n1".into();
        let errors = PodStrategy.validate(&placed);
        assert!(errors.iter().any(|e| e.path == "spec.nodeName"), "{errors:?}");
    }

    #[test]
    fn the_system_priority_classes_set_the_priority_and_others_are_not_found() {
        let mut pod = Pod {
            spec: Some(PodSpec { priority_class_name: "system-node-critical".into(), ..Default::default() }),
            ..Default::default()
        };
        PodStrategy.default(&mut pod);
        assert_eq!(pod.spec.as_ref().unwrap().priority, Some(2_000_001_000));
        pod.spec.as_mut().unwrap().priority_class_name = "high".into();
        let errors: Vec<String> = PodStrategy.validate(&pod).iter().map(|e| e.to_string()).collect();
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("spec.priorityClassName: Not found: no PriorityClass with name \"high\"")),
            "{errors:?}"
        );
    }

    #[test]
    fn the_termination_message_policy_defaults_to_file_and_must_be_known() {
        let container = |policy: &str| proto::core::v1::Container {
            name: "c".into(),
            image: "busybox".into(),
            termination_message_policy: policy.into(),
            ..Default::default()
        };
        let mut pod =
            Pod { spec: Some(PodSpec { containers: vec![container("")], ..Default::default() }), ..Default::default() };
        PodStrategy.default(&mut pod);
        let defaulted = &pod.spec.as_ref().unwrap().containers[0];
        assert_eq!(defaulted.termination_message_policy, "File");
        assert_eq!(defaulted.termination_message_path, "/dev/termination-log");
        let spec = PodSpec { containers: vec![container("FallbackToLogs")], ..Default::default() };
        let errors: Vec<String> = validate_pod_spec(&spec, "spec").iter().map(|e| e.to_string()).collect();
        assert!(
            errors
                .iter()
                .any(|e| e
                    .starts_with("spec.containers[0].terminationMessagePolicy: Unsupported value: \"FallbackToLogs\"")),
            "{errors:?}"
        );
        let spec = PodSpec { containers: vec![container("FallbackToLogsOnError")], ..Default::default() };
        assert!(!validate_pod_spec(&spec, "spec").iter().any(|e| e.path.contains("terminationMessagePolicy")));
    }

    #[test]
    fn what_the_kubelet_cannot_give_is_refused_by_field() {
        let spec = PodSpec {
            share_process_namespace: Some(true),
            host_pid: true,
            host_ipc: true,
            host_users: Some(false),
            runtime_class_name: Some(String::new()),
            os: Some(proto::core::v1::PodOs { name: "windows".into() }),
            ..Default::default()
        };
        let errors: Vec<String> =
            unsupported_by_kubelet(&spec, "spec.template.spec").iter().map(|e| e.to_string()).collect();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(
            errors[0].starts_with("spec.template.spec.shareProcessNamespace: Invalid value: true: ShareProcessNamespace and HostPID cannot both be enabled"),
            "{errors:?}"
        );
        assert!(
            errors[1].starts_with("spec.template.spec.hostUsers: Forbidden: a user namespace per pod"),
            "{errors:?}"
        );
        assert!(errors[2].starts_with("spec.template.spec.os.name: Unsupported value: \"windows\""), "{errors:?}");
        let shared = PodSpec { share_process_namespace: Some(true), host_ipc: true, ..Default::default() };
        assert!(unsupported_by_kubelet(&shared, "spec").is_empty(), "shareProcessNamespace and hostIPC are supported");
    }
}
