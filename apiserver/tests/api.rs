//! The API's semantics end to end: every kind through the API and back, and the
//! server-side rules (admission, preconditions, graceful deletion, finalizers,
//! binding, status, generation, lists).

mod common;

use std::path::Path;

use client::{Api, Client, ListParams, PatchType};
use proto::apps::v1::Deployment;
use proto::codec::{self, DynamicObject};
use proto::core::v1::{Binding, ConfigMap, Container, Namespace, ObjectReference, Pod, PodSpec};
use proto::meta::v1::{DeleteOptions, ObjectMeta};
use proto::{Reason, Resource as _};
use serde_json::Value;

/// Fields the server sets or that are write-only, left out of the comparison.
fn server_owned(path: &str) -> bool {
    matches!(path, "metadata.uid" | "metadata.resourceVersion" | "metadata.creationTimestamp" | "metadata.generation")
}

fn is_zero(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// Every field of `sent` comes back unchanged (the server may add defaults).
fn assert_kept(sent: &Value, got: &Value, path: &str, file: &str) {
    if server_owned(path) {
        return;
    }
    match (sent, got) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                let child = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                if child == "stringData" {
                    continue;
                }
                match b.get(key) {
                    Some(other) => assert_kept(value, other, &child, file),
                    // Zero values are omitted on output, as Kubernetes' omitempty does.
                    None if is_zero(value) => {}
                    None => panic!("{file}: {child} was lost"),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            // Pods gain the default not-ready/unreachable tolerations, after the user's.
            if path == "spec.tolerations" {
                assert!(b.len() >= a.len(), "{file}: {path} lost entries");
            } else {
                assert_eq!(a.len(), b.len(), "{file}: {path} changed length");
            }
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                assert_kept(x, y, &format!("{path}[{i}]"), file);
            }
        }
        _ => assert_eq!(sent, got, "{file}: {path} changed"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_round_trips_from_yaml_through_the_api() {
    let cluster = common::start().await;
    let client = &cluster.client;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto/tests/manifests");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    // Namespaces first: other objects may live in them.
    files.sort_by_key(|p| !p.file_name().unwrap().to_string_lossy().starts_with("namespace"));
    let mut kinds = std::collections::HashSet::new();
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(file).unwrap();
        for document in codec::parse_documents(&text).unwrap() {
            let object = codec::decode_object(&document).unwrap_or_else(|e| panic!("{name}: {e}"));
            kinds.insert(object.info.kind);
            let meta = object.metadata();
            let created = client
                .create(object.info, &meta.namespace, object.bytes.clone(), false)
                .await
                .unwrap_or_else(|e| panic!("{name}: create failed: {e}"));
            let fetched = client.get(object.info, &meta.namespace, &meta.name).await.unwrap();
            let back = DynamicObject::new(object.info, fetched).to_json();
            let answered = DynamicObject::new(object.info, created).to_json();
            assert_eq!(answered, back, "{name}: create answers what get reads");
            assert_kept(&document_in_served_version(&document, object.info), &back, "", &name);
        }
    }
    assert_eq!(kinds.len(), proto::KINDS.len(), "a manifest for every kind: have {kinds:?}");
}

/// The document as the served version writes it (old apiVersions are converted).
fn document_in_served_version(document: &Value, info: &proto::KindInfo) -> Value {
    let mut document = document.clone();
    document["apiVersion"] = Value::String(info.api_version());
    document
}

fn pod(name: &str) -> Pod {
    Pod {
        metadata: Some(ObjectMeta { name: name.to_string(), ..Default::default() }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "c".to_string(),
                image: "busybox:1.36".to_string(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_get_update_delete_follow_kubernetes_rules() {
    let cluster = common::start().await;
    let api: Api<ConfigMap> = Api::namespaced(&cluster.client, "default");
    let created = api.create(&common::config_map("a", "k", "v")).await.unwrap();
    let meta = created.metadata();
    assert!(!meta.uid.is_empty() && meta.creation_timestamp.is_some() && !meta.resource_version.is_empty());
    assert_eq!(meta.namespace, "default");

    let error = api.create(&common::config_map("a", "k", "v")).await.unwrap_err();
    assert!(error.is(Reason::AlreadyExists), "{error}");
    assert_eq!(error.message(), "configmaps \"a\" already exists");

    let error = api.get("missing").await.unwrap_err();
    assert!(error.is(Reason::NotFound), "{error}");

    // A stale resourceVersion is a Conflict; the fresh one wins.
    let mut first = created.clone();
    first.data.insert("k".to_string(), "1".to_string());
    api.update(&first).await.unwrap();
    let mut stale = created.clone();
    stale.data.insert("k".to_string(), "2".to_string());
    let error = api.update(&stale).await.unwrap_err();
    assert!(error.is(Reason::Conflict), "{error}");

    // An update that changes nothing writes nothing.
    let current = api.get("a").await.unwrap();
    let same = api.update(&current).await.unwrap();
    assert_eq!(same.metadata().resource_version, current.metadata().resource_version);

    // Invalid objects list their field errors.
    let mut bad = common::config_map("Bad_Name", "k", "v");
    bad.metadata_mut().labels.insert("bad key!".to_string(), "x".to_string());
    let error = api.create(&bad).await.unwrap_err();
    assert!(error.is(Reason::Invalid), "{error}");
    let fields: Vec<&str> = error.causes().iter().map(|c| c.field.as_str()).collect();
    assert!(fields.contains(&"metadata.name") && fields.contains(&"metadata.labels"), "{fields:?}");

    // generateName.
    let mut generated = common::config_map("", "k", "v");
    generated.metadata_mut().generate_name = "gen-".to_string();
    let generated = api.create(&generated).await.unwrap();
    assert!(generated.metadata().name.starts_with("gen-") && generated.metadata().name.len() == 9);

    // Dry run stores nothing.
    let dry = cluster
        .client
        .create(
            &proto::resource::kinds::CONFIG_MAP,
            "default",
            prost::Message::encode_to_vec(&common::config_map("dry", "k", "v")).into(),
            true,
        )
        .await
        .unwrap();
    assert!(!dry.is_empty());
    assert!(api.get_opt("dry").await.unwrap().is_none());

    let (_, removed) = api.delete("a", DeleteOptions::default()).await.unwrap();
    assert!(removed);
    assert!(api.get_opt("a").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_admit_objects_only_while_active() {
    let cluster = common::start().await;
    let client = &cluster.client;
    let error =
        Api::<ConfigMap>::namespaced(client, "nope").create(&common::config_map("x", "k", "v")).await.unwrap_err();
    assert!(error.is(Reason::NotFound), "{error}");
    assert_eq!(error.message(), "namespaces \"nope\" not found");

    let namespaces: Api<Namespace> = Api::all(client);
    let ns = namespaces.create(&common::namespace("team")).await.unwrap();
    assert_eq!(ns.status.as_ref().unwrap().phase, "Active");
    let in_team: Api<ConfigMap> = Api::namespaced(client, "team");
    in_team.create(&common::config_map("x", "k", "v")).await.unwrap();

    let (terminating, removed) = namespaces.delete("team", DeleteOptions::default()).await.unwrap();
    assert!(!removed, "a namespace waits for its finalizer");
    assert_eq!(terminating.status.as_ref().unwrap().phase, "Terminating");
    assert!(terminating.metadata().deletion_timestamp.is_some());
    let error = in_team.create(&common::config_map("y", "k", "v")).await.unwrap_err();
    assert!(error.is(Reason::Forbidden), "{error}");
    assert!(error.message().contains("being terminated"), "{error}");

    // Clearing spec.finalizers (the namespace controller's last step) removes it.
    let mut finalized = namespaces.get("team").await.unwrap();
    finalized.spec.as_mut().unwrap().finalizers.clear();
    namespaces.update(&finalized).await.unwrap();
    assert!(namespaces.get_opt("team").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_bind_once_and_delete_gracefully() {
    let cluster = common::start().await;
    let client = &cluster.client;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let created = pods.create(&pod("web")).await.unwrap();
    let spec = created.spec.as_ref().unwrap();
    assert_eq!(spec.restart_policy, "Always");
    assert_eq!(spec.termination_grace_period_seconds, Some(30));
    assert_eq!(spec.containers[0].image_pull_policy, "IfNotPresent");
    assert_eq!(created.status.as_ref().unwrap().phase, "Pending");

    let binding = |node: &str| Binding {
        metadata: Some(ObjectMeta { name: "web".to_string(), namespace: "default".to_string(), ..Default::default() }),
        target: Some(ObjectReference { kind: "Node".to_string(), name: node.to_string(), ..Default::default() }),
    };
    // Preemption nominated another node; the binding spends the nomination.
    let mut nominated = created.clone();
    nominated.status.get_or_insert_with(Default::default).nominated_node_name = "node-9".to_string();
    pods.update_status(&nominated).await.unwrap();
    client.bind(binding("node-1")).await.unwrap();
    let bound = pods.get("web").await.unwrap();
    assert_eq!(bound.spec.as_ref().unwrap().node_name, "node-1");
    assert_eq!(bound.status.as_ref().unwrap().nominated_node_name, "", "the nomination is cleared by the binding");
    let scheduled = bound.status.as_ref().unwrap().conditions.iter().find(|c| c.r#type == "PodScheduled").unwrap();
    assert_eq!(scheduled.status, "True");
    let error = client.bind(binding("node-2")).await.unwrap_err();
    assert!(error.is(Reason::Conflict), "{error}");

    // The field selector the kubelet uses.
    let on_node = pods.list(&ListParams::fields("spec.nodeName=node-1")).await.unwrap();
    assert_eq!(on_node.items.len(), 1);
    let error = pods.list(&ListParams::fields("spec.bogus=1")).await.unwrap_err();
    assert!(error.is(Reason::BadRequest) && error.message().contains("spec.bogus"), "{error}");

    // A bound pod is deleted gracefully; the kubelet's grace-0 delete removes it.
    let (terminating, removed) = pods.delete("web", DeleteOptions::default()).await.unwrap();
    assert!(!removed);
    assert_eq!(terminating.metadata().deletion_grace_period_seconds, Some(30));
    assert!(terminating.metadata().deletion_timestamp.is_some());
    let (_, removed) =
        pods.delete("web", DeleteOptions { grace_period_seconds: Some(0), ..Default::default() }).await.unwrap();
    assert!(removed);

    // An unbound pod goes at once.
    pods.create(&pod("loose")).await.unwrap();
    let (_, removed) = pods.delete("loose", DeleteOptions::default()).await.unwrap();
    assert!(removed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalizers_hold_objects_until_cleared() {
    let cluster = common::start().await;
    let api: Api<ConfigMap> = Api::namespaced(&cluster.client, "default");
    let mut cm = common::config_map("held", "k", "v");
    cm.metadata_mut().finalizers.push("example.com/hold".to_string());
    api.create(&cm).await.unwrap();
    let (held, removed) = api.delete("held", DeleteOptions::default()).await.unwrap();
    assert!(!removed && held.metadata().deletion_timestamp.is_some());
    // No new finalizers once deletion has started.
    let mut more = api.get("held").await.unwrap();
    more.metadata_mut().finalizers.push("example.com/more".to_string());
    let error = api.update(&more).await.unwrap_err();
    assert!(error.is(Reason::Invalid), "{error}");
    let mut cleared = api.get("held").await.unwrap();
    cleared.metadata_mut().finalizers.clear();
    api.update(&cleared).await.unwrap();
    assert!(api.get_opt("held").await.unwrap().is_none());

    // Foreground and orphan propagation leave their finalizers for the garbage collector.
    api.create(&common::config_map("fg", "k", "v")).await.unwrap();
    let (held, _) = api
        .delete("fg", DeleteOptions { propagation_policy: "Foreground".to_string(), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(held.metadata().finalizers, ["foregroundDeletion"]);
}

fn deployment(name: &str, image: &str) -> Deployment {
    let text = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: 2\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      containers: [{{name: c, image: \"{image}\"}}]\n"
    );
    codec::decode(&codec::parse_documents(&text).unwrap()[0]).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_spec_are_updated_apart_and_generation_counts_spec_changes() {
    let cluster = common::start().await;
    let api: Api<Deployment> = Api::namespaced(&cluster.client, "default");
    let created = api.create(&deployment("web", "nginx:1")).await.unwrap();
    assert_eq!(created.metadata().generation, 1);

    // Update ignores status.
    let mut with_status = created.clone();
    with_status.status.get_or_insert_with(Default::default).replicas = 5;
    let updated = api.update(&with_status).await.unwrap();
    assert!(updated.status.as_ref().is_none_or(|s| s.replicas == 0));
    assert_eq!(updated.metadata().generation, 1, "no spec change, no new generation");

    // UpdateStatus ignores spec.
    let mut status_update = updated.clone();
    status_update.status.get_or_insert_with(Default::default).replicas = 2;
    status_update.spec.as_mut().unwrap().replicas = Some(9);
    let after_status = api.update_status(&status_update).await.unwrap();
    assert_eq!(after_status.status.as_ref().unwrap().replicas, 2);
    assert_eq!(after_status.spec.as_ref().unwrap().replicas, Some(2));

    // A spec change bumps generation; a merge patch works and validates strictly.
    let patched = api.patch("web", PatchType::Merge, &serde_json::json!({"spec": {"replicas": 3}})).await.unwrap();
    assert_eq!(patched.metadata().generation, 2);
    assert_eq!(patched.spec.as_ref().unwrap().replicas, Some(3));
    let error = api.patch("web", PatchType::Merge, &serde_json::json!({"spec": {"replicaz": 3}})).await.unwrap_err();
    assert!(error.is(Reason::Invalid), "{error}");
    assert!(error.message().contains("spec.replicaz: unknown field (did you mean \"replicas\"?)"), "{error}");
}

async fn names(client: &Client, params: &ListParams) -> (Vec<String>, String) {
    let page = Api::<ConfigMap>::namespaced(client, "default").list(params).await.unwrap();
    (page.items.iter().map(|c| c.metadata().name.clone()).collect(), page.continue_token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_page_through_one_snapshot_and_filter_by_labels() {
    let cluster = common::start().await;
    let api: Api<ConfigMap> = Api::namespaced(&cluster.client, "default");
    for i in 0..10 {
        let mut cm = common::config_map(&format!("cm-{i}"), "k", "v");
        cm.metadata_mut().labels.insert("parity".to_string(), if i % 2 == 0 { "even" } else { "odd" }.to_string());
        api.create(&cm).await.unwrap();
    }
    let mut params = ListParams { limit: 4, ..Default::default() };
    let (first, token) = names(&cluster.client, &params).await;
    assert_eq!(first, ["cm-0", "cm-1", "cm-2", "cm-3"]);
    // Written between pages: not in this list's snapshot.
    api.create(&common::config_map("cm-45", "k", "v")).await.unwrap();
    params.continue_token = token;
    let (second, token) = names(&cluster.client, &params).await;
    assert_eq!(second, ["cm-4", "cm-5", "cm-6", "cm-7"]);
    params.continue_token = token;
    let (third, token) = names(&cluster.client, &params).await;
    assert_eq!(third, ["cm-8", "cm-9"]);
    assert!(token.is_empty());

    let (odd, _) = names(&cluster.client, &ListParams::labels("parity in (odd),parity!=even")).await;
    assert_eq!(odd, ["cm-1", "cm-3", "cm-5", "cm-7", "cm-9"]);
    let error = api.list(&ListParams::labels("parity in (odd")).await.unwrap_err();
    assert!(error.is(Reason::BadRequest), "{error}");
}
