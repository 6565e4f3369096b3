//! Which PersistentVolume a claim may have: the rules Kubernetes' binder applies
//! (`pkg/controller/volume/persistentvolume/index.go`), as pure functions of the
//! objects so that they can be tested without a cluster.
//!
//! A volume fits a claim when its capacity covers the request, its access modes
//! include every requested one, its volumeMode is the claim's, it is not being
//! deleted, and — unless it was pre-bound to this very claim — it is Available,
//! claimed by nobody, of the claim's storage class and matches the claim's
//! selector. Among fitting volumes the binder takes the "minimum fit": the one with
//! the fewest access modes, then the smallest capacity, so that big or versatile
//! volumes stay free for claims that need them.

use std::borrow::Borrow;
use std::fmt;

use proto::Resource;
use proto::core::v1::{PersistentVolume, PersistentVolumeClaim};
use proto::labels::Selector;
use proto::quantity::Amount;

/// The annotation Kubernetes used before `storageClassName`; it still wins when set.
const BETA_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";

/// Why a volume cannot serve a claim, in the words an Event shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    TooSmall {
        capacity: String,
        requested: String,
    },
    StorageClass {
        volume: String,
        claim: String,
    },
    AccessModes {
        missing: Vec<String>,
    },
    VolumeMode {
        volume: String,
        claim: String,
    },
    Selector,
    /// The claim's request or the volume's capacity is missing or not a quantity.
    BadSize(String),
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::TooSmall { capacity, requested } => {
                write!(f, "requested PV is too small (capacity {capacity} < request {requested})")
            }
            Mismatch::StorageClass { volume, claim } => {
                write!(f, "storageClassName does not match (volume {volume:?}, claim {claim:?})")
            }
            Mismatch::AccessModes { missing } => {
                write!(f, "the volume lacks the requested access modes {}", missing.join(", "))
            }
            Mismatch::VolumeMode { volume, claim } => {
                write!(f, "incompatible volumeMode (volume {volume}, claim {claim})")
            }
            Mismatch::Selector => write!(f, "the volume's labels do not match the claim's selector"),
            Mismatch::BadSize(why) => f.write_str(why),
        }
    }
}

/// The storage class a claim asks for; "" (also when unset) means none.
pub fn claim_class(claim: &PersistentVolumeClaim) -> &str {
    if let Some(class) = claim.metadata().annotations.get(BETA_STORAGE_CLASS) {
        return class;
    }
    claim.spec.as_ref().and_then(|s| s.storage_class_name.as_deref()).unwrap_or("")
}

/// The storage class a volume belongs to; "" means none.
pub fn volume_class(volume: &PersistentVolume) -> &str {
    if let Some(class) = volume.metadata().annotations.get(BETA_STORAGE_CLASS) {
        return class;
    }
    volume.spec.as_ref().map_or("", |s| s.storage_class_name.as_str())
}

/// The claim's storage request.
pub fn requested(claim: &PersistentVolumeClaim) -> Result<Amount, Mismatch> {
    let quantity = claim
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.get("storage"))
        .ok_or_else(|| Mismatch::BadSize("the claim has no spec.resources.requests[storage]".into()))?;
    Amount::parse(&quantity.string).map_err(|e| Mismatch::BadSize(format!("the claim's storage request: {e}")))
}

/// The volume's storage capacity.
pub fn capacity(volume: &PersistentVolume) -> Result<Amount, Mismatch> {
    let quantity = volume
        .spec
        .as_ref()
        .and_then(|s| s.capacity.get("storage"))
        .ok_or_else(|| Mismatch::BadSize("the volume has no spec.capacity[storage]".into()))?;
    Amount::parse(&quantity.string).map_err(|e| Mismatch::BadSize(format!("the volume's capacity: {e}")))
}

fn volume_mode_of(mode: Option<&str>) -> &str {
    // Unset means Filesystem, for both kinds.
    mode.filter(|m| !m.is_empty()).unwrap_or("Filesystem")
}

fn check_volume_mode(volume: &PersistentVolume, claim: &PersistentVolumeClaim) -> Result<(), Mismatch> {
    let volume_mode = volume_mode_of(volume.spec.as_ref().and_then(|s| s.volume_mode.as_deref()));
    let claim_mode = volume_mode_of(claim.spec.as_ref().and_then(|s| s.volume_mode.as_deref()));
    if volume_mode == claim_mode {
        Ok(())
    } else {
        Err(Mismatch::VolumeMode { volume: volume_mode.into(), claim: claim_mode.into() })
    }
}

