//! The controllers' kinds: Deployment, ReplicaSet, ReplicationController, StatefulSet,
//! DaemonSet, Job and CronJob. They share pod templates (defaulted and validated as
//! pods are) and selectors that must select their own template.

use std::collections::BTreeMap;

use proto::apps::v1::{
    DaemonSet, DaemonSetUpdateStrategy, Deployment, DeploymentStrategy as UpdateStrategy, ReplicaSet,
    RollingUpdateDaemonSet, RollingUpdateDeployment, RollingUpdateStatefulSetStrategy, StatefulSet,
    StatefulSetUpdateStrategy,
};
use proto::batch::v1::{CronJob, Job, JobSpec};
use proto::codec::FieldError;
use proto::core::v1::{PodTemplateSpec, ReplicationController};
use proto::labels::Selector;
use proto::meta::v1::{IntOrString, LabelSelector};

use super::pods::{default_pod_spec, validate_pod_spec};
use crate::registry::Strategy;

fn default_template(template: &mut Option<PodTemplateSpec>) {
    if let Some(template) = template {
        default_pod_spec(template.spec.get_or_insert_with(Default::default));
    }
}

fn template_labels(template: &Option<PodTemplateSpec>) -> BTreeMap<String, String> {
    template.as_ref().and_then(|t| t.metadata.as_ref()).map(|m| m.labels.clone()).unwrap_or_default()
}

/// A metav1.LabelSelector as a selector; an empty one selects everything.
pub fn selector_of(selector: &LabelSelector) -> Result<Selector, String> {
    Selector::from_label_selector(selector).map_err(|e| e.to_string())
}

/// The template and the selector of a controller that owns pods by label.
fn validate_template(
    template: &Option<PodTemplateSpec>,
    selector: Option<&LabelSelector>,
    restart_policies: &[&str],
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let Some(template) = template else {
        return vec![FieldError::required("spec.template", "")];
    };
    match selector {
        None => errors.push(FieldError::required("spec.selector", "")),
        Some(selector) if selector.match_labels.is_empty() && selector.match_expressions.is_empty() => {
            errors.push(FieldError::invalid("spec.selector", "{}", "empty selector is invalid for deployment"))
        }
        Some(selector) => match selector_of(selector) {
            Err(e) => errors.push(FieldError::invalid("spec.selector", "", &e)),
            Ok(parsed) if !parsed.matches(&template_labels(&Some(template.clone()))) => {
                errors.push(FieldError::invalid(
                    "spec.template.metadata.labels",
                    template_labels(&Some(template.clone())),
                    "`selector` does not match template `labels`",
                ));
            }
            Ok(_) => {}
        },
    }
    if let Some(spec) = &template.spec {
        for error in validate_pod_spec(spec, "spec.template.spec") {
            if !error.path.ends_with("restartPolicy") {
                errors.push(error);
            }
        }
        if !restart_policies.contains(&spec.restart_policy.as_str()) {
            errors.push(FieldError::not_supported(
                "spec.template.spec.restartPolicy",
                &spec.restart_policy,
                restart_policies,
            ));
        }
    } else {
        errors.push(FieldError::required("spec.template.spec", ""));
    }
    errors
}

fn validate_replicas(replicas: Option<i32>) -> Vec<FieldError> {
    match replicas {
        Some(n) if n < 0 => vec![FieldError::invalid("spec.replicas", n, "must be greater than or equal to 0")],
        _ => Vec::new(),
    }
}

/// An int-or-percent: a non-negative integer or "N%".
fn validate_int_or_percent(value: &Option<IntOrString>, path: &str) -> Vec<FieldError> {
    let Some(value) = value else {
        return Vec::new();
    };
    if let Some(n) = value.as_int() {
        if n < 0 {
            return vec![FieldError::invalid(path, n, "must be greater than or equal to 0")];
        }
    } else if let Some(text) = value.as_str() {
        let problems = proto::validation::is_percent(text);
        if !problems.is_empty() {
            return vec![FieldError::invalid(
                path,
                text,
                "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%')",
            )];
        }
    }
    Vec::new()
}

