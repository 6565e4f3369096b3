//! The binder's two loops, as Kubernetes' PersistentVolume controller has them:
//!
//! - a claim loop binds each unbound claim to the volume `matching` picks (or the
//!   one it names in spec.volumeName) and keeps bound claims Bound, or Lost when
//!   their volume is gone;
//! - a volume loop keeps each volume's phase (Available, Bound, Released, Failed)
//!   in step with its claimRef and reclaims a Released volume by its policy.
//!
//! Binding writes the volume first and the claim second, each as a
//! compare-and-swap on the resourceVersion the decision was made from. The volume
//! write is the arbiter: of two claims that picked the same volume from the
//! cache, only one write succeeds; the other fails with Conflict and its claim is
//! looked at again. A half-done binding (the volume claims the claim, the claim
//! does not name the volume yet) is finished by the next sync, because a volume
//! whose claimRef names a claim is that claim's first choice.
//!
//! A new or freed volume wakes every waiting claim, so a claim nothing satisfied
//! binds as soon as a fitting volume appears; a resync every 15 s (Kubernetes'
//! period) catches whatever an event missed.

use std::sync::Arc;
use std::time::Duration;

use client::Api;
use client::runtime::{Action, Controller, Informer, ObjectKey, Store, WorkQueue, key_of};
use proto::core::v1::{ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimStatus};
use proto::meta::v1::{DeleteOptions, Preconditions, Time};
use proto::{ApiError, Reason, Resource};

use super::matching::{best_match, check_requested_volume, claim_class, is_bound_to};
use super::scratch::{self, ScratchError};
use crate::context::Context;

/// Set on a claim once its binding is complete; from then on it is only kept Bound.
pub const BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// Set on a claim or volume when this controller (not a user) chose the binding.
pub const BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";

/// The volume store's index of volumes by the claim (`namespace/name`) they name.
const BY_CLAIM: &str = "persistentvolume.spec.claimRef";
const RESYNC: Duration = Duration::from_secs(15);
/// A lost compare-and-swap is normal under concurrency: look again soon.
const CONFLICT_RETRY: Duration = Duration::from_millis(100);

pub struct PersistentVolumeController {
    ctx: Arc<Context>,
    volumes: Arc<Informer<PersistentVolume>>,
    claims: Arc<Informer<PersistentVolumeClaim>>,
}

fn claim_ref_key(volume: &PersistentVolume) -> Option<String> {
    let reference = volume.spec.as_ref()?.claim_ref.as_ref()?;
    Some(format!("{}/{}", reference.namespace, reference.name))
}

fn annotated(meta: &proto::meta::v1::ObjectMeta, annotation: &str) -> bool {
    meta.annotations.contains_key(annotation)
}

fn phase_of_volume(volume: &PersistentVolume) -> &str {
    volume.status.as_ref().map_or("", |s| s.phase.as_str())
}

/// Whether the volume may take a new claim, so that waiting claims should look.
fn is_free(volume: &PersistentVolume) -> bool {
    let unclaimed = volume.spec.as_ref().is_some_and(|s| s.claim_ref.is_none());
    unclaimed && phase_of_volume(volume) == "Available"
}

/// The claims a change of `volume` concerns: the one it names, the ones naming
/// it, and — when it is free — every claim still waiting for a volume.
fn claims_to_wake<'a>(
    volume: &PersistentVolume,
    claims: impl IntoIterator<Item = &'a PersistentVolumeClaim>,
) -> Vec<ObjectKey> {
    let mut keys: Vec<ObjectKey> = claim_ref_key(volume).into_iter().collect();
    let free = is_free(volume);
    let name = &volume.metadata().name;
    for claim in claims {
        let spec = claim.spec.as_ref();
        let wanted = spec.is_some_and(|s| s.volume_name == *name);
        let waiting = spec.is_some_and(|s| s.volume_name.is_empty()) && !annotated(claim.metadata(), BIND_COMPLETED);
        if wanted || (free && waiting) {
            keys.push(key_of(claim));
        }
    }
    keys
}