fn check_access_modes(volume: &PersistentVolume, claim: &PersistentVolumeClaim) -> Result<(), Mismatch> {
    let offered = volume.spec.as_ref().map(|s| s.access_modes.as_slice()).unwrap_or_default();
    let wanted = claim.spec.as_ref().map(|s| s.access_modes.as_slice()).unwrap_or_default();
    let missing: Vec<String> = wanted.iter().filter(|m| !offered.contains(m)).cloned().collect();
    if missing.is_empty() { Ok(()) } else { Err(Mismatch::AccessModes { missing }) }
}

fn check_size(volume: &PersistentVolume, claim: &PersistentVolumeClaim) -> Result<(), Mismatch> {
    let (have, want) = (capacity(volume)?, requested(claim)?);
    if have >= want {
        Ok(())
    } else {
        Err(Mismatch::TooSmall { capacity: have.to_string(), requested: want.to_string() })
    }
}

/// Whether the volume's claimRef names this claim (and, once it records a uid, this
/// incarnation of it).
pub fn is_bound_to(volume: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let Some(reference) = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else { return false };
    let meta = claim.metadata();
    reference.name == meta.name
        && reference.namespace == meta.namespace
        && (reference.uid.is_empty() || reference.uid == meta.uid)
}

/// The checks Kubernetes makes when a claim names its volume (spec.volumeName):
/// size, storage class and volumeMode. (Access modes and selector are the user's
/// business once they picked the volume by name.)
pub fn check_requested_volume(volume: &PersistentVolume, claim: &PersistentVolumeClaim) -> Result<(), Mismatch> {
    check_size(volume, claim)?;
    let (volume_class, claim_class) = (volume_class(volume), claim_class(claim));
    if volume_class != claim_class {
        return Err(Mismatch::StorageClass { volume: volume_class.into(), claim: claim_class.into() });
    }
    check_volume_mode(volume, claim)
}

/// Whether `volume` may be bound to `claim`, and why not.
pub fn check(volume: &PersistentVolume, claim: &PersistentVolumeClaim) -> Result<(), Mismatch> {
    check_size(volume, claim)?;
    check_access_modes(volume, claim)?;
    check_volume_mode(volume, claim)?;
    if is_bound_to(volume, claim) {
        // Pre-bound by an administrator: class and selector do not apply.
        return Ok(());
    }
    let (volume_class, claim_class) = (volume_class(volume), claim_class(claim));
    if volume_class != claim_class {
        return Err(Mismatch::StorageClass { volume: volume_class.into(), claim: claim_class.into() });
    }
    if let Some(selector) = claim.spec.as_ref().and_then(|s| s.selector.as_ref()) {
        // A selector that does not parse selects nothing, so such a claim stays Pending.
        let matches = Selector::from_label_selector(selector).is_ok_and(|s| s.matches(&volume.metadata().labels));
        if !matches {
            return Err(Mismatch::Selector);
        }
    }
    Ok(())
}

/// Whether the volume is free to be taken: Available, no claimRef, not being deleted.
fn is_available(volume: &PersistentVolume) -> bool {
    volume.metadata().deletion_timestamp.is_none()
        && volume.spec.as_ref().is_some_and(|s| s.claim_ref.is_none())
        && volume.status.as_ref().is_some_and(|s| s.phase == "Available")
}

