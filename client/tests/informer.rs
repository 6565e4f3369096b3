//! Informers against a real etcd and apiserver: the store follows creates, updates
//! and deletes; a subscriber joining late sees the current state first; after an
//! apiserver restart (watch Expired) the informer relists and reports what vanished
//! while it was away.

use std::time::Duration;

use client::runtime::{Change, Informer, SharedInformers};
use client::{Api, Client, ListParams};
use futures::StreamExt as _;
use proto::core::v1::ConfigMap;
use proto::labels::Selector;
use proto::meta::v1::ObjectMeta;
use tokio::sync::mpsc::UnboundedReceiver;

fn config_map(name: &str, app: &str) -> ConfigMap {
    ConfigMap {
        metadata: Some(ObjectMeta {
            name: name.to_string(),
            labels: [("app".to_string(), app.to_string())].into_iter().collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn next(changes: &mut UnboundedReceiver<Change<ConfigMap>>) -> Change<ConfigMap> {
    tokio::time::timeout(Duration::from_secs(20), changes.recv())
        .await
        .expect("a change within 20 s")
        .expect("the informer is running")
}

fn name(change: &Change<ConfigMap>) -> String {
    change.object().metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_and_subscribers_follow_every_change() {
    let etcd = testkit::Etcd::start().await.unwrap();
    let apiserver = testkit::ApiServer::start(&etcd.endpoints()).await.unwrap();
    let client = Client::new(&apiserver.grpc_endpoint(), "default").unwrap();
    let api: Api<ConfigMap> = Api::namespaced(&client, "default");
    api.create(&config_map("before", "web")).await.unwrap();

    let informers = SharedInformers::new(&client);
    let informer = informers.get::<ConfigMap>();
    assert!(std::sync::Arc::ptr_eq(&informer, &informers.get::<ConfigMap>()), "one informer per kind");
    informer.wait_synced().await;
    let store = informer.store();
    assert!(store.get_named("default", "before").is_some());

    let mut changes = informer.subscribe();
    let first = next(&mut changes).await;
    assert!(matches!(first, Change::Added(_)) && name(&first) == "before", "replay of the cache: {first:?}");

    api.create(&config_map("after", "db")).await.unwrap();
    let added = next(&mut changes).await;
    assert!(matches!(added, Change::Added(_)) && name(&added) == "after");
    let mut changed = api.get("after").await.unwrap();
    changed.data.insert("k".to_string(), "v".to_string());
    api.update(&changed).await.unwrap();
    match next(&mut changes).await {
        Change::Updated { old, new } => {
            assert!(old.data.is_empty());
            assert_eq!(new.data["k"], "v");
        }
        other => panic!("expected an update, got {other:?}"),
    }
    api.delete("before", Default::default()).await.unwrap();
    let deleted = next(&mut changes).await;
    assert!(matches!(deleted, Change::Deleted(_)) && name(&deleted) == "before");

    assert!(store.get_named("default", "before").is_none());
    assert_eq!(store.select(Some("default"), &Selector::parse("app=db").unwrap()).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_the_informer_relists_and_reports_what_vanished() {
    let etcd = testkit::Etcd::start().await.unwrap();
    let mut apiserver = testkit::ApiServer::start(&etcd.endpoints()).await.unwrap();
    let client = Client::new(&apiserver.grpc_endpoint(), "default").unwrap();
    let api: Api<ConfigMap> = Api::namespaced(&client, "default");
    for n in ["stays", "goes"] {
        api.create(&config_map(n, "web")).await.unwrap();
    }
    let informer = Informer::new(Api::<ConfigMap>::all(&client), ListParams::default());
    let task = tokio::spawn(informer.clone().run());
    informer.wait_synced().await;
    let mut changes = informer.subscribe();
    for _ in 0..2 {
        assert!(matches!(next(&mut changes).await, Change::Added(_)));
    }

    // While the apiserver is down, "goes" disappears from etcd behind its back.
    apiserver.kill();
    let mut etcd_client = etcd.client().await.unwrap();
    let key = format!("/registry-{}/configmaps/default/goes", apiserver.grpc_endpoint().rsplit(':').next().unwrap());
    let deleted = etcd_client.delete(key.as_str(), None).await.unwrap();
    assert_eq!(deleted.deleted(), 1, "the test knows the storage layout ({key})");
    apiserver.restart().await.unwrap();

    // The restarted server answers Expired to the old revision; the relist finds
    // the object gone.
    let change = next(&mut changes).await;
    assert!(matches!(change, Change::Deleted(_)) && name(&change) == "goes", "{change:?}");
    assert!(informer.store().get_named("default", "stays").is_some());
    // And the informer watches again afterwards.
    api.create(&config_map("new", "web")).await.unwrap();
    let change = next(&mut changes).await;
    assert!(matches!(change, Change::Added(_)) && name(&change) == "new", "{change:?}");
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kind_larger_than_one_list_page_is_cached_whole() {
    let etcd = testkit::Etcd::start().await.unwrap();
    let apiserver = testkit::ApiServer::start(&etcd.endpoints()).await.unwrap();
    let client = Client::new(&apiserver.grpc_endpoint(), "default").unwrap();
    let api: Api<ConfigMap> = Api::namespaced(&client, "default");
    // More than two pages of the informer's 500-object lists.
    const COUNT: usize = 1_100;
    let creates = futures::stream::iter(0..COUNT)
        .map(|n| {
            let api = api.clone();
            async move { api.create(&config_map(&format!("cm-{n}"), if n % 2 == 0 { "even" } else { "odd" })).await }
        })
        .buffer_unordered(16);
    let created: Vec<_> = creates.collect().await;
    assert!(created.iter().all(Result::is_ok), "every create succeeds");

    let informers = SharedInformers::new(&client);
    let informer = informers.get::<ConfigMap>();
    informer.wait_synced().await;
    let store = informer.store();
    assert_eq!(store.len(), COUNT, "no object lost or repeated across pages");
    assert_eq!(store.select(Some("default"), &Selector::parse("app=odd").unwrap()).len(), COUNT / 2);
    assert!(store.get_named("default", "cm-0").is_some() && store.get_named("default", "cm-1099").is_some());
}