/// The volumes a change of `claim` concerns: the one it names and the ones naming it.
fn volumes_to_wake(claim: &PersistentVolumeClaim, volumes: &Store<PersistentVolume>) -> Vec<ObjectKey> {
    let mut keys: Vec<ObjectKey> =
        volumes.by_index(BY_CLAIM, &key_of(claim)).iter().map(|v| key_of(v.as_ref())).collect();
    if let Some(name) = claim.spec.as_ref().map(|s| &s.volume_name).filter(|n| !n.is_empty()) {
        keys.push(name.clone());
    }
    keys
}

/// Turns a lost compare-and-swap into a quick second look instead of an error.
fn retry_conflict(result: Result<Action, ApiError>) -> Result<Action, ApiError> {
    match result {
        Err(e) if e.is(Reason::Conflict) => {
            tracing::debug!(error = %e, "lost a race for an object; looking again");
            Ok(Action::requeue(CONFLICT_RETRY))
        }
        // The object went away under us; its deletion event brings the next sync.
        Err(e) if e.is(Reason::NotFound) => Ok(Action::await_change()),
        other => other,
    }
}

impl PersistentVolumeController {
    pub fn new(ctx: Arc<Context>) -> Arc<Self> {
        let volumes = ctx.informers.get::<PersistentVolume>();
        volumes.store().add_index(BY_CLAIM, |v: &PersistentVolume| claim_ref_key(v).into_iter().collect());
        Arc::new(PersistentVolumeController { claims: ctx.informers.get::<PersistentVolumeClaim>(), volumes, ctx })
    }

    pub async fn run(self: Arc<Self>, workers: usize) {
        let claim_store = self.claims.store();
        let claims = Controller::new(self.claims.clone())
            .watches(self.volumes.clone(), move |v: &PersistentVolume| {
                claims_to_wake(v, claim_store.list().iter().map(|c| c.as_ref()))
            })
            .workers(workers)
            .resync_every(RESYNC);
        let claim_queue = claims.queue();
        let volume_store = self.volumes.store();
        let volumes = Controller::new(self.volumes.clone())
            .watches(self.claims.clone(), move |c: &PersistentVolumeClaim| volumes_to_wake(c, &volume_store))
            .workers(workers)
            .resync_every(RESYNC);
        let (for_claims, for_volumes) = (self.clone(), self);
        tokio::join!(
            claims.run(move |_key, claim: Option<Arc<PersistentVolumeClaim>>| {
                let this = for_claims.clone();
                async move {
                    match claim {
                        Some(claim) => retry_conflict(this.sync_claim(&claim).await),
                        None => Ok(Action::await_change()),
                    }
                }
            }),
            volumes.run(move |_key, volume: Option<Arc<PersistentVolume>>| {
                let (this, claim_queue) = (for_volumes.clone(), claim_queue.clone());
                async move {
                    match volume {
                        Some(volume) => retry_conflict(this.sync_volume(&volume, &claim_queue).await),
                        None => Ok(Action::await_change()),
                    }
                }
            }),
        );
    }

    fn volume_api(&self) -> Api<PersistentVolume> {
        Api::all(&self.ctx.client)
    }

    fn claim_api(&self, namespace: &str) -> Api<PersistentVolumeClaim> {
        Api::namespaced(&self.ctx.client, namespace)
    }

    // ---- claims ----

    async fn sync_claim(&self, claim: &PersistentVolumeClaim) -> Result<Action, ApiError> {
        if annotated(claim.metadata(), BIND_COMPLETED) {
            self.sync_bound_claim(claim).await
        } else {
            self.sync_unbound_claim(claim).await
        }
    }