fn is_zero(value: &Option<IntOrString>) -> bool {
    value.as_ref().is_none_or(|v| v.as_int() == Some(0) || v.as_str() == Some("0%"))
}

fn selector_immutable(new: Option<&LabelSelector>, old: Option<&LabelSelector>) -> Vec<FieldError> {
    if new != old {
        return vec![FieldError::invalid("spec.selector", "", "field is immutable")];
    }
    Vec::new()
}

pub struct DeploymentStrategy;

impl Strategy<Deployment> for DeploymentStrategy {
    fn default(&self, deployment: &mut Deployment) {
        let spec = deployment.spec.get_or_insert_with(Default::default);
        spec.replicas.get_or_insert(1);
        spec.revision_history_limit.get_or_insert(10);
        spec.progress_deadline_seconds.get_or_insert(600);
        let strategy = spec.strategy.get_or_insert_with(UpdateStrategy::default);
        if strategy.r#type.is_empty() {
            strategy.r#type = "RollingUpdate".to_string();
        }
        if strategy.r#type == "RollingUpdate" {
            let rolling = strategy.rolling_update.get_or_insert_with(RollingUpdateDeployment::default);
            rolling.max_unavailable.get_or_insert_with(|| IntOrString::string("25%"));
            rolling.max_surge.get_or_insert_with(|| IntOrString::string("25%"));
        }
        default_template(&mut spec.template);
    }

    fn validate(&self, deployment: &Deployment) -> Vec<FieldError> {
        let Some(spec) = &deployment.spec else {
            return vec![FieldError::required("spec", "")];
        };
        let mut errors = validate_replicas(spec.replicas);
        errors.extend(validate_template(&spec.template, spec.selector.as_ref(), &["Always"]));
        if let Some(strategy) = &spec.strategy {
            match strategy.r#type.as_str() {
                "Recreate" if strategy.rolling_update.is_some() => errors.push(FieldError::forbidden(
                    "spec.strategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                )),
                "Recreate" => {}
                "RollingUpdate" => {
                    if let Some(rolling) = &strategy.rolling_update {
                        errors.extend(validate_int_or_percent(
                            &rolling.max_unavailable,
                            "spec.strategy.rollingUpdate.maxUnavailable",
                        ));
                        errors.extend(validate_int_or_percent(
                            &rolling.max_surge,
                            "spec.strategy.rollingUpdate.maxSurge",
                        ));
                        if is_zero(&rolling.max_unavailable) && is_zero(&rolling.max_surge) {
                            errors.push(FieldError::invalid(
                                "spec.strategy.rollingUpdate.maxUnavailable",
                                0,
                                "may not be 0 when `maxSurge` is 0",
                            ));
                        }
                    }
                }
                other => {
                    errors.push(FieldError::not_supported("spec.strategy.type", other, &["Recreate", "RollingUpdate"]))
                }
            }
        }
        if let (Some(deadline), min_ready) = (spec.progress_deadline_seconds, spec.min_ready_seconds)
            && deadline <= min_ready
        {
            errors.push(FieldError::invalid(
                "spec.progressDeadlineSeconds",
                deadline,
                "must be greater than minReadySeconds",
            ));
        }
        errors
    }

    fn validate_update(&self, new: &Deployment, old: &Deployment) -> Vec<FieldError> {
        let selector = |d: &Deployment| d.spec.as_ref().and_then(|s| s.selector.clone());
        selector_immutable(selector(new).as_ref(), selector(old).as_ref())
    }
}

pub struct ReplicaSetStrategy;

impl Strategy<ReplicaSet> for ReplicaSetStrategy {
    fn default(&self, rs: &mut ReplicaSet) {
        let spec = rs.spec.get_or_insert_with(Default::default);
        spec.replicas.get_or_insert(1);
        default_template(&mut spec.template);
    }

    fn validate(&self, rs: &ReplicaSet) -> Vec<FieldError> {
        let Some(spec) = &rs.spec else {
            return vec![FieldError::required("spec", "")];
        };
        let mut errors = validate_replicas(spec.replicas);
        errors.extend(validate_template(&spec.template, spec.selector.as_ref(), &["Always"]));
        errors
    }

