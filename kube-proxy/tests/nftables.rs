//! The real kube-proxy in nftables mode, in a node namespace with pods on a bridge
//! (see `common`): ClusterIPs spread over endpoints, NodePorts from outside the node,
//! hairpin, rejection without endpoints, endpoint changes, ClientIP affinity, UDP with
//! stale conntrack entries, health and metrics, and --cleanup.

mod common;

use std::collections::BTreeSet;

use common::{Cluster, World, cluster_address, node_port_address, tally};
use serde_json::json;

/// A world with pods a and b serving TCP 8080 and UDP 5353, and a client pod c.
fn world() -> World {
    let mut world = World::new();
    for (name, host) in [("a", 10), ("b", 11), ("c", 20)] {
        world.add_pod(name, host);
        common::serve_tcp(world.pod(name), 8080, &format!("pod-{name}"));
        common::serve_udp(world.pod(name), 5353, &format!("pod-{name}"));
    }
    world
}

fn ip_of(world: &World, name: &str) -> std::net::Ipv4Addr {
    world.pods.iter().find(|(n, _, _)| n == name).unwrap().2
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_ips_and_node_ports_reach_every_endpoint_and_hairpin_works() {
    let mut cluster = Cluster::start(world()).await;
    let web = cluster
        .create_service(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"type": "NodePort", "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
        }))
        .await;
    let (a, b) = (ip_of(&cluster.world, "a"), ip_of(&cluster.world, "b"));
    cluster.set_endpoints("web", "http", "TCP", 8080, &[a, b]).await;
    cluster.start_proxy(&["--cluster-cidr", common::CLUSTER_CIDR]).await;

    let address = cluster_address(&web);
    let replies = common::tcp_requests(cluster.world.pod("c"), address, 40).await;
    let counts = tally(&replies);
    assert_eq!(
        counts.keys().cloned().collect::<BTreeSet<_>>(),
        BTreeSet::from(["pod-a".to_string(), "pod-b".to_string()]),
        "40 requests to {address} should reach both endpoints: {counts:?}"
    );

    // NodePort, from a namespace outside the node, on the node's InternalIP.
    let node_port = node_port_address(&web);
    let replies = common::tcp_requests(&cluster.world.outside, node_port, 10).await;
    assert!(replies.iter().all(|r| r == "pod-a" || r == "pod-b"), "{replies:?}");

    // From the node itself (the output hook), to both the ClusterIP and the NodePort.
    let replies = common::tcp_requests(&cluster.world.node, address, 5).await;
    assert!(replies.iter().all(|r| r == "pod-a" || r == "pod-b"), "{replies:?}");
    let replies = common::tcp_requests(&cluster.world.node, node_port, 5).await;
    assert!(replies.iter().all(|r| r == "pod-a" || r == "pod-b"), "{replies:?}");

    // Hairpin: an endpoint reaching its own Service, over enough requests to pick itself.
    let replies = common::tcp_requests(cluster.world.pod("a"), address, 20).await;
    assert!(replies.iter().any(|r| r == "pod-a"), "pod a never reached itself: {replies:?}");

    let (status, body) = common::http_get(&cluster.world.node, &cluster.http, "/healthz").await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("ok: last successful sync"), "{body}");
    let (status, metrics) = common::http_get(&cluster.world.node, &cluster.http, "/metrics").await.unwrap();
    assert_eq!(status, 200);
    assert!(metrics.contains("kubeproxy_sync_proxy_rules_duration_seconds_bucket"), "{metrics}");
    assert!(metrics.contains("kubeproxy_sync_proxy_rules_count "), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_endpoints_reject_at_once_and_removing_an_endpoint_moves_traffic() {
    let mut cluster = Cluster::start(world()).await;
    let empty = cluster
        .create_service(json!({
            "metadata": {"name": "empty", "namespace": "default"},
            "spec": {"ports": [{"port": 81, "targetPort": 8080}]},
        }))
        .await;
    let web = cluster
        .create_service(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
        }))
        .await;
    let (a, b) = (ip_of(&cluster.world, "a"), ip_of(&cluster.world, "b"));
    cluster.set_endpoints("web", "http", "TCP", 8080, &[a, b]).await;
    cluster.start_proxy(&[]).await;

    let error = common::tcp_request(cluster.world.pod("c"), cluster_address(&empty)).await.unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::ConnectionRefused, "a Service without endpoints: {error}");

    let address = cluster_address(&web);
    cluster.set_endpoints("web", "http", "TCP", 8080, &[b]).await;
    // Once the change is programmed (the endpoint maps hold "<key> : <address> . <port>"),
    // every request goes to b.
    let (a_target, b_target) = (format!(": {a} . 8080"), format!(": {b} . 8080"));
    cluster.wait_table("removing a", |table| table.contains(&b_target) && !table.contains(&a_target)).await;
    let replies = common::tcp_requests(cluster.world.pod("c"), address, 20).await;
    assert!(replies.iter().all(|r| r == "pod-b"), "{replies:?}\n{}", cluster.proxy_log());

    // The last endpoint leaving: refused again, not a hang.
    cluster.set_endpoints("web", "http", "TCP", 8080, &[]).await;
    common::wait_tcp(cluster.world.pod("c"), address, "without endpoints", |r| {
        r.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused)
    })
    .await;
    // And the endpoints coming back restore it.
    cluster.set_endpoints("web", "http", "TCP", 8080, &[a]).await;
    common::wait_tcp(cluster.world.pod("c"), address, "with a back", |r| r.as_ref().is_ok_and(|r| r == "pod-a")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ip_affinity_sticks_and_udp_follows_endpoint_changes() {
    let mut cluster = Cluster::start(world()).await;
    let sticky = cluster
        .create_service(json!({
            "metadata": {"name": "sticky", "namespace": "default"},
            "spec": {
                "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
                "sessionAffinity": "ClientIP",
                "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}},
            },
        }))
        .await;
    let dns = cluster
        .create_service(json!({
            "metadata": {"name": "dns", "namespace": "default"},
            "spec": {"ports": [{"name": "dns", "protocol": "UDP", "port": 53, "targetPort": 5353}]},
        }))
        .await;
    let (a, b) = (ip_of(&cluster.world, "a"), ip_of(&cluster.world, "b"));
    cluster.set_endpoints("sticky", "http", "TCP", 8080, &[a, b]).await;
    cluster.set_endpoints("dns", "dns", "UDP", 5353, &[a]).await;
    cluster.start_proxy(&[]).await;

    let replies = common::tcp_requests(cluster.world.pod("c"), cluster_address(&sticky), 30).await;
    let counts = tally(&replies);
    assert_eq!(counts.len(), 1, "ClientIP affinity: one client, one endpoint: {counts:?}");
    // Another client is free to land elsewhere, and sticks too.
    let replies = common::tcp_requests(&cluster.world.outside, cluster_address(&sticky), 10).await;
    assert_eq!(tally(&replies).len(), 1, "{replies:?}");

    // UDP: answers from a, then, from the very same client socket, from b once a is
    // gone: its conntrack entry to a has to be cleared for that.
    let address = cluster_address(&dns);
    let client = common::UdpClient::new(cluster.world.pod("c"));
    client.wait(address, "UDP to a", |r| r.as_deref() == Some("pod-a")).await;
    for _ in 0..3 {
        assert_eq!(client.ask(address).await.as_deref(), Some("pod-a"));
    }
    cluster.set_endpoints("dns", "dns", "UDP", 5353, &[b]).await;
    client.wait(address, "UDP after moving to b", |r| r.as_deref() == Some("pod-b")).await;
    // An unrelated change (another Service) keeps the affinity of the first.
    let before = tally(&common::tcp_requests(cluster.world.pod("c"), cluster_address(&sticky), 5).await);
    cluster
        .create_service(json!({
            "metadata": {"name": "other", "namespace": "default"},
            "spec": {"ports": [{"port": 82, "targetPort": 8080}]},
        }))
        .await;
    cluster.set_endpoints("other", "", "TCP", 8080, &[b]).await;
    let other = cluster_address(
        &client::Api::<proto::core::v1::Service>::namespaced(&cluster.client, "default").get("other").await.unwrap(),
    );
    common::wait_tcp(cluster.world.pod("c"), other, "the other Service", |r| r.is_ok()).await;
    let after = tally(&common::tcp_requests(cluster.world.pod("c"), cluster_address(&sticky), 5).await);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "affinity lost in a sync:\n{}",
        cluster.proxy_log()
    );
    let log = cluster.proxy_log();
    assert!(!log.contains("incremental update failed"), "every sync after the first should be incremental:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_removes_the_table_and_nothing_else() {
    let mut cluster = Cluster::start(world()).await;
    // A table of someone else's, which kube-proxy must leave alone.
    let other = cluster.world.node.exec("nft", &["add", "table", "ip", "someone-else"]);
    assert!(other.status.success());
    cluster.start_proxy(&[]).await;
    let tables = String::from_utf8_lossy(&cluster.world.node.exec("nft", &["list", "tables"]).stdout).into_owned();
    assert!(tables.contains("table ip rudder-proxy"), "{tables}");

    cluster.proxy.take().unwrap().terminate(std::time::Duration::from_secs(10));
    let mut args = cluster.proxy_command(&["--cleanup"]);
    args.drain(..3);
    let binary = args.remove(0);
    let mut full = vec![binary.as_str()];
    full.extend(args.iter().map(String::as_str));
    let output = cluster.world.node.exec(full[0], &full[1..]);
    assert!(output.status.success(), "--cleanup: {}", String::from_utf8_lossy(&output.stderr));
    let tables = String::from_utf8_lossy(&cluster.world.node.exec("nft", &["list", "tables"]).stdout).into_owned();
    assert!(!tables.contains("rudder-proxy"), "{tables}");
    assert!(tables.contains("table ip someone-else"), "{tables}");
}