    async fn sync_unbound_claim(&self, claim: &PersistentVolumeClaim) -> Result<Action, ApiError> {
        // Binding a claim that is going away would only release (and perhaps delete) a volume.
        if claim.metadata().deletion_timestamp.is_some() {
            return Ok(Action::await_change());
        }
        let volume_name = claim.spec.as_ref().map(|s| s.volume_name.clone()).unwrap_or_default();
        let recorder = &self.ctx.recorder;
        if volume_name.is_empty() {
            let volumes = self.volumes.store().list();
            if let Some(volume) = best_match(claim, &volumes) {
                return self.bind(volume, claim).await;
            }
            let why = match claim_class(claim) {
                "" => "no persistent volumes available for this claim and no storage class is set".to_string(),
                class => format!(
                    "no persistent volumes available for this claim with storage class {class:?} (volumes are not provisioned dynamically)"
                ),
            };
            recorder.normal(claim, "FailedBinding", why);
            self.set_claim_phase(claim, "Pending").await?;
            return Ok(Action::await_change());
        }
        // The user named the volume.
        let Some(volume) = self.volumes.store().get(&volume_name) else {
            recorder.normal(claim, "FailedBinding", format!("volume {volume_name:?} not found"));
            self.set_claim_phase(claim, "Pending").await?;
            return Ok(Action::await_change());
        };
        let claimed = volume.spec.as_ref().is_some_and(|s| s.claim_ref.is_some());
        if !claimed {
            if let Err(mismatch) = check_requested_volume(&volume, claim) {
                recorder.warning(
                    claim,
                    "VolumeMismatch",
                    format!("Cannot bind to requested volume {volume_name:?}: {mismatch}"),
                );
                self.set_claim_phase(claim, "Pending").await?;
                return Ok(Action::await_change());
            }
            return self.bind(&volume, claim).await;
        }
        if is_bound_to(&volume, claim) {
            return self.bind(&volume, claim).await;
        }
        recorder.warning(claim, "FailedBinding", format!("volume {volume_name:?} already bound to a different claim."));
        self.set_claim_phase(claim, "Pending").await?;
        Ok(Action::await_change())
    }

    async fn sync_bound_claim(&self, claim: &PersistentVolumeClaim) -> Result<Action, ApiError> {
        let volume_name = claim.spec.as_ref().map(|s| s.volume_name.clone()).unwrap_or_default();
        let recorder = &self.ctx.recorder;
        if volume_name.is_empty() {
            recorder.warning(
                claim,
                "ClaimLost",
                "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!",
            );
            self.set_claim_phase(claim, "Lost").await?;
            return Ok(Action::await_change());
        }
        let volume = match self.volumes.store().get(&volume_name) {
            Some(volume) => Some(volume),
            // Missing from the cache is not proof: ask the apiserver before calling it lost.
            None => self.volume_api().get_opt(&volume_name).await?.map(Arc::new),
        };
        let Some(volume) = volume else {
            recorder.warning(
                claim,
                "ClaimLost",
                "Bound claim has lost its PersistentVolume. Data on the volume is lost!",
            );
            self.set_claim_phase(claim, "Lost").await?;
            return Ok(Action::await_change());
        };
        let claimed = volume.spec.as_ref().is_some_and(|s| s.claim_ref.is_some());
        if !claimed || is_bound_to(&volume, claim) {
            // Re-establishes a binding whose volume side was undone, or just checks it.
            return self.bind(&volume, claim).await;
        }
        recorder.warning(
            claim,
            "ClaimMisbound",
            "Two claims are bound to the same volume, this one is bound incorrectly",
        );
        self.set_claim_phase(claim, "Lost").await?;
        Ok(Action::await_change())
    }

