//! What every apiserver integration test starts with: a real etcd, the real
//! apiserver binary, and a client. Dropping the cluster stops both.

#![allow(dead_code)]

use client::Client;

pub struct TestCluster {
    pub client: Client,
    pub apiserver: testkit::ApiServer,
    pub etcd: testkit::Etcd,
}

pub async fn start() -> TestCluster {
    start_with(&[]).await
}

pub async fn start_with(args: &[&str]) -> TestCluster {
    let etcd = testkit::Etcd::start().await.expect("etcd starts");
    let apiserver = testkit::ApiServer::start_with(&etcd.endpoints(), args).await.expect("the apiserver starts");
    let client = Client::new(&apiserver.grpc_endpoint(), "default").expect("a client");
    TestCluster { client, apiserver, etcd }
}

/// A ConfigMap with one key.
pub fn config_map(name: &str, key: &str, value: &str) -> proto::core::v1::ConfigMap {
    proto::core::v1::ConfigMap {
        metadata: Some(proto::meta::v1::ObjectMeta { name: name.to_string(), ..Default::default() }),
        data: [(key.to_string(), value.to_string())].into_iter().collect(),
        ..Default::default()
    }
}

pub fn namespace(name: &str) -> proto::core::v1::Namespace {
    proto::core::v1::Namespace {
        metadata: Some(proto::meta::v1::ObjectMeta { name: name.to_string(), ..Default::default() }),
        ..Default::default()
    }
}
