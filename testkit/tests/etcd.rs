//! The test harness itself: etcd members start, serve, survive a member's death, and are
//! gone when their handles drop.

#[tokio::test]
async fn a_single_etcd_serves_and_is_killed_on_drop() {
    let etcd = testkit::Etcd::start().await.expect("etcd starts");
    let mut client = etcd.client().await.expect("a client");
    client.put("k", "v", None).await.expect("put");
    let value = client.get("k", None).await.expect("get");
    assert_eq!(value.kvs()[0].value(), b"v");
    let endpoint = etcd.endpoints()[0].trim_start_matches("http://").to_string();
    drop(client);
    drop(etcd);
    assert!(std::net::TcpStream::connect(&endpoint).is_err(), "etcd still listens after drop");
}

#[tokio::test]
async fn a_three_member_cluster_keeps_quorum_with_one_member_down() {
    let mut cluster = testkit::EtcdCluster::start(3).await.expect("cluster starts");
    let mut client = cluster.client().await.expect("a client");
    client.put("before", "1", None).await.expect("put");
    cluster.kill(1);
    // The client's channel to the dead member breaks once; a retry goes to another.
    let mut attempts = 0;
    while let Err(error) = client.put("during", "2", None).await {
        attempts += 1;
        assert!(attempts < 20, "no write succeeded with one member down: {error}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    cluster.restart(1).await.expect("the member rejoins");
    let mut rejoined = etcd_client::Client::connect([cluster.endpoints()[1].as_str()], None).await.expect("connect");
    let during = rejoined.get("during", None).await.expect("read from the rejoined member");
    assert_eq!(during.kvs()[0].value(), b"2");
}