    /// Binds `volume` and `claim` to each other, writing only what is not so yet:
    /// the volume's claimRef (the compare-and-swap that decides a race), its phase,
    /// the claim's volumeName and annotations, and the claim's status.
    async fn bind(&self, volume: &PersistentVolume, claim: &PersistentVolumeClaim) -> Result<Action, ApiError> {
        let claim_meta = claim.metadata();
        let reference = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
        let mut volume = volume.clone();
        if reference
            .is_none_or(|r| r.uid != claim_meta.uid || r.name != claim_meta.name || r.namespace != claim_meta.namespace)
        {
            let chosen_by_us = !is_bound_to(&volume, claim);
            let spec = volume.spec.get_or_insert_with(Default::default);
            spec.claim_ref = Some(ObjectReference {
                kind: "PersistentVolumeClaim".into(),
                namespace: claim_meta.namespace.clone(),
                name: claim_meta.name.clone(),
                uid: claim_meta.uid.clone(),
                api_version: "v1".into(),
                resource_version: claim_meta.resource_version.clone(),
                field_path: String::new(),
            });
            if chosen_by_us {
                volume.metadata_mut().annotations.insert(BOUND_BY_CONTROLLER.into(), "yes".into());
            }
            // Carries the resourceVersion the choice was made from: a compare-and-swap.
            volume = self.volume_api().update(&volume).await?;
            tracing::info!(volume = volume.metadata().name, claim = key_of(claim), "bound volume to claim");
        }
        let volume = self.set_volume_phase(&volume, "Bound", "").await?;

        let volume_name = volume.metadata().name.clone();
        let mut claim = claim.clone();
        let spec = claim.spec.get_or_insert_with(Default::default);
        let mut changed = false;
        if spec.volume_name != volume_name {
            spec.volume_name = volume_name.clone();
            claim.metadata_mut().annotations.insert(BOUND_BY_CONTROLLER.into(), "yes".into());
            changed = true;
        }
        if !annotated(claim.metadata(), BIND_COMPLETED) {
            claim.metadata_mut().annotations.insert(BIND_COMPLETED.into(), "yes".into());
            changed = true;
        }
        if changed {
            claim = self.claim_api(&claim_meta.namespace).update(&claim).await?;
        }
        let volume_spec = volume.spec.clone().unwrap_or_default();
        let mut status = claim.status.clone().unwrap_or_default();
        let wanted = PersistentVolumeClaimStatus {
            phase: "Bound".into(),
            access_modes: volume_spec.access_modes,
            capacity: volume_spec.capacity,
            ..status.clone()
        };
        if wanted != status {
            status = wanted;
            claim.status = Some(status);
            self.claim_api(&claim_meta.namespace).update_status(&claim).await?;
        }
        Ok(Action::await_change())
    }

    /// Sets a claim's phase; a claim that is not Bound reports no capacity or modes.
    async fn set_claim_phase(&self, claim: &PersistentVolumeClaim, phase: &str) -> Result<(), ApiError> {
        let current = claim.status.clone().unwrap_or_default();
        let wanted = PersistentVolumeClaimStatus {
            phase: phase.into(),
            access_modes: Vec::new(),
            capacity: Default::default(),
            ..current.clone()
        };
        if wanted == current {
            return Ok(());
        }
        let mut updated = claim.clone();
        updated.status = Some(wanted);
        self.claim_api(&claim.metadata().namespace).update_status(&updated).await.map(|_| ())
    }

    // ---- volumes ----