/// The volume the binder gives `claim`: one pre-bound to it if that one fits,
/// otherwise the minimum fit among the available volumes.
pub fn best_match<'a, V>(claim: &PersistentVolumeClaim, volumes: &'a [V]) -> Option<&'a V>
where
    V: Borrow<PersistentVolume>,
{
    let fits = |v: &V| check(v.borrow(), claim).is_ok();
    let pre_bound = |v: &V| {
        let v: &PersistentVolume = v.borrow();
        is_bound_to(v, claim) && v.metadata().deletion_timestamp.is_none()
    };
    if let Some(volume) = volumes.iter().find(|v| pre_bound(v) && fits(v)) {
        return Some(volume);
    }
    let rank = |v: &V| {
        let v: &PersistentVolume = v.borrow();
        let modes = v.spec.as_ref().map_or(0, |s| s.access_modes.len());
        // `fits` already parsed the capacity; the name breaks ties so the choice is stable.
        (modes, capacity(v).unwrap_or_default(), v.metadata().name.clone())
    };
    volumes.iter().filter(|v| is_available((*v).borrow()) && fits(v)).min_by_key(|v| rank(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::core::v1::{
        HostPathVolumeSource, ObjectReference, PersistentVolumeClaimSpec, PersistentVolumeSpec, PersistentVolumeStatus,
        VolumeResourceRequirements,
    };
    use proto::meta::v1::{LabelSelector, LabelSelectorRequirement, ObjectMeta, Quantity, Time};

    fn q(s: &str) -> Quantity {
        Quantity { string: s.into() }
    }

    fn pv(name: &str, size: &str, modes: &[&str], class: &str) -> PersistentVolume {
        PersistentVolume {
            metadata: Some(ObjectMeta { name: name.into(), ..Default::default() }),
            spec: Some(PersistentVolumeSpec {
                capacity: [("storage".to_string(), q(size))].into_iter().collect(),
                access_modes: modes.iter().map(|m| m.to_string()).collect(),
                storage_class_name: class.into(),
                host_path: Some(HostPathVolumeSource { path: format!("/tmp/{name}"), r#type: None }),
                volume_mode: Some("Filesystem".into()),
                ..Default::default()
            }),
            status: Some(PersistentVolumeStatus { phase: "Available".into(), ..Default::default() }),
        }
    }

    fn pvc(name: &str, size: &str, modes: &[&str], class: Option<&str>) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: Some(ObjectMeta {
                name: name.into(),
                namespace: "default".into(),
                uid: format!("uid-{name}"),
                ..Default::default()
            }),
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: modes.iter().map(|m| m.to_string()).collect(),
                resources: Some(VolumeResourceRequirements {
                    requests: [("storage".to_string(), q(size))].into_iter().collect(),
                    ..Default::default()
                }),
                storage_class_name: class.map(str::to_string),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn name(v: Option<&PersistentVolume>) -> Option<&str> {
        v.map(|v| v.metadata().name.as_str())
    }

    const RWO: &[&str] = &["ReadWriteOnce"];

    #[test]
    fn the_smallest_fitting_volume_wins() {
        let volumes = vec![
            pv("big", "10Gi", RWO, ""),
            pv("tiny", "500Mi", RWO, ""),
            pv("snug", "2Gi", RWO, ""),
            pv("medium", "5Gi", RWO, ""),
            pv("other-class", "1Gi", RWO, "fast"),
            pv("read-only", "1Gi", &["ReadOnlyMany"], ""),
        ];
        let claim = pvc("c", "1Gi", RWO, None);
        assert_eq!(name(best_match(&claim, &volumes)), Some("snug"));
        // Exact quantities: 1Gi is 1073741824, more than 1G.
        let volumes = vec![pv("decimal", "1G", RWO, ""), pv("binary", "1Gi", RWO, "")];
        assert_eq!(name(best_match(&claim, &volumes)), Some("binary"));
    }

    #[test]
    fn fewer_access_modes_beat_a_smaller_size() {
        let volumes =
            vec![pv("versatile", "1Gi", &["ReadWriteOnce", "ReadWriteMany"], ""), pv("plain", "5Gi", RWO, "")];
        assert_eq!(name(best_match(&pvc("c", "1Gi", RWO, None), &volumes)), Some("plain"));
        let both = pvc("c", "1Gi", &["ReadWriteOnce", "ReadWriteMany"], None);
        assert_eq!(name(best_match(&both, &volumes)), Some("versatile"));
    }

    #[test]
    fn storage_class_must_be_equal_and_unset_means_none() {
        let volumes = vec![pv("none", "1Gi", RWO, ""), pv("fast", "1Gi", RWO, "fast")];
        assert_eq!(name(best_match(&pvc("c", "1Gi", RWO, Some("fast")), &volumes)), Some("fast"));
        assert_eq!(name(best_match(&pvc("c", "1Gi", RWO, Some("")), &volumes)), Some("none"));
        assert_eq!(name(best_match(&pvc("c", "1Gi", RWO, None), &volumes)), Some("none"));
        assert_eq!(best_match(&pvc("c", "1Gi", RWO, Some("slow")), &volumes), None);
        let mut annotated = pv("beta", "1Gi", RWO, "");
        annotated.metadata_mut().annotations.insert(BETA_STORAGE_CLASS.into(), "slow".into());
        assert_eq!(volume_class(&annotated), "slow");
    }

    #[test]
    fn unavailable_claimed_or_deleted_volumes_are_skipped() {
        let mut pending = pv("pending", "1Gi", RWO, "");
        pending.status.as_mut().unwrap().phase = "Pending".into();
        let mut claimed = pv("claimed", "1Gi", RWO, "");
        claimed.spec.as_mut().unwrap().claim_ref =
            Some(ObjectReference { name: "someone".into(), namespace: "default".into(), ..Default::default() });
        let mut deleted = pv("deleted", "1Gi", RWO, "");
        deleted.metadata_mut().deletion_timestamp = Some(Time::now_seconds());
        let volumes = vec![pending, claimed, deleted];
        assert_eq!(best_match(&pvc("c", "1Gi", RWO, None), &volumes), None);
    }

    #[test]
    fn a_pre_bound_volume_is_taken_even_if_bigger_and_of_another_class() {
        let mut reserved = pv("reserved", "8Gi", RWO, "gold");
        reserved.status.as_mut().unwrap().phase = "Available".into();
        reserved.spec.as_mut().unwrap().claim_ref =
            Some(ObjectReference { name: "c".into(), namespace: "default".into(), ..Default::default() });
        let volumes = vec![pv("small", "1Gi", RWO, ""), reserved];
        let claim = pvc("c", "1Gi", RWO, None);
        assert_eq!(name(best_match(&claim, &volumes)), Some("reserved"));
        // A claimRef recording another incarnation's uid is someone else's.
        let mut other = volumes.clone();
        other[1].spec.as_mut().unwrap().claim_ref.as_mut().unwrap().uid = "old-uid".into();
        assert_eq!(name(best_match(&claim, &other)), Some("small"));
        // Still too small is still too small.
        assert!(matches!(check(&volumes[1], &pvc("c", "9Gi", RWO, None)), Err(Mismatch::TooSmall { .. })));
    }

    #[test]
    fn selector_and_volume_mode_filter() {
        let mut labelled = pv("ssd", "4Gi", RWO, "");
        labelled.metadata_mut().labels.insert("disk".into(), "ssd".into());
        let volumes = vec![pv("plain", "1Gi", RWO, ""), labelled];
        let mut claim = pvc("c", "1Gi", RWO, None);
        claim.spec.as_mut().unwrap().selector = Some(LabelSelector {
            match_labels: [("disk".into(), "ssd".into())].into_iter().collect(),
            ..Default::default()
        });
        assert_eq!(name(best_match(&claim, &volumes)), Some("ssd"));
        claim.spec.as_mut().unwrap().selector = Some(LabelSelector {
            match_expressions: vec![LabelSelectorRequirement {
                key: "disk".into(),
                operator: "NotIn".into(),
                values: vec!["ssd".into()],
            }],
            ..Default::default()
        });
        assert_eq!(name(best_match(&claim, &volumes)), Some("plain"));
        assert_eq!(check(&volumes[1], &claim), Err(Mismatch::Selector));

        let mut block = pvc("b", "1Gi", RWO, None);
        block.spec.as_mut().unwrap().volume_mode = Some("Block".into());
        assert_eq!(best_match(&block, &volumes), None);
        let mut unset = pv("unset", "1Gi", RWO, "");
        unset.spec.as_mut().unwrap().volume_mode = None;
        assert!(check(&unset, &pvc("c", "1Gi", RWO, None)).is_ok(), "unset volumeMode is Filesystem");
    }

    #[test]
    fn a_requested_volume_is_checked_for_size_class_and_mode_only() {
        let claim = pvc("c", "1Gi", RWO, Some("fast"));
        assert!(check_requested_volume(&pv("v", "1Gi", &["ReadOnlyMany"], "fast"), &claim).is_ok());
        assert_eq!(
            check_requested_volume(&pv("v", "1Gi", RWO, ""), &claim),
            Err(Mismatch::StorageClass { volume: "".into(), claim: "fast".into() })
        );
        let small = check_requested_volume(&pv("v", "512Mi", RWO, "fast"), &claim).unwrap_err();
        assert_eq!(small.to_string(), "requested PV is too small (capacity 512Mi < request 1Gi)");
    }
}
