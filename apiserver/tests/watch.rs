//! Watch exactness: every change after a revision, once, in order; resumption from
//! the middle; Expired for revisions the server no longer has; filters that objects
//! move into and out of.

mod common;

use std::time::Duration;

use client::{Api, ListParams, WatchEvent};
use futures::StreamExt as _;
use proto::Reason;
use proto::Resource as _;
use proto::core::v1::ConfigMap;

const UPDATES: usize = 1000;

async fn next_event(stream: &mut client::api::WatchStream<ConfigMap>) -> WatchEvent<ConfigMap> {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .expect("an event within 20s")
            .expect("the stream stays open")
            .expect("no watch error");
        if !matches!(event, WatchEvent::Bookmark(_)) {
            return event;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_from_a_revision_sees_every_update_once_in_order_and_resumes_from_the_middle() {
    let cluster = common::start().await;
    let api: Api<ConfigMap> = Api::namespaced(&cluster.client, "default");
    let created = api.create(&common::config_map("w", "n", "0")).await.unwrap();
    let start = created.metadata().resource_version.clone();

    let mut first = api.watch(&ListParams::default(), &start).await.unwrap();
    let writer = {
        let api = api.clone();
        tokio::spawn(async move {
            let mut current = api.get("w").await.unwrap();
            for i in 1..=UPDATES {
                current.data.insert("n".to_string(), i.to_string());
                current = api.update(&current).await.unwrap();
            }
        })
    };

    let mut revisions = Vec::with_capacity(UPDATES);
    for i in 1..=UPDATES {
        match next_event(&mut first).await {
            WatchEvent::Modified(cm) => {
                assert_eq!(cm.data["n"], i.to_string(), "update {i} arrives in order");
                revisions.push(cm.metadata().resource_version.parse::<i64>().unwrap());
            }
            other => panic!("expected MODIFIED {i}, got {other:?}"),
        }
    }
    writer.await.unwrap();
    assert!(revisions.windows(2).all(|w| w[0] < w[1]), "revisions increase");

    // Resume from the 500th update: exactly the 500 after it.
    let middle = revisions[UPDATES / 2 - 1].to_string();
    let mut second = api.watch(&ListParams::default(), &middle).await.unwrap();
    for i in UPDATES / 2 + 1..=UPDATES {
        match next_event(&mut second).await {
            WatchEvent::Modified(cm) => assert_eq!(cm.data["n"], i.to_string()),
            other => panic!("expected MODIFIED {i}, got {other:?}"),
        }
    }
    // And nothing more: a new change is the next thing it sees.
    let mut current = api.get("w").await.unwrap();
    current.data.insert("n".to_string(), "last".to_string());
    api.update(&current).await.unwrap();
    match next_event(&mut second).await {
        WatchEvent::Modified(cm) => assert_eq!(cm.data["n"], "last"),
        other => panic!("expected the last update, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revision_older_than_the_window_or_compacted_is_expired() {
    let cluster = common::start_with(&["--watch-cache-size=100"]).await;
    let api: Api<ConfigMap> = Api::namespaced(&cluster.client, "default");
    let mut current = api.create(&common::config_map("c", "n", "0")).await.unwrap();
    let old = current.metadata().resource_version.clone();
    for i in 1..=300 {
        current.data.insert("n".to_string(), i.to_string());
        current = api.update(&current).await.unwrap();
    }
    let error = match api.watch(&ListParams::default(), &old).await {
        Ok(mut stream) => stream.next().await.expect("an error").expect_err("the watch fails"),
        Err(e) => e,
    };
    assert!(error.is(Reason::Expired), "{error}");

    // Compact etcd past `old` and restart the apiserver: the reloaded cache starts
    // after the compaction, so `old` is gone for good.
    let mut etcd = cluster.etcd.client().await.unwrap();
    let latest: i64 = current.metadata().resource_version.parse().unwrap();
    etcd.compact(latest, None).await.unwrap();
    let mut cluster = cluster;
    cluster.apiserver.restart().await.unwrap();
    let error = match api.watch(&ListParams::default(), &old).await {
        Ok(mut stream) => stream.next().await.expect("an error").expect_err("the watch fails"),
        Err(e) => e,
    };
    assert!(error.is(Reason::Expired), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_filtered_watches_see_objects_enter_and_leave() {
    let cluster = common::start().await;
    let api: Api<ConfigMap> = Api::namespaced(&cluster.client, "default");
    let mut cm = api.create(&common::config_map("f", "k", "v")).await.unwrap();
    let start = cm.metadata().resource_version.clone();
    let mut watch = api.watch(&ListParams::labels("app=web"), &start).await.unwrap();

    cm.metadata_mut().labels.insert("app".to_string(), "web".to_string());
    cm = api.update(&cm).await.unwrap();
    assert!(matches!(next_event(&mut watch).await, WatchEvent::Added(_)), "entering the selector is ADDED");
    cm.data.insert("k".to_string(), "w".to_string());
    cm = api.update(&cm).await.unwrap();
    assert!(matches!(next_event(&mut watch).await, WatchEvent::Modified(_)));
    cm.metadata_mut().labels.insert("app".to_string(), "db".to_string());
    api.update(&cm).await.unwrap();
    assert!(matches!(next_event(&mut watch).await, WatchEvent::Deleted(_)), "leaving the selector is DELETED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_without_a_revision_starts_with_the_current_state() {
    let cluster = common::start().await;
    let api: Api<ConfigMap> = Api::namespaced(&cluster.client, "default");
    for name in ["a", "b", "c"] {
        api.create(&common::config_map(name, "k", "v")).await.unwrap();
    }
    let mut watch = api.watch(&ListParams::default(), "").await.unwrap();
    let mut names = Vec::new();
    for _ in 0..3 {
        match next_event(&mut watch).await {
            WatchEvent::Added(cm) => names.push(cm.metadata().name.clone()),
            other => panic!("expected ADDED, got {other:?}"),
        }
    }
    names.sort();
    assert_eq!(names, ["a", "b", "c"]);
    api.delete("b", Default::default()).await.unwrap();
    match next_event(&mut watch).await {
        WatchEvent::Deleted(cm) => assert_eq!(cm.metadata().name, "b"),
        other => panic!("expected DELETED, got {other:?}"),
    }
}

/// The server encodes a created object once and appends its resourceVersion, and the
/// watch cache keeps the bytes etcd sends rather than re-encoding them: every way of
/// reading the object must still give the same object at the same resourceVersion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_object_reads_the_same_from_its_response_etcd_the_cache_and_the_watch() {
    let cluster = common::start().await;
    let api: Api<ConfigMap> = Api::namespaced(&cluster.client, "default");
    let before = api.create(&common::config_map("before", "k", "v")).await.unwrap();
    let mut stream = api.watch(&ListParams::default(), &before.metadata().resource_version).await.unwrap();

    let mut sent = common::config_map("same", "k", "v");
    sent.metadata_mut().labels.insert("app".to_string(), "web".to_string());
    let created = api.create(&sent).await.unwrap();
    let revision: i64 = created.metadata().resource_version.parse().unwrap();
    assert!(revision > before.metadata().resource_version.parse::<i64>().unwrap());
    assert_eq!(created.data, sent.data);
    assert_eq!(created.metadata().labels, sent.metadata().labels);

    match next_event(&mut stream).await {
        WatchEvent::Added(cm) => assert_eq!(cm, created, "the watch event is the create's response"),
        other => panic!("expected ADDED, got {other:?}"),
    }
    assert_eq!(api.get("same").await.unwrap(), created, "a read from etcd is the create's response");
    // Both label-filtered lists index objects by their labels: from etcd, and (at "0")
    // from the cache, which the event above shows has the object.
    for resource_version in ["", "0"] {
        let params = ListParams { resource_version: resource_version.to_string(), ..ListParams::labels("app=web") };
        let list = api.list(&params).await.unwrap();
        assert_eq!(list.items, vec![created.clone()], "list at {resource_version:?}");
    }
}
