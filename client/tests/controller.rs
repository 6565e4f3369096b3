//! A `Controller` against a real etcd and apiserver: a toy controller keeps a copy
//! of every "parent" ConfigMap, owned by it. Changes of the parent reach the copy,
//! a deleted copy is recreated (the owner is woken through `owns`), a failing
//! reconcile is retried until it succeeds, and a dropped controller acts no more.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use client::runtime::{Action, Controller, RetryPolicy, SharedInformers};
use client::{Api, Client};
use proto::core::v1::ConfigMap;
use proto::meta::v1::{ObjectMeta, OwnerReference};
use proto::{ApiError, Reason};

fn parent(name: &str, value: &str) -> ConfigMap {
    ConfigMap {
        metadata: Some(ObjectMeta {
            name: name.to_string(),
            labels: [("role".to_string(), "parent".to_string())].into_iter().collect(),
            ..Default::default()
        }),
        data: [("value".to_string(), value.to_string())].into_iter().collect(),
        ..Default::default()
    }
}

/// Creates or updates `<parent>-copy` with the parent's data; the first two
/// reconciles of "flaky" fail (an error, then a panic) to exercise retries.
async fn reconcile(
    api: Api<ConfigMap>,
    attempts: Arc<Mutex<HashMap<String, u32>>>,
    key: String,
    object: Option<Arc<ConfigMap>>,
) -> Result<Action, ApiError> {
    let attempt = {
        let mut attempts = attempts.lock().unwrap();
        let n = attempts.entry(key.clone()).or_insert(0);
        *n += 1;
        *n
    };
    let Some(parent) = object else { return Ok(Action::await_change()) };
    let meta = parent.metadata.clone().unwrap_or_default();
    if meta.labels.get("role").map(String::as_str) != Some("parent") {
        return Ok(Action::await_change());
    }
    if meta.name == "flaky" && attempt == 1 {
        return Err(ApiError::new(Reason::InternalError, format!("flaky failure {attempt}")));
    }
    if meta.name == "flaky" && attempt == 2 {
        panic!("a reconcile that panics (on purpose, in a test)");
    }
    let name = format!("{}-copy", meta.name);
    match api.get_opt(&name).await? {
        None => {
            let copy = ConfigMap {
                metadata: Some(ObjectMeta {
                    name,
                    owner_references: vec![OwnerReference {
                        api_version: "v1".to_string(),
                        kind: "ConfigMap".to_string(),
                        name: meta.name.clone(),
                        uid: meta.uid.clone(),
                        controller: Some(true),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                data: parent.data.clone(),
                ..Default::default()
            };
            api.create(&copy).await?;
        }
        Some(mut copy) if copy.data != parent.data => {
            copy.data = parent.data.clone();
            api.update(&copy).await?;
        }
        Some(_) => {}
    }
    Ok(Action::await_change())
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: not within 20 s");
}

async fn copy_value(api: &Api<ConfigMap>, parent: &str) -> Option<String> {
    let copy = api.get_opt(&format!("{parent}-copy")).await.unwrap()?;
    copy.data.get("value").cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_reconciles_changes_of_its_objects_and_their_children() {
    let etcd = testkit::Etcd::start().await.unwrap();
    let apiserver = testkit::ApiServer::start(&etcd.endpoints()).await.unwrap();
    let client = Client::new(&apiserver.grpc_endpoint(), "default").unwrap();
    let api: Api<ConfigMap> = Api::namespaced(&client, "default");
    // Exists before the controller starts: reached through the cache's replay.
    api.create(&parent("early", "1")).await.unwrap();

    let informers = SharedInformers::new(&client);
    let configmaps = informers.get::<ConfigMap>();
    let attempts: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let controller = Controller::new(configmaps.clone())
        .owns(configmaps)
        .workers(2)
        .retry_policy(RetryPolicy { base: Duration::from_millis(10), max: Duration::from_secs(1) });
    let task = {
        let (api, attempts) = (api.clone(), attempts.clone());
        tokio::spawn(controller.run(move |key, object| reconcile(api.clone(), attempts.clone(), key, object)))
    };

    eventually("the early parent's copy", || async { copy_value(&api, "early").await.as_deref() == Some("1") }).await;

    // A change of the parent reaches the copy.
    let mut early = api.get("early").await.unwrap();
    early.data.insert("value".to_string(), "2".to_string());
    api.update(&early).await.unwrap();
    eventually("the updated copy", || async { copy_value(&api, "early").await.as_deref() == Some("2") }).await;

    // Deleting the child wakes its owner, which recreates it.
    api.delete("early-copy", Default::default()).await.unwrap();
    eventually("the recreated copy", || async { copy_value(&api, "early").await.as_deref() == Some("2") }).await;

    // A reconcile that fails or panics is retried with backoff until it succeeds.
    api.create(&parent("flaky", "x")).await.unwrap();
    eventually("the flaky parent's copy", || async { copy_value(&api, "flaky").await.as_deref() == Some("x") }).await;
    assert!(attempts.lock().unwrap()["default/flaky"] >= 3, "an error and a panic, then success");

    // A dropped controller acts no more.
    task.abort();
    let _ = task.await;
    api.create(&parent("late", "z")).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(copy_value(&api, "late").await, None, "nothing reconciles after the controller is dropped");
    assert!(!attempts.lock().unwrap().contains_key("default/late"));
}