    async fn sync_volume(&self, volume: &PersistentVolume, claims: &WorkQueue<ObjectKey>) -> Result<Action, ApiError> {
        let Some(reference) = volume.spec.as_ref().and_then(|s| s.claim_ref.clone()) else {
            self.set_volume_phase(volume, "Available", "").await?;
            return Ok(Action::await_change());
        };
        let claim_key = format!("{}/{}", reference.namespace, reference.name);
        if reference.uid.is_empty() {
            // Pre-bound by a user to a claim that has not bound yet.
            self.set_volume_phase(volume, "Available", "").await?;
            claims.add(claim_key);
            return Ok(Action::await_change());
        }
        let Some(claim) = self.find_claim(&reference).await? else {
            let volume = match phase_of_volume(volume) {
                "Released" | "Failed" => volume.clone(),
                _ => {
                    tracing::info!(volume = volume.metadata().name, claim = claim_key, "claim gone; volume released");
                    self.set_volume_phase(volume, "Released", "").await?
                }
            };
            if phase_of_volume(&volume) == "Released" && volume.metadata().deletion_timestamp.is_none() {
                return self.reclaim(&volume).await;
            }
            return Ok(Action::await_change());
        };
        let claimed_volume = claim.spec.as_ref().map(|s| s.volume_name.clone()).unwrap_or_default();
        if claimed_volume.is_empty() {
            // The claim side of the binding is not written yet: the claim loop finishes it.
            claims.add(claim_key);
        } else if claimed_volume == volume.metadata().name {
            self.set_volume_phase(volume, "Bound", "").await?;
        } else {
            // The claim went to another volume.
            self.unbind(volume).await?;
        }
        Ok(Action::await_change())
    }

    /// The claim a claimRef names, if that incarnation (uid) still exists. A claim
    /// missing from the cache is looked up on the apiserver: the claim cache may lag
    /// the volume cache, and releasing a volume in use would be wrong.
    async fn find_claim(&self, reference: &ObjectReference) -> Result<Option<Arc<PersistentVolumeClaim>>, ApiError> {
        let cached = self.claims.store().get_named(&reference.namespace, &reference.name);
        if let Some(claim) = cached.filter(|c| c.metadata().uid == reference.uid) {
            return Ok(Some(claim));
        }
        let live = self.claim_api(&reference.namespace).get_opt(&reference.name).await?;
        Ok(live.filter(|c| c.metadata().uid == reference.uid).map(Arc::new))
    }

    /// Sets a volume's phase and message, returning the volume as stored.
    async fn set_volume_phase(
        &self,
        volume: &PersistentVolume,
        phase: &str,
        message: &str,
    ) -> Result<PersistentVolume, ApiError> {
        let current = volume.status.clone().unwrap_or_default();
        if current.phase == phase && current.message == message {
            return Ok(volume.clone());
        }
        let mut updated = volume.clone();
        let status = updated.status.get_or_insert_with(Default::default);
        if status.phase != phase {
            status.last_phase_transition_time = Some(Time::now_seconds());
        }
        status.phase = phase.into();
        status.message = message.into();
        self.volume_api().update_status(&updated).await
    }

    /// Frees a volume the controller bound to a claim that went elsewhere; a volume
    /// a user pre-bound keeps naming its claim (without a uid), as Kubernetes does.
    async fn unbind(&self, volume: &PersistentVolume) -> Result<PersistentVolume, ApiError> {
        let mut updated = volume.clone();
        let by_controller = updated.metadata_mut().annotations.remove(BOUND_BY_CONTROLLER).is_some();
        let spec = updated.spec.get_or_insert_with(Default::default);
        if by_controller {
            spec.claim_ref = None;
        } else if let Some(reference) = spec.claim_ref.as_mut() {
            reference.uid.clear();
            reference.resource_version.clear();
        }
        let updated = self.volume_api().update(&updated).await?;
        tracing::info!(volume = updated.metadata().name, "unbound volume");
        self.set_volume_phase(&updated, "Available", "").await
    }