    fn validate_update(&self, new: &ReplicaSet, old: &ReplicaSet) -> Vec<FieldError> {
        let selector = |d: &ReplicaSet| d.spec.as_ref().and_then(|s| s.selector.clone());
        selector_immutable(selector(new).as_ref(), selector(old).as_ref())
    }
}

pub struct ReplicationControllerStrategy;

impl Strategy<ReplicationController> for ReplicationControllerStrategy {
    /// An RC's selector defaults to its template's labels, and the other way round.
    fn default(&self, rc: &mut ReplicationController) {
        let spec = rc.spec.get_or_insert_with(Default::default);
        spec.replicas.get_or_insert(1);
        let labels = template_labels(&spec.template);
        if spec.selector.is_empty() {
            spec.selector = labels.clone();
        }
        if labels.is_empty()
            && let Some(template) = &mut spec.template
        {
            template.metadata.get_or_insert_with(Default::default).labels = spec.selector.clone();
        }
        default_template(&mut spec.template);
    }

    fn validate(&self, rc: &ReplicationController) -> Vec<FieldError> {
        let Some(spec) = &rc.spec else {
            return vec![FieldError::required("spec", "")];
        };
        let mut errors = validate_replicas(spec.replicas);
        let selector = LabelSelector { match_labels: spec.selector.clone(), ..Default::default() };
        errors.extend(validate_template(&spec.template, Some(&selector), &["Always"]));
        errors
    }
}

pub struct StatefulSetStrategy;

