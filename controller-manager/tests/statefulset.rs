//! The StatefulSet controller in the real controller-manager (the test plays the
//! kubelet, reporting each pod Running and Ready a beat after it appears): pods are
//! created in order, each after the one before is ready, with stable names,
//! hostnames and claims; a deleted pod returns with the same name and claim;
//! scaling down removes the highest ordinals first and keeps their claims; a
//! template change rolls out from the highest ordinal down, recorded as
//! ControllerRevisions.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use client::{Api, ListParams, PatchType, WatchEvent};
use futures::StreamExt as _;
use proto::Resource as _;
use proto::apps::v1::{ControllerRevision, StatefulSet, StatefulSetSpec};
use proto::core::v1::{
    Container, PersistentVolumeClaim, PersistentVolumeClaimSpec, Pod, PodSpec, PodTemplateSpec, VolumeMount,
    VolumeResourceRequirements,
};
use proto::meta::v1::{LabelSelector, ObjectMeta, Quantity};

fn stateful_set(name: &str, replicas: i32) -> StatefulSet {
    let labels: BTreeMap<String, String> = [("app".to_string(), name.to_string())].into();
    StatefulSet {
        metadata: Some(ObjectMeta { name: name.into(), ..Default::default() }),
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas),
            service_name: name.into(),
            selector: Some(LabelSelector { match_labels: labels.clone(), ..Default::default() }),
            template: Some(PodTemplateSpec {
                metadata: Some(ObjectMeta { labels, ..Default::default() }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "c".into(),
                        image: "busybox:1".into(),
                        volume_mounts: vec![VolumeMount {
                            name: "data".into(),
                            mount_path: "/data".into(),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            }),
            volume_claim_templates: vec![PersistentVolumeClaim {
                metadata: Some(ObjectMeta { name: "data".into(), ..Default::default() }),
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: vec!["ReadWriteOnce".into()],
                    resources: Some(VolumeResourceRequirements {
                        requests: [("storage".to_string(), Quantity { string: "1Gi".into() })].into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                status: None,
            }],
            ..Default::default()
        }),
        status: None,
    }
}

/// The fake kubelet's record: pod names in the order they appeared, and whether
/// every lower ordinal was ready at the time.
#[derive(Default)]
struct Record {
    created: Vec<String>,
    out_of_order: Vec<String>,
}

/// Reports pods Running and Ready one poll (100 ms) after first seeing them.
fn kubelet(pods: Api<Pod>, set: &str) -> (common::AbortOnDrop, Arc<Mutex<Record>>) {
    let record = Arc::new(Mutex::new(Record::default()));
    let (selector, set, log) = (format!("app={set}"), set.to_string(), record.clone());
    let task = tokio::spawn(async move {
        let mut seen: BTreeMap<String, String> = BTreeMap::new(); // name -> uid
        loop {
            // A busy etcd may time out a list: try again at the next beat.
            let Ok(list) = pods.list(&ListParams::labels(&selector)).await.map(|l| l.items) else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let ready: BTreeSet<String> = list
                .iter()
                .filter(|p| p.status.as_ref().is_some_and(|s| s.phase == "Running"))
                .filter(|p| p.metadata().deletion_timestamp.is_none())
                .map(|p| p.metadata().name.clone())
                .collect();
            for pod in list.iter().filter(|p| p.metadata().deletion_timestamp.is_none()) {
                let (name, uid) = (pod.metadata().name.clone(), pod.metadata().uid.clone());
                if seen.get(&name) == Some(&uid) {
                    if !ready.contains(&name) {
                        common::set_pod_phase(&pods, &name, "Running", true).await;
                    }
                    continue;
                }
                seen.insert(name.clone(), uid);
                let ordinal: usize = name.rsplit('-').next().unwrap().parse().unwrap();
                let mut log = log.lock().unwrap();
                if (0..ordinal).any(|lower| !ready.contains(&format!("{set}-{lower}"))) {
                    log.out_of_order.push(name.clone());
                }
                log.created.push(name);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    (common::AbortOnDrop(task), record)
}

/// Ready replicas as of the set's latest spec (0 while status is older than it).
async fn ready_replicas(sets: &Api<StatefulSet>, name: &str) -> i32 {
    let set = sets.get(name).await.unwrap();
    let generation = set.metadata().generation;
    set.status.filter(|s| s.observed_generation == generation).map_or(0, |s| s.ready_replicas)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_creation_stable_identity_reverse_scale_down_and_rolling_update() {
    let cluster = common::cluster().await;
    let (_cm, _) = common::controller_manager(&cluster, "controller-manager");
    let client = &cluster.client;
    let sets: Api<StatefulSet> = Api::namespaced(client, "default");
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client, "default");
    let (_kubelet, record) = kubelet(pods.clone(), "db");

    sets.create(&stateful_set("db", 3)).await.unwrap();
    common::eventually("three ready replicas", || async { ready_replicas(&sets, "db").await == 3 }).await;
    {
        let record = record.lock().unwrap();
        assert_eq!(record.created, ["db-0", "db-1", "db-2"]);
        assert!(record.out_of_order.is_empty(), "created before the previous was ready: {:?}", record.out_of_order);
    }
    for ordinal in 0..3 {
        let pod = pods.get(&format!("db-{ordinal}")).await.unwrap();
        let spec = pod.spec.unwrap();
        assert_eq!((spec.hostname.as_str(), spec.subdomain.as_str()), (format!("db-{ordinal}").as_str(), "db"));
        let volume = spec.volumes.iter().find(|v| v.name == "data").expect("the claim's volume");
        assert_eq!(volume.persistent_volume_claim.as_ref().unwrap().claim_name, format!("data-db-{ordinal}"));
        claims.get(&format!("data-db-{ordinal}")).await.unwrap();
    }

    // A deleted pod comes back with the same name and the same claim.
    let old = pods.get("db-1").await.unwrap();
    let claim_uid = claims.get("data-db-1").await.unwrap().metadata().uid.clone();
    pods.delete("db-1", Default::default()).await.unwrap();
    common::eventually("db-1 back", || async {
        pods.get_opt("db-1").await.unwrap().is_some_and(|p| p.metadata().uid != old.metadata().uid)
    })
    .await;
    let back = pods.get("db-1").await.unwrap();
    let volume = back.spec.unwrap().volumes.into_iter().find(|v| v.name == "data").unwrap();
    assert_eq!(volume.persistent_volume_claim.unwrap().claim_name, "data-db-1");
    assert_eq!(claims.get("data-db-1").await.unwrap().metadata().uid, claim_uid, "the same claim, not a new one");
    common::eventually("three ready again", || async { ready_replicas(&sets, "db").await == 3 }).await;

    // Scale down to one: db-2 goes before db-1; the claims stay.
    // From a list's revision, so no deletion before the watch's first poll is missed.
    let from = pods.list(&ListParams::labels("app=db")).await.unwrap().resource_version;
    let mut watch = pods.watch(&ListParams::labels("app=db"), &from).await.unwrap();
    let scale = serde_json::json!({ "spec": { "replicas": 1 } });
    sets.patch("db", PatchType::Merge, &scale).await.unwrap();
    let mut deleted = Vec::new();
    // One deadline for the whole wait: bookmarks must not keep a stuck wait alive.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while deleted.len() < 2 {
        let event =
            tokio::time::timeout_at(deadline, watch.next()).await.expect("the pods go within 60 s").unwrap().unwrap();
        if let WatchEvent::Deleted(pod) = event {
            deleted.push(pod.metadata().name.clone());
        }
    }
    assert_eq!(deleted, ["db-2", "db-1"], "highest ordinal first");
    assert_eq!(claims.list(&ListParams::default()).await.unwrap().items.len(), 3, "claims outlive their pods");

    // Back to three, then a new image rolls out highest ordinal first.
    sets.patch("db", PatchType::Merge, &serde_json::json!({ "spec": { "replicas": 3 } })).await.unwrap();
    common::eventually("three ready after scaling up", || async { ready_replicas(&sets, "db").await == 3 }).await;
    let before = sets.get("db").await.unwrap().status.unwrap();
    // From a list's revision, so no deletion before the watch's first poll is missed.
    let from = pods.list(&ListParams::labels("app=db")).await.unwrap().resource_version;
    let mut watch = pods.watch(&ListParams::labels("app=db"), &from).await.unwrap();
    let image = serde_json::json!({ "spec": { "template": { "spec": { "containers": [{
        "name": "c", "image": "busybox:2", "volumeMounts": [{ "name": "data", "mountPath": "/data" }]
    }] } } } });
    sets.patch("db", PatchType::Merge, &image).await.unwrap();
    let mut replaced = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while replaced.len() < 3 {
        let event = tokio::time::timeout_at(deadline, watch.next())
            .await
            .unwrap_or_else(|_| panic!("the rollout stopped after replacing {replaced:?}"))
            .unwrap()
            .unwrap();
        if let WatchEvent::Deleted(pod) = event {
            replaced.push(pod.metadata().name.clone());
        }
    }
    assert_eq!(replaced, ["db-2", "db-1", "db-0"], "rolling update from the highest ordinal");
    common::eventually("the rollout complete", || async {
        let status = sets.get("db").await.unwrap().status.unwrap();
        status.updated_replicas == 3 && status.ready_replicas == 3 && status.current_revision == status.update_revision
    })
    .await;
    let after = sets.get("db").await.unwrap().status.unwrap();
    assert_ne!(after.update_revision, before.update_revision);
    for ordinal in 0..3 {
        let pod = pods.get(&format!("db-{ordinal}")).await.unwrap();
        assert_eq!(pod.spec.unwrap().containers[0].image, "busybox:2");
    }
    let revisions: Api<ControllerRevision> = Api::namespaced(client, "default");
    let history = revisions.list(&ListParams::labels("app=db")).await.unwrap().items;
    assert_eq!(history.len(), 2, "one revision per template");
    assert_eq!(history.iter().map(|r| r.revision).max(), Some(2));
}