    /// Applies the reclaim policy of a Released volume whose claim is gone.
    async fn reclaim(&self, volume: &PersistentVolume) -> Result<Action, ApiError> {
        let spec = volume.spec.clone().unwrap_or_default();
        let policy = spec.persistent_volume_reclaim_policy.as_str();
        if policy != "Delete" && policy != "Recycle" {
            // Retain: the volume stays Released, with its data, for an administrator.
            return Ok(Action::await_change());
        }
        // About to destroy data or the object: decide on the stored volume, not a cached one.
        let name = volume.metadata().name.clone();
        let Some(fresh) = self.volume_api().get_opt(&name).await? else { return Ok(Action::await_change()) };
        if fresh.metadata().resource_version != volume.metadata().resource_version {
            return Ok(Action::requeue(CONFLICT_RETRY));
        }
        let host_path = spec.host_path.as_ref().map(|h| h.path.clone());
        let recorder = &self.ctx.recorder;
        if policy == "Delete" {
            if let Some(path) = &host_path {
                match scratch::remove(path) {
                    Ok(()) => tracing::info!(volume = name, path, "removed the volume's hostPath directory"),
                    Err(ScratchError::NotScratch { .. }) => {
                        tracing::info!(volume = name, path, "deleting the volume object; its data outside /tmp stays")
                    }
                    Err(e) => {
                        let message = format!("deleting the volume's data: {e}");
                        recorder.warning(volume, "VolumeFailedDelete", &message);
                        self.set_volume_phase(volume, "Failed", &message).await?;
                        return Ok(Action::await_change());
                    }
                }
            }
            let options = DeleteOptions {
                preconditions: Some(Preconditions {
                    uid: Some(volume.metadata().uid.clone()),
                    resource_version: Some(volume.metadata().resource_version.clone()),
                }),
                ..Default::default()
            };
            self.volume_api().delete(&name, options).await?;
            tracing::info!(volume = name, "deleted released volume (reclaim policy Delete)");
            return Ok(Action::await_change());
        }
        // Recycle: only a scratch hostPath can be wiped safely.
        let wiped = match &host_path {
            Some(path) => scratch::wipe(path).map_err(|e| e.to_string()),
            None => Err("Recycle is supported only for hostPath volumes beneath /tmp/".to_string()),
        };
        if let Err(why) = wiped {
            let message = format!("Recycle failed: {why}");
            recorder.warning(volume, "VolumeFailedRecycle", &message);
            self.set_volume_phase(volume, "Failed", &message).await?;
            return Ok(Action::await_change());
        }
        recorder.normal(volume, "VolumeRecycled", "Volume recycled");
        self.unbind(volume).await?;
        Ok(Action::await_change())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::core::v1::{PersistentVolumeClaimSpec, PersistentVolumeSpec, PersistentVolumeStatus};
    use proto::meta::v1::ObjectMeta;

    fn volume(name: &str, phase: &str, claim: Option<&str>) -> PersistentVolume {
        PersistentVolume {
            metadata: Some(ObjectMeta { name: name.into(), ..Default::default() }),
            spec: Some(PersistentVolumeSpec {
                claim_ref: claim.map(|c| ObjectReference {
                    namespace: "ns".into(),
                    name: c.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            status: Some(PersistentVolumeStatus { phase: phase.into(), ..Default::default() }),
        }
    }

    fn claim(name: &str, volume_name: &str, completed: bool) -> PersistentVolumeClaim {
        let mut meta = ObjectMeta { name: name.into(), namespace: "ns".into(), ..Default::default() };
        if completed {
            meta.annotations.insert(BIND_COMPLETED.into(), "yes".into());
        }
        PersistentVolumeClaim {
            metadata: Some(meta),
            spec: Some(PersistentVolumeClaimSpec { volume_name: volume_name.into(), ..Default::default() }),
            status: None,
        }
    }

    #[test]
    fn a_free_volume_wakes_every_waiting_claim_and_the_ones_naming_it() {
        let claims = [claim("waiting", "", false), claim("bound", "other", true), claim("named", "v", false)];
        let mut woken = claims_to_wake(&volume("v", "Available", None), &claims);
        woken.sort();
        assert_eq!(woken, ["ns/named", "ns/waiting"]);
        // Not Available yet (just created): only those naming it.
        assert_eq!(claims_to_wake(&volume("v", "Pending", None), &claims), ["ns/named"]);
        // Claimed: the claim it names, and those naming it.
        assert_eq!(claims_to_wake(&volume("v", "Bound", Some("bound")), &claims), ["ns/bound", "ns/named"]);
    }
}