impl Strategy<StatefulSet> for StatefulSetStrategy {
    fn default(&self, set: &mut StatefulSet) {
        let spec = set.spec.get_or_insert_with(Default::default);
        spec.replicas.get_or_insert(1);
        spec.revision_history_limit.get_or_insert(10);
        if spec.pod_management_policy.is_empty() {
            spec.pod_management_policy = "OrderedReady".to_string();
        }
        let strategy = spec.update_strategy.get_or_insert_with(StatefulSetUpdateStrategy::default);
        if strategy.r#type.is_empty() {
            strategy.r#type = "RollingUpdate".to_string();
        }
        if strategy.r#type == "RollingUpdate" {
            let rolling = strategy.rolling_update.get_or_insert_with(RollingUpdateStatefulSetStrategy::default);
            rolling.partition.get_or_insert(0);
        }
        let retention = spec.persistent_volume_claim_retention_policy.get_or_insert_with(Default::default);
        if retention.when_deleted.is_empty() {
            retention.when_deleted = "Retain".to_string();
        }
        if retention.when_scaled.is_empty() {
            retention.when_scaled = "Retain".to_string();
        }
        for claim in &mut spec.volume_claim_templates {
            let claim_spec = claim.spec.get_or_insert_with(Default::default);
            claim_spec.volume_mode.get_or_insert_with(|| "Filesystem".to_string());
        }
        default_template(&mut spec.template);
    }

    fn validate(&self, set: &StatefulSet) -> Vec<FieldError> {
        let Some(spec) = &set.spec else {
            return vec![FieldError::required("spec", "")];
        };
        let mut errors = validate_replicas(spec.replicas);
        // Mounts may name a volumeClaimTemplate: each pod gets that claim as a volume.
        let claims: Vec<String> = spec
            .volume_claim_templates
            .iter()
            .filter_map(|c| c.metadata.as_ref().map(|m| format!("Not found: {:?}", m.name)))
            .collect();
        errors.extend(
            validate_template(&spec.template, spec.selector.as_ref(), &["Always"])
                .into_iter()
                .filter(|e| !(e.path.contains(".volumeMounts[") && claims.contains(&e.message))),
        );
        let policies = ["OrderedReady", "Parallel"];
        if !policies.contains(&spec.pod_management_policy.as_str()) {
            errors.push(FieldError::not_supported("spec.podManagementPolicy", &spec.pod_management_policy, &policies));
        }
        if let Some(strategy) = &spec.update_strategy {
            let types = ["RollingUpdate", "OnDelete"];
            if !types.contains(&strategy.r#type.as_str()) {
                errors.push(FieldError::not_supported("spec.updateStrategy.type", &strategy.r#type, &types));
            }
            if let Some(partition) = strategy.rolling_update.as_ref().and_then(|r| r.partition)
                && partition < 0
            {
                errors.push(FieldError::invalid(
                    "spec.updateStrategy.rollingUpdate.partition",
                    partition,
                    "must be greater than or equal to 0",
                ));
            }
        }
        for (i, claim) in spec.volume_claim_templates.iter().enumerate() {
            let name = claim.metadata.as_ref().map(|m| m.name.as_str()).unwrap_or("");
            if name.is_empty() {
                errors.push(FieldError::required(format!("spec.volumeClaimTemplates[{i}].metadata.name"), ""));
            }
        }
        errors
    }

    /// Kubernetes lets only replicas, template, updateStrategy, minReadySeconds,
    /// persistentVolumeClaimRetentionPolicy and ordinals change.
    fn validate_update(&self, new: &StatefulSet, old: &StatefulSet) -> Vec<FieldError> {
        let (Some(new_spec), Some(old_spec)) = (&new.spec, &old.spec) else {
            return Vec::new();
        };
        let mut comparable = new_spec.clone();
        comparable.replicas = old_spec.replicas;
        comparable.template = old_spec.template.clone();
        comparable.update_strategy = old_spec.update_strategy.clone();
        comparable.min_ready_seconds = old_spec.min_ready_seconds;
        comparable.persistent_volume_claim_retention_policy = old_spec.persistent_volume_claim_retention_policy.clone();
        comparable.ordinals = old_spec.ordinals;
        comparable.revision_history_limit = old_spec.revision_history_limit;
        if comparable == *old_spec {
            return Vec::new();
        }
        vec![FieldError::forbidden(
            "spec",
            "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
        )]
    }
}

pub struct DaemonSetStrategy;

impl Strategy<DaemonSet> for DaemonSetStrategy {
    fn default(&self, set: &mut DaemonSet) {
        let spec = set.spec.get_or_insert_with(Default::default);
        spec.revision_history_limit.get_or_insert(10);
        let strategy = spec.update_strategy.get_or_insert_with(DaemonSetUpdateStrategy::default);
        if strategy.r#type.is_empty() {
            strategy.r#type = "RollingUpdate".to_string();
        }
        if strategy.r#type == "RollingUpdate" {
            let rolling = strategy.rolling_update.get_or_insert_with(RollingUpdateDaemonSet::default);
            rolling.max_unavailable.get_or_insert_with(|| IntOrString::int(1));
            rolling.max_surge.get_or_insert_with(|| IntOrString::int(0));
        }
        default_template(&mut spec.template);
    }

    fn validate(&self, set: &DaemonSet) -> Vec<FieldError> {
        let Some(spec) = &set.spec else {
            return vec![FieldError::required("spec", "")];
        };
        let mut errors = validate_template(&spec.template, spec.selector.as_ref(), &["Always"]);
        if let Some(strategy) = &spec.update_strategy {
            let types = ["RollingUpdate", "OnDelete"];
            if !types.contains(&strategy.r#type.as_str()) {
                errors.push(FieldError::not_supported("spec.updateStrategy.type", &strategy.r#type, &types));
            }
            if let Some(rolling) = &strategy.rolling_update {
                let path = "spec.updateStrategy.rollingUpdate";
                errors.extend(validate_int_or_percent(&rolling.max_unavailable, &format!("{path}.maxUnavailable")));
                errors.extend(validate_int_or_percent(&rolling.max_surge, &format!("{path}.maxSurge")));
            }
        }
        errors
    }

    fn validate_update(&self, new: &DaemonSet, old: &DaemonSet) -> Vec<FieldError> {
        let selector = |d: &DaemonSet| d.spec.as_ref().and_then(|s| s.selector.clone());
        selector_immutable(selector(new).as_ref(), selector(old).as_ref())
    }
}

/// The label a Job's pods carry and its selector matches, from its uid.
const CONTROLLER_UID: &str = "batch.kubernetes.io/controller-uid";
const JOB_NAME: &str = "batch.kubernetes.io/job-name";

fn default_job_spec(spec: &mut JobSpec) {
    if spec.completions.is_none() && spec.parallelism.is_none() {
        spec.completions = Some(1);
    }
    spec.parallelism.get_or_insert(1);
    spec.backoff_limit.get_or_insert(6);
    spec.completion_mode.get_or_insert_with(|| "NonIndexed".to_string());
    spec.suspend.get_or_insert(false);
    spec.manual_selector.get_or_insert(false);
    if let Some(template) = &mut spec.template {
        // A Job's restartPolicy has no default: Kubernetes requires it.
        let policy = template.spec.as_ref().map(|s| s.restart_policy.clone()).unwrap_or_default();
        let pod = template.spec.get_or_insert_with(Default::default);
        default_pod_spec(pod);
        pod.restart_policy = policy;
    }
}

fn validate_job_spec(spec: &JobSpec, with_selector: bool) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (path, value) in [
        ("spec.parallelism", spec.parallelism),
        ("spec.completions", spec.completions),
        ("spec.backoffLimit", spec.backoff_limit),
    ] {
        if let Some(n) = value.filter(|n| *n < 0) {
            errors.push(FieldError::invalid(path, n, "must be greater than or equal to 0"));
        }
    }
    if let Some(deadline) = spec.active_deadline_seconds.filter(|d| *d <= 0) {
        errors.push(FieldError::invalid("spec.activeDeadlineSeconds", deadline, "must be greater than 0"));
    }
    let selector = if with_selector { spec.selector.as_ref() } else { None };
    let mut template_errors = match selector {
        Some(_) => validate_template(&spec.template, selector, &["OnFailure", "Never"]),
        None => {
            // CronJob templates and generated selectors: only the pod template.
            let everything = LabelSelector::default();
            validate_template(&spec.template, Some(&everything), &["OnFailure", "Never"])
                .into_iter()
                .filter(|e| e.path != "spec.selector")
                .collect()
        }
    };
    errors.append(&mut template_errors);
    errors
}

