//! PersistentVolumes and PersistentVolumeClaims: phases start Pending (claims) or
//! Available-to-be (volumes), sizes and access modes are required, and both get
//! their in-use protection finalizer on create.

use proto::codec::FieldError;
use proto::core::v1::{PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimStatus, PersistentVolumeStatus};
use proto::quantity::Amount;

use crate::registry::{NameRule, Strategy};

/// Finalizers Kubernetes' StorageObjectInUseProtection admission puts on every new
/// volume and claim; the controller-manager's pv- and pvc-protection controllers
/// remove them once nothing uses the object, so an object in use outlives its deletion.
const PV_PROTECTION: &str = "kubernetes.io/pv-protection";
const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";

fn protect(meta: &mut Option<proto::meta::v1::ObjectMeta>, finalizer: &str) {
    let finalizers = &mut meta.get_or_insert_with(Default::default).finalizers;
    if !finalizers.iter().any(|f| f == finalizer) {
        finalizers.push(finalizer.to_string());
    }
}

const ACCESS_MODES: [&str; 4] = ["ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"];

fn validate_access_modes(modes: &[String], path: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if modes.is_empty() {
        errors.push(FieldError::required(path, "at least 1 access mode is required"));
    }
    for (i, mode) in modes.iter().enumerate() {
        if !ACCESS_MODES.contains(&mode.as_str()) {
            errors.push(FieldError::not_supported(format!("{path}[{i}]"), mode, &ACCESS_MODES));
        }
    }
    errors
}

fn validate_storage(
    amounts: &std::collections::BTreeMap<String, proto::meta::v1::Quantity>,
    path: &str,
) -> Vec<FieldError> {
    match amounts.get("storage") {
        None => vec![FieldError::required(format!("{path}[storage]"), "")],
        Some(q) => match Amount::parse(&q.string) {
            Ok(amount) if amount <= Amount::zero() => {
                vec![FieldError::invalid(format!("{path}[storage]"), &q.string, "must be greater than zero")]
            }
            _ => Vec::new(),
        },
    }
}

pub struct PersistentVolumeStrategy;

impl Strategy<PersistentVolume> for PersistentVolumeStrategy {
    fn name_rule(&self) -> NameRule {
        NameRule::Subdomain
    }

    fn prepare_for_create(&self, pv: &mut PersistentVolume) {
        pv.status = Some(PersistentVolumeStatus { phase: "Pending".to_string(), ..Default::default() });
        protect(&mut pv.metadata, PV_PROTECTION);
    }

    fn default(&self, pv: &mut PersistentVolume) {
        let spec = pv.spec.get_or_insert_with(Default::default);
        if spec.persistent_volume_reclaim_policy.is_empty() {
            spec.persistent_volume_reclaim_policy = "Retain".to_string();
        }
        spec.volume_mode.get_or_insert_with(|| "Filesystem".to_string());
    }

    fn validate(&self, pv: &PersistentVolume) -> Vec<FieldError> {
        let Some(spec) = &pv.spec else {
            return vec![FieldError::required("spec", "")];
        };
        let mut errors = validate_access_modes(&spec.access_modes, "spec.accessModes");
        errors.extend(validate_storage(&spec.capacity, "spec.capacity"));
        let sources = [spec.host_path.is_some(), spec.nfs.is_some(), spec.local.is_some()];
        match sources.iter().filter(|s| **s).count() {
            0 => errors.push(FieldError::required("spec", "must specify a volume type (hostPath, nfs or local)")),
            1 => {}
            _ => errors.push(FieldError::forbidden("spec", "may not specify more than 1 volume type")),
        }
        let policies = ["Retain", "Delete", "Recycle"];
        if !policies.contains(&spec.persistent_volume_reclaim_policy.as_str()) {
            errors.push(FieldError::not_supported(
                "spec.persistentVolumeReclaimPolicy",
                &spec.persistent_volume_reclaim_policy,
                &policies,
            ));
        }
        errors
    }

    fn fields(&self, pv: &PersistentVolume) -> Vec<(&'static str, String)> {
        vec![("status.phase", pv.status.as_ref().map(|s| s.phase.clone()).unwrap_or_default())]
    }

    fn field_names(&self) -> &'static [&'static str] {
        &["status.phase"]
    }
}

pub struct PersistentVolumeClaimStrategy;

impl Strategy<PersistentVolumeClaim> for PersistentVolumeClaimStrategy {
    fn prepare_for_create(&self, pvc: &mut PersistentVolumeClaim) {
        pvc.status = Some(PersistentVolumeClaimStatus { phase: "Pending".to_string(), ..Default::default() });
        protect(&mut pvc.metadata, PVC_PROTECTION);
    }

    fn default(&self, pvc: &mut PersistentVolumeClaim) {
        let spec = pvc.spec.get_or_insert_with(Default::default);
        spec.volume_mode.get_or_insert_with(|| "Filesystem".to_string());
    }

    fn validate(&self, pvc: &PersistentVolumeClaim) -> Vec<FieldError> {
        let Some(spec) = &pvc.spec else {
            return vec![FieldError::required("spec", "")];
        };
        let mut errors = validate_access_modes(&spec.access_modes, "spec.accessModes");
        let requests = spec.resources.as_ref().map(|r| r.requests.clone()).unwrap_or_default();
        errors.extend(validate_storage(&requests, "spec.resources.requests"));
        errors
    }

    /// Once bound, a claim's spec changes only by growing its request.
    fn validate_update(&self, new: &PersistentVolumeClaim, old: &PersistentVolumeClaim) -> Vec<FieldError> {
        let (Some(new_spec), Some(old_spec)) = (&new.spec, &old.spec) else {
            return Vec::new();
        };
        let mut comparable = new_spec.clone();
        comparable.resources = old_spec.resources.clone();
        if old_spec.volume_name.is_empty() {
            comparable.volume_name = old_spec.volume_name.clone();
        }
        if comparable == *old_spec {
            return Vec::new();
        }
        vec![FieldError::forbidden(
            "spec",
            "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
        )]
    }
}
