//! The PersistentVolume binder and claim protection in the real controller-manager
//! (real etcd and apiserver): minimum-fit binding, a claim waiting until a fitting
//! volume appears, the Retain, Delete and Recycle policies, a claim kept while a
//! pod uses it, and claims racing for too few volumes.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use client::{Api, Client, ListParams, PatchType};
use proto::Resource as _;
use proto::core::v1::{Event, PersistentVolume, PersistentVolumeClaim, Pod};
use proto::meta::v1::DeleteOptions;
use serde_json::{Value, json};

fn volume(name: &str, size: &str, modes: &[&str], class: &str, policy: &str, path: &Path) -> PersistentVolume {
    proto::codec::decode(&json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": {"capacity": {"storage": size}, "accessModes": modes, "storageClassName": class,
                 "persistentVolumeReclaimPolicy": policy,
                 "hostPath": {"path": path.display().to_string()}}
    }))
    .unwrap()
}

fn claim(name: &str, size: &str, extra: Value) -> PersistentVolumeClaim {
    let mut spec = json!({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}});
    if let (Some(spec), Value::Object(extra)) = (spec.as_object_mut(), extra) {
        spec.extend(extra);
    }
    proto::codec::decode(&json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec
    }))
    .unwrap()
}

fn apis(client: &Client) -> (Api<PersistentVolume>, Api<PersistentVolumeClaim>) {
    (Api::all(client), Api::namespaced(client, "default"))
}

fn phase_of_claim(c: &PersistentVolumeClaim) -> &str {
    c.status.as_ref().map_or("", |s| s.phase.as_str())
}

fn phase_of_volume(v: &PersistentVolume) -> &str {
    v.status.as_ref().map_or("", |s| s.phase.as_str())
}

fn volume_name(c: &PersistentVolumeClaim) -> &str {
    c.spec.as_ref().map_or("", |s| s.volume_name.as_str())
}

async fn wait_claim_bound(claims: &Api<PersistentVolumeClaim>, name: &str) -> PersistentVolumeClaim {
    common::eventually(&format!("claim {name} Bound"), || async {
        claims.get(name).await.is_ok_and(|c| phase_of_claim(&c) == "Bound")
    })
    .await;
    claims.get(name).await.unwrap()
}

async fn wait_volume_phase(volumes: &Api<PersistentVolume>, name: &str, phase: &str) -> PersistentVolume {
    common::eventually(&format!("volume {name} {phase}"), || async {
        volumes.get(name).await.is_ok_and(|v| phase_of_volume(&v) == phase)
    })
    .await;
    volumes.get(name).await.unwrap()
}

/// The message of the claim's first `reason` Event, once there is one.
async fn event_message(client: &Client, claim: &str, reason: &str) -> String {
    let events: Api<Event> = Api::namespaced(client, "default");
    let found = std::sync::Mutex::new(String::new());
    common::eventually(&format!("a {reason} event for {claim}"), || async {
        let Ok(list) = events.list(&ListParams::default()).await else { return false };
        let event = list.items.into_iter().find(|e| {
            e.reason == reason
                && e.involved_object.as_ref().is_some_and(|o| o.name == claim && o.kind == "PersistentVolumeClaim")
        });
        match event {
            Some(e) => {
                *found.lock().unwrap() = e.message;
                true
            }
            None => false,
        }
    })
    .await;
    found.into_inner().unwrap()
}