pub struct JobStrategy;

impl Strategy<Job> for JobStrategy {
    /// Without manualSelector, the Job selects its pods by its own uid, as Kubernetes does.
    fn default(&self, job: &mut Job) {
        let meta = job.metadata.clone().unwrap_or_default();
        let spec = job.spec.get_or_insert_with(Default::default);
        default_job_spec(spec);
        if spec.manual_selector != Some(true) && spec.selector.is_none() && !meta.uid.is_empty() {
            let mut labels = BTreeMap::new();
            labels.insert(CONTROLLER_UID.to_string(), meta.uid.clone());
            spec.selector = Some(LabelSelector { match_labels: labels.clone(), ..Default::default() });
            labels.insert(JOB_NAME.to_string(), meta.name.clone());
            labels.insert("controller-uid".to_string(), meta.uid.clone());
            labels.insert("job-name".to_string(), meta.name.clone());
            if let Some(template) = &mut spec.template {
                template.metadata.get_or_insert_with(Default::default).labels.extend(labels);
            }
        }
    }

    fn validate(&self, job: &Job) -> Vec<FieldError> {
        let Some(spec) = &job.spec else {
            return vec![FieldError::required("spec", "")];
        };
        validate_job_spec(spec, true)
    }

    /// A Job's pod template and selector are fixed once created; completions too.
    fn validate_update(&self, new: &Job, old: &Job) -> Vec<FieldError> {
        let (Some(new_spec), Some(old_spec)) = (&new.spec, &old.spec) else {
            return Vec::new();
        };
        let mut errors = Vec::new();
        if new_spec.template != old_spec.template {
            errors.push(FieldError::invalid("spec.template", "", "field is immutable"));
        }
        errors.extend(selector_immutable(new_spec.selector.as_ref(), old_spec.selector.as_ref()));
        if new_spec.completions != old_spec.completions {
            errors.push(FieldError::immutable("spec.completions", new_spec.completions.unwrap_or(0)));
        }
        errors
    }

