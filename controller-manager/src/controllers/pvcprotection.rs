//! Claim-in-use protection, as Kubernetes' pvc-protection controller does it. The
//! apiserver puts the kubernetes.io/pvc-protection finalizer on every new claim;
//! deleting a claim then only marks it, and this controller takes the finalizer
//! off once no pod that has not terminated (phase Succeeded or Failed) names the
//! claim in spec.volumes[].persistentVolumeClaim.claimName in its namespace.
//!
//! Claims that lack the finalizer (created before this existed) are given it.
//! Before taking a claim's finalizer off, the pods are listed from the apiserver,
//! not only the cache, so that a pod created a moment ago is not missed.

use std::sync::Arc;

use client::runtime::{Action, Controller, Informer, ObjectKey, key_of};
use client::{Api, ListParams};
use proto::core::v1::{PersistentVolumeClaim, Pod};
use proto::{ApiError, Reason, Resource};

use crate::pods::is_finished;

pub const PVC_FINALIZER: &str = "kubernetes.io/pvc-protection";

/// The claims (`namespace/name`) a pod's volumes name.
fn claims_of(pod: &Pod) -> Vec<ObjectKey> {
    let namespace = &pod.metadata().namespace;
    let volumes = pod.spec.as_ref().map(|s| s.volumes.as_slice()).unwrap_or_default();
    volumes
        .iter()
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .map(|c| format!("{namespace}/{}", c.claim_name))
        .collect()
}

/// Whether the pod may still use the claim's volume.
fn uses(pod: &Pod, claim: &PersistentVolumeClaim) -> bool {
    let meta = claim.metadata();
    pod.metadata().namespace == meta.namespace
        && !is_finished(pod)
        && claims_of(pod).contains(&format!("{}/{}", meta.namespace, meta.name))
}

/// The object with `finalizer` added or removed, or None if it already is so.
pub(crate) fn set_finalizer<K: Resource>(object: &K, finalizer: &str, present: bool) -> Option<K> {
    let has = object.metadata().finalizers.iter().any(|f| f == finalizer);
    if has == present {
        return None;
    }
    let mut updated = object.clone();
    let finalizers = &mut updated.metadata_mut().finalizers;
    if present {
        finalizers.push(finalizer.to_string());
    } else {
        finalizers.retain(|f| f != finalizer);
    }
    Some(updated)
}

/// Conflict and NotFound mean someone else wrote first: the next sync decides again.
pub(crate) fn settle(result: Result<(), ApiError>) -> Result<Action, ApiError> {
    match result {
        Ok(()) => Ok(Action::await_change()),
        Err(e) if e.is(Reason::NotFound) => Ok(Action::await_change()),
        Err(e) if e.is(Reason::Conflict) => Ok(Action::requeue(std::time::Duration::from_millis(100))),
        Err(e) => Err(e),
    }
}

pub struct PvcProtectionController {
    client: client::Client,
    claims: Arc<Informer<PersistentVolumeClaim>>,
    pods: Arc<Informer<Pod>>,
}

impl PvcProtectionController {
    pub fn new(ctx: Arc<crate::context::Context>) -> Arc<Self> {
        Arc::new(PvcProtectionController {
            client: ctx.client.clone(),
            claims: ctx.informers.get::<PersistentVolumeClaim>(),
            pods: ctx.informers.get::<Pod>(),
        })
    }

    pub async fn run(self: Arc<Self>, workers: usize) {
        let controller = Controller::new(self.claims.clone())
            .watches(self.pods.clone(), |pod: &Pod| claims_of(pod))
            .workers(workers);
        controller
            .run(move |_key, claim: Option<Arc<PersistentVolumeClaim>>| {
                let this = self.clone();
                async move {
                    match claim {
                        Some(claim) => settle(this.sync(&claim).await),
                        None => Ok(Action::await_change()),
                    }
                }
            })
            .await;
    }

    async fn sync(&self, claim: &PersistentVolumeClaim) -> Result<(), ApiError> {
        let meta = claim.metadata();
        let api: Api<PersistentVolumeClaim> = Api::namespaced(&self.client, &meta.namespace);
        if meta.deletion_timestamp.is_none() {
            if let Some(updated) = set_finalizer(claim, PVC_FINALIZER, true) {
                api.update(&updated).await?;
            }
            return Ok(());
        }
        let Some(updated) = set_finalizer(claim, PVC_FINALIZER, false) else { return Ok(()) };
        let cached = self.pods.store().by_index(client::runtime::store::BY_NAMESPACE, &meta.namespace);
        if let Some(pod) = cached.iter().find(|p| uses(p, claim)) {
            // The pod's change (finishing, going away) wakes this claim again.
            tracing::debug!(claim = key_of(claim), pod = pod.metadata().name, "claim in use; keeping it");
            return Ok(());
        }
        let live = Api::<Pod>::namespaced(&self.client, &meta.namespace).list(&ListParams::default()).await?;
        if let Some(pod) = live.items.iter().find(|p| uses(p, claim)) {
            tracing::debug!(claim = key_of(claim), pod = pod.metadata().name, "claim in use; keeping it");
            return Ok(());
        }
        api.update(&updated).await?;
        tracing::info!(claim = key_of(claim), "no pod uses the claim; removed its protection finalizer");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::core::v1::{PersistentVolumeClaimVolumeSource, PodSpec, PodStatus, Volume};
    use proto::meta::v1::ObjectMeta;

    fn pod(namespace: &str, claim: &str, phase: &str) -> Pod {
        Pod {
            metadata: Some(ObjectMeta { name: "p".into(), namespace: namespace.into(), ..Default::default() }),
            spec: Some(PodSpec {
                volumes: vec![
                    Volume { name: "scratch".into(), ..Default::default() },
                    Volume {
                        name: "data".into(),
                        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                            claim_name: claim.into(),
                            read_only: false,
                        }),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }),
            status: Some(PodStatus { phase: phase.into(), ..Default::default() }),
        }
    }

    fn claim(namespace: &str, name: &str) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: Some(ObjectMeta { name: name.into(), namespace: namespace.into(), ..Default::default() }),
            ..Default::default()
        }
    }

    #[test]
    fn a_running_or_pending_pod_in_the_namespace_uses_its_claims() {
        let data = claim("team", "data");
        assert!(uses(&pod("team", "data", "Running"), &data));
        assert!(uses(&pod("team", "data", "Pending"), &data));
        assert!(uses(&pod("team", "data", ""), &data), "a pod without a status yet may still start");
        assert!(!uses(&pod("team", "data", "Succeeded"), &data));
        assert!(!uses(&pod("team", "data", "Failed"), &data));
        assert!(!uses(&pod("other", "data", "Running"), &data), "claims are namespaced");
        assert!(!uses(&pod("team", "logs", "Running"), &data));
        assert_eq!(claims_of(&pod("team", "data", "Running")), ["team/data"]);
    }

    #[test]
    fn finalizers_are_added_once_and_removed() {
        let bare = claim("team", "data");
        let with = set_finalizer(&bare, PVC_FINALIZER, true).expect("added");
        assert_eq!(with.metadata().finalizers, [PVC_FINALIZER]);
        assert!(set_finalizer(&with, PVC_FINALIZER, true).is_none());
        let without = set_finalizer(&with, PVC_FINALIZER, false).expect("removed");
        assert!(without.metadata().finalizers.is_empty());
        assert!(set_finalizer(&without, PVC_FINALIZER, false).is_none());
    }
}