/// A directory beneath /tmp, as the Delete and Recycle policies need.
fn scratch(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(&format!("{prefix}-{}-", std::process::id())).tempdir_in("/tmp").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_gets_the_smallest_fitting_volume_and_a_waiting_claim_binds_when_one_appears() {
    let cluster = common::cluster().await;
    let client = &cluster.client;
    let (volumes, claims) = apis(client);
    let dir = cluster.dir.path();
    let rwo = &["ReadWriteOnce"];
    for pv in [
        volume("big", "10Gi", rwo, "", "Retain", dir),
        volume("tiny", "500Mi", rwo, "", "Retain", dir),
        volume("snug", "2Gi", rwo, "", "Retain", dir),
        volume("gold", "1Gi", rwo, "gold", "Retain", dir),
        volume("shared", "1Gi", &["ReadOnlyMany"], "", "Retain", dir),
    ] {
        volumes.create(&pv).await.unwrap();
    }
    let (_cm, _) = common::controller_manager(&cluster, "controller-manager");
    // The binder picks among Available volumes only (as Kubernetes' does: a new volume
    // is made Available first), so the claim comes once every volume is.
    for name in ["big", "tiny", "snug", "gold", "shared"] {
        wait_volume_phase(&volumes, name, "Available").await;
    }
    claims.create(&claim("data", "1Gi", json!({}))).await.unwrap();

    let bound = wait_claim_bound(&claims, "data").await;
    assert_eq!(volume_name(&bound), "snug", "the smallest volume of the right class and modes");
    let status = bound.status.clone().unwrap();
    assert_eq!(status.capacity.get("storage").map(|q| q.string.as_str()), Some("2Gi"));
    assert_eq!(status.access_modes, ["ReadWriteOnce"]);
    let annotations = &bound.metadata().annotations;
    assert_eq!(annotations.get("pv.kubernetes.io/bind-completed").map(String::as_str), Some("yes"));
    assert_eq!(annotations.get("pv.kubernetes.io/bound-by-controller").map(String::as_str), Some("yes"));
    assert!(bound.metadata().finalizers.iter().any(|f| f == "kubernetes.io/pvc-protection"));
    let snug = wait_volume_phase(&volumes, "snug", "Bound").await;
    let reference = snug.spec.unwrap().claim_ref.unwrap();
    assert_eq!((reference.namespace.as_str(), reference.name.as_str()), ("default", "data"));
    assert_eq!(reference.uid, bound.metadata().uid);
    for name in ["big", "tiny", "gold", "shared"] {
        let pv = wait_volume_phase(&volumes, name, "Available").await;
        assert!(pv.spec.unwrap().claim_ref.is_none(), "{name} stays unclaimed");
    }

    // A claim of another class takes that class's volume even though it is no smaller.
    claims.create(&claim("golden", "1Gi", json!({"storageClassName": "gold"}))).await.unwrap();
    assert_eq!(volume_name(&wait_claim_bound(&claims, "golden").await), "gold");

    // Nothing is big enough: Pending, with an Event saying why, until a volume fits.
    claims.create(&claim("huge", "20Gi", json!({}))).await.unwrap();
    let message = event_message(client, "huge", "FailedBinding").await;
    assert_eq!(message, "no persistent volumes available for this claim and no storage class is set");
    let waiting = claims.get("huge").await.unwrap();
    assert_eq!((phase_of_claim(&waiting), volume_name(&waiting)), ("Pending", ""));
    volumes.create(&volume("roomy", "25Gi", rwo, "", "Retain", dir)).await.unwrap();
    assert_eq!(volume_name(&wait_claim_bound(&claims, "huge").await), "roomy");

    // A claim naming its volume gets that one, once it exists.
    claims.create(&claim("named", "1Gi", json!({"volumeName": "later"}))).await.unwrap();
    assert_eq!(event_message(client, "named", "FailedBinding").await, "volume \"later\" not found");
    volumes.create(&volume("later", "3Gi", rwo, "", "Retain", dir)).await.unwrap();
    assert_eq!(volume_name(&wait_claim_bound(&claims, "named").await), "later");
    assert_eq!(wait_volume_phase(&volumes, "later", "Bound").await.spec.unwrap().claim_ref.unwrap().name, "named");

    // A Bound volume is only marked when deleted; forced away (finalizer removed by
    // hand), its claim is Lost.
    volumes.delete("snug", DeleteOptions::default()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let marked = volumes.get("snug").await.unwrap();
    assert!(marked.metadata().deletion_timestamp.is_some(), "pv-protection holds a Bound volume");
    volumes.patch("snug", PatchType::Merge, &json!({"metadata": {"finalizers": null}})).await.unwrap();
    common::eventually("claim data Lost", || async {
        claims.get("data").await.is_ok_and(|c| phase_of_claim(&c) == "Lost")
    })
    .await;
    let message = event_message(client, "data", "ClaimLost").await;
    assert_eq!(message, "Bound claim has lost its PersistentVolume. Data on the volume is lost!");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reclaim_policies_apply_when_the_claim_goes_and_a_claim_in_use_stays() {
    let cluster = common::cluster().await;
    let (_cm, _) = common::controller_manager(&cluster, "controller-manager");
    let client = &cluster.client;
    let (volumes, claims) = apis(client);
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let rwo = &["ReadWriteOnce"];
    let deleted_dir = scratch("pv-delete");
    let recycled_dir = scratch("pv-recycle");
    std::fs::write(deleted_dir.path().join("data"), "gone").unwrap();
    std::fs::create_dir(recycled_dir.path().join("sub")).unwrap();
    std::fs::write(recycled_dir.path().join("sub/data"), "wiped").unwrap();
    // Outside /tmp (the cluster's own directory is beneath it), so no policy may touch it.
    let outside = tempfile::Builder::new()
        .prefix(&format!("pv-kept-{}-", std::process::id()))
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let kept_dir = outside.path().to_path_buf();
    assert!(!kept_dir.starts_with("/tmp"), "{} must lie outside /tmp", kept_dir.display());
    std::fs::write(kept_dir.join("data"), "kept").unwrap();

    // Each claim is pre-bound by name, so each policy meets its own volume.
    volumes.create(&volume("retained", "1Gi", rwo, "", "Retain", &kept_dir)).await.unwrap();
    volumes.create(&volume("deleted", "1Gi", rwo, "", "Delete", deleted_dir.path())).await.unwrap();
    volumes.create(&volume("recycled", "1Gi", rwo, "", "Recycle", recycled_dir.path())).await.unwrap();
    volumes.create(&volume("unrecyclable", "1Gi", rwo, "", "Recycle", &kept_dir)).await.unwrap();
    for (claim_name, volume_name) in
        [("keep", "retained"), ("drop", "deleted"), ("reuse", "recycled"), ("stuck", "unrecyclable")]
    {
        claims.create(&claim(claim_name, "1Gi", json!({"volumeName": volume_name}))).await.unwrap();
        wait_claim_bound(&claims, claim_name).await;
        wait_volume_phase(&volumes, volume_name, "Bound").await;
    }

    // A pod uses "keep": deleting the claim only marks it while the pod exists.
    let pod: Pod = proto::codec::decode(&json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "user", "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}],
                 "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "keep"}}]}
    }))
    .unwrap();
    pods.create(&pod).await.unwrap();
    claims.delete("keep", DeleteOptions::default()).await.unwrap();
    let marked = claims.get("keep").await.unwrap();
    assert!(marked.metadata().deletion_timestamp.is_some());
    // Give the controller time to (wrongly) let it go; it must not while the pod is there.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let held = claims.get_opt("keep").await.unwrap().expect("a claim in use outlives its deletion");
    assert!(held.metadata().finalizers.iter().any(|f| f == "kubernetes.io/pvc-protection"));
    assert_eq!(phase_of_volume(&volumes.get("retained").await.unwrap()), "Bound");
    let now = DeleteOptions { grace_period_seconds: Some(0), ..Default::default() };
    pods.delete("user", now).await.unwrap();
    common::eventually("claim keep gone with its pod", || async { claims.get_opt("keep").await.unwrap().is_none() })
        .await;

    // Retain: Released, still naming the claim, data untouched.
    let retained = wait_volume_phase(&volumes, "retained", "Released").await;
    assert_eq!(retained.spec.unwrap().claim_ref.unwrap().name, "keep");
    assert_eq!(std::fs::read_to_string(kept_dir.join("data")).unwrap(), "kept");

    // Delete: the volume object goes, and its scratch directory with it.
    claims.delete("drop", DeleteOptions::default()).await.unwrap();
    common::eventually("volume deleted gone", || async { volumes.get_opt("deleted").await.unwrap().is_none() }).await;
    assert!(!deleted_dir.path().exists(), "the hostPath directory beneath /tmp was removed");

    // Recycle: emptied, unbound, Available again — and then bindable by a new claim.
    claims.delete("reuse", DeleteOptions::default()).await.unwrap();
    common::eventually("volume recycled available and unclaimed", || async {
        volumes
            .get("recycled")
            .await
            .is_ok_and(|v| phase_of_volume(&v) == "Available" && v.spec.as_ref().is_some_and(|s| s.claim_ref.is_none()))
    })
    .await;
    assert!(recycled_dir.path().is_dir(), "recycling keeps the directory");
    assert_eq!(std::fs::read_dir(recycled_dir.path()).unwrap().count(), 0, "and empties it");
    claims.create(&claim("again", "1Gi", json!({"volumeName": "recycled"}))).await.unwrap();
    wait_claim_bound(&claims, "again").await;

    // Recycle outside /tmp: Failed, saying why, and the data stays.
    claims.delete("stuck", DeleteOptions::default()).await.unwrap();
    let failed = wait_volume_phase(&volumes, "unrecyclable", "Failed").await;
    let message = failed.status.unwrap().message;
    assert!(message.contains("only directories beneath /tmp/ are reclaimed"), "{message}");
    assert_eq!(std::fs::read_to_string(kept_dir.join("data")).unwrap(), "kept");

    // pv-protection: a Bound volume outlives its deletion until its claim lets go.
    volumes.delete("recycled", DeleteOptions::default()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let protected = volumes.get_opt("recycled").await.unwrap().expect("a Bound volume is kept");
    assert!(protected.metadata().deletion_timestamp.is_some());
    claims.delete("again", DeleteOptions::default()).await.unwrap();
    common::eventually("volume recycled gone once released", || async {
        volumes.get_opt("recycled").await.unwrap().is_none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_racing_for_too_few_volumes_never_share_one() {
    let cluster = common::cluster().await;
    let (_cm, _) = common::controller_manager(&cluster, "controller-manager");
    let client = &cluster.client;
    let (volumes, claims) = apis(client);
    let dir = cluster.dir.path();

    // Round one: two claims, created at once, for one volume.
    volumes.create(&volume("only", "1Gi", &["ReadWriteOnce"], "", "Retain", dir)).await.unwrap();
    wait_volume_phase(&volumes, "only", "Available").await;
    let (first, second) = (claim("first", "1Gi", json!({})), claim("second", "1Gi", json!({})));
    let (a, b) = tokio::join!(claims.create(&first), claims.create(&second));
    a.unwrap();
    b.unwrap();
    common::eventually("one of the two bound", || async {
        let list = claims.list(&ListParams::default()).await.unwrap().items;
        list.iter().filter(|c| phase_of_claim(c) == "Bound").count() == 1
    })
    .await;

    // Round two: eight claims at once for three more volumes.
    for name in ["r1", "r2", "r3"] {
        volumes.create(&volume(name, "1Gi", &["ReadWriteOnce"], "", "Retain", dir)).await.unwrap();
    }
    let names: Vec<String> = (0..8).map(|i| format!("racer-{i}")).collect();
    let racers: Vec<PersistentVolumeClaim> = names.iter().map(|n| claim(n, "1Gi", json!({}))).collect();
    let created = futures::future::join_all(racers.iter().map(|c| claims.create(c))).await;
    for result in created {
        result.unwrap();
    }
    common::eventually("four claims bound in all", || async {
        let list = claims.list(&ListParams::default()).await.unwrap().items;
        list.iter().filter(|c| phase_of_claim(c) == "Bound").count() == 4
    })
    .await;
    // Let any wrong second binding happen before looking.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let claim_list = claims.list(&ListParams::default()).await.unwrap().items;
    let volume_list = volumes.list(&ListParams::default()).await.unwrap().items;
    let bound: Vec<&PersistentVolumeClaim> = claim_list.iter().filter(|c| phase_of_claim(c) == "Bound").collect();
    assert_eq!(bound.len(), 4, "as many claims bound as there are volumes");
    let mut owner_of: BTreeMap<&str, &str> = BTreeMap::new();
    for c in &bound {
        let previous = owner_of.insert(volume_name(c), &c.metadata().name);
        assert!(previous.is_none(), "volume {} given to {:?} and {}", volume_name(c), previous, c.metadata().name);
    }
    assert_eq!(owner_of.len(), 4);
    for pv in &volume_list {
        assert_eq!(phase_of_volume(pv), "Bound", "{} is taken", pv.metadata().name);
        let reference = pv.spec.as_ref().unwrap().claim_ref.as_ref().unwrap();
        let owner = claim_list.iter().find(|c| c.metadata().name == reference.name).unwrap();
        assert_eq!(reference.uid, owner.metadata().uid);
        assert_eq!(volume_name(owner), pv.metadata().name, "claimRef and volumeName agree");
    }
    for c in claim_list.iter().filter(|c| phase_of_claim(c) != "Bound") {
        assert_eq!((phase_of_claim(c), volume_name(c)), ("Pending", ""), "{} waits", c.metadata().name);
    }
}