    fn fields(&self, job: &Job) -> Vec<(&'static str, String)> {
        let succeeded = job.status.as_ref().map_or(0, |s| s.succeeded);
        vec![("status.successful", succeeded.to_string())]
    }

    fn field_names(&self) -> &'static [&'static str] {
        &["status.successful"]
    }
}

pub struct CronJobStrategy;

impl Strategy<CronJob> for CronJobStrategy {
    fn default(&self, cron: &mut CronJob) {
        let spec = cron.spec.get_or_insert_with(Default::default);
        if spec.concurrency_policy.is_empty() {
            spec.concurrency_policy = "Allow".to_string();
        }
        spec.suspend.get_or_insert(false);
        spec.successful_jobs_history_limit.get_or_insert(3);
        spec.failed_jobs_history_limit.get_or_insert(1);
        if let Some(template) = &mut spec.job_template {
            default_job_spec(template.spec.get_or_insert_with(Default::default));
        }
    }

    fn validate(&self, cron: &CronJob) -> Vec<FieldError> {
        let Some(spec) = &cron.spec else {
            return vec![FieldError::required("spec", "")];
        };
        let mut errors = Vec::new();
        if spec.schedule.trim().is_empty() {
            errors
                .push(FieldError::required("spec.schedule", "a cron schedule such as \"*/5 * * * *\" or \"@hourly\""));
        } else if let Err(e) = proto::cron::Schedule::parse(&spec.schedule) {
            errors.push(FieldError::invalid("spec.schedule", &spec.schedule, &e.to_string()));
        }
        if let Err(e) = proto::cron::time_zone(spec.time_zone.as_deref()) {
            errors.push(FieldError::invalid("spec.timeZone", spec.time_zone.as_deref().unwrap_or(""), &e.to_string()));
        }
        let policies = ["Allow", "Forbid", "Replace"];
        if !policies.contains(&spec.concurrency_policy.as_str()) {
            errors.push(FieldError::not_supported("spec.concurrencyPolicy", &spec.concurrency_policy, &policies));
        }
        match spec.job_template.as_ref().and_then(|t| t.spec.as_ref()) {
            None => errors.push(FieldError::required("spec.jobTemplate.spec", "")),
            Some(job) => {
                for mut error in validate_job_spec(job, false) {
                    error.path = error.path.replacen("spec.", "spec.jobTemplate.spec.", 1);
                    errors.push(error);
                }
            }
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_and_time_zones_are_checked_as_the_controller_reads_them() {
        let cron = |schedule: &str, zone: Option<&str>| CronJob {
            spec: Some(proto::batch::v1::CronJobSpec {
                schedule: schedule.into(),
                time_zone: zone.map(String::from),
                ..Default::default()
            }),
            ..Default::default()
        };
        let problems = |c: &CronJob| -> Vec<String> {
            CronJobStrategy
                .validate(c)
                .into_iter()
                .filter(|e| e.path == "spec.schedule" || e.path == "spec.timeZone")
                .map(|e| e.to_string())
                .collect()
        };
        assert!(problems(&cron("*/5 * * * *", Some("Europe/Berlin"))).is_empty());
        assert!(problems(&cron("0 0 1-15 JAN,FEB MON-FRI", None)).is_empty());
        let out_of_range = problems(&cron("61 * * * *", None));
        assert!(out_of_range.len() == 1 && out_of_range[0].contains("spec.schedule"), "{out_of_range:?}");
        assert!(problems(&cron("* * * *", None))[0].contains("found 4"));
        assert!(problems(&cron("", None))[0].contains("spec.schedule"));
        let zone = problems(&cron("@hourly", Some("Mars/Olympus")));
        assert!(zone.len() == 1 && zone[0].contains("spec.timeZone") && zone[0].contains("IANA"), "{zone:?}");
    }
}
