//! The apiserver as an operator sees it: health and metrics endpoints, bookmarks on
//! idle watches, slow watchers closed with a reason, and a clean stop on SIGTERM.

mod common;

use std::time::Duration;

use client::{Api, ListParams, WatchEvent};
use futures::StreamExt as _;
use proto::Reason;
use proto::Resource as _;
use proto::core::v1::{ConfigMap, Secret};
use proto::meta::v1::ObjectMeta;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics_report_the_server_at_work() {
    let cluster = common::start().await;
    let api: Api<ConfigMap> = Api::namespaced(&cluster.client, "default");
    api.create(&common::config_map("m", "k", "v")).await.unwrap();
    let missing = api.get("absent").await.unwrap_err();
    assert!(missing.is(Reason::NotFound));

    let (code, body) = cluster.apiserver.http_get("/healthz").await.unwrap();
    assert_eq!((code, body.trim()), (200, "ok"));
    let (code, _) = cluster.apiserver.http_get("/readyz").await.unwrap();
    assert_eq!(code, 200);
    let (code, metrics) = cluster.apiserver.http_get("/metrics").await.unwrap();
    assert_eq!(code, 200);
    let line = |prefix: &str| metrics.lines().find(|l| l.starts_with(prefix)).map(str::to_string);
    let created = line("apiserver_requests_total{verb=\"create\",resource=\"configmaps\",code=\"OK\"}");
    assert!(created.is_some_and(|l| l.ends_with(" 1")), "{metrics}");
    assert!(line("apiserver_requests_total{verb=\"get\",resource=\"configmaps\",code=\"NotFound\"}").is_some());
    assert!(line("apiserver_request_duration_seconds_bucket{").is_some(), "latency histograms");
    assert!(line("apiserver_etcd_request_duration_seconds_bucket{").is_some(), "etcd latency histograms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_while_etcd_is_down() {
    let mut cluster = common::start().await;
    cluster.etcd.kill();
    let mut last = (0, String::new());
    for _ in 0..100 {
        last = cluster.apiserver.http_get("/readyz").await.unwrap();
        if last.0 != 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last.0, 503, "readyz with etcd gone: {last:?}");
    assert!(last.1.contains("etcd"), "the reason names etcd: {}", last.1);
    let (code, _) = cluster.apiserver.http_get("/healthz").await.unwrap();
    assert_eq!(code, 200, "the process itself is healthy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_watch_gets_bookmarks_as_other_kinds_change() {
    let cluster = common::start().await;
    let configmaps: Api<ConfigMap> = Api::namespaced(&cluster.client, "default");
    let secrets: Api<Secret> = Api::namespaced(&cluster.client, "default");
    let start = configmaps.list(&ListParams::default()).await.unwrap().resource_version;
    let mut watch = configmaps.watch(&ListParams::default(), &start).await.unwrap();
    let secret =
        Secret { metadata: Some(ObjectMeta { name: "s".to_string(), ..Default::default() }), ..Default::default() };
    let written = secrets.create(&secret).await.unwrap().metadata().resource_version.clone();
    // etcd's timed progress notifications come every 5 s in tests.
    let event = tokio::time::timeout(Duration::from_secs(30), watch.next())
        .await
        .expect("a bookmark within 30 s")
        .expect("the stream stays open")
        .expect("no error");
    match event {
        WatchEvent::Bookmark(rv) => {
            let (rv, written): (i64, i64) = (rv.parse().unwrap(), written.parse().unwrap());
            assert!(rv >= written, "the bookmark {rv} covers the secret's revision {written}");
        }
        other => panic!("expected a bookmark, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_does_not_read_is_closed_with_a_reason_and_others_continue() {
    let cluster = common::start_with(&["--watch-cache-size", "100"]).await;
    let api: Api<ConfigMap> = Api::namespaced(&cluster.client, "default");
    let start = api.list(&ListParams::default()).await.unwrap().resource_version;
    let mut stalled = api.watch(&ListParams::default(), &start).await.unwrap();
    let mut reader = api.watch(&ListParams::default(), &start).await.unwrap();
    let big = "x".repeat(32 * 1024);
    let writes = 400;
    let writer = {
        let api = api.clone();
        tokio::spawn(async move {
            for i in 0..writes {
                api.create(&common::config_map(&format!("c{i}"), "k", &big)).await.unwrap();
            }
        })
    };
    let mut seen = 0;
    while seen < writes {
        match tokio::time::timeout(Duration::from_secs(30), reader.next()).await.expect("the reader keeps up") {
            Some(Ok(WatchEvent::Added(_))) => seen += 1,
            Some(Ok(WatchEvent::Bookmark(_))) => {}
            other => panic!("the reading watch got {other:?}"),
        }
    }
    writer.await.unwrap();
    // 400 × 32 KiB is far more than the transport buffers and the 100-event window:
    // the stalled watch ends with an error saying it fell behind.
    let mut error = None;
    while let Some(item) = stalled.next().await {
        if let Err(e) = item {
            error = Some(e);
            break;
        }
    }
    let error = error.expect("the stalled watch is closed with an error");
    assert!(error.is(Reason::TooManyRequests), "{error}");
    assert!(error.message().contains("behind"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_watches_and_exits_cleanly() {
    let mut cluster = common::start().await;
    let api: Api<ConfigMap> = Api::namespaced(&cluster.client, "default");
    let mut watch = api.watch(&ListParams::default(), "").await.unwrap();
    let status = cluster.apiserver.terminate().expect("the apiserver exits");
    assert!(status.success(), "exit status {status:?}; log:\n{}", cluster.apiserver.log());
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match watch.next().await {
                None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "open watches end when the server stops");
}
