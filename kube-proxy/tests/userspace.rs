//! The real kube-proxy in userspace mode, in a node namespace with pods on a bridge
//! (see `common`): it holds ClusterIPs on its dummy interface, forwards TCP round
//! robin and UDP, follows endpoint changes, answers NodePorts, and removes its
//! interface when it stops.

mod common;

use std::time::Duration;

use common::{Cluster, World, cluster_address, node_port_address, tally};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userspace_mode_forwards_tcp_round_robin_and_udp() {
    let mut world = World::new();
    let mut ips = Vec::new();
    for (name, host) in [("a", 10), ("b", 11), ("c", 20)] {
        ips.push(world.add_pod(name, host));
        common::serve_tcp(world.pod(name), 8080, &format!("pod-{name}"));
        common::serve_udp(world.pod(name), 5353, &format!("pod-{name}"));
    }
    let (a, b) = (ips[0], ips[1]);
    let mut cluster = Cluster::start(world).await;
    let web = cluster
        .create_service(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"type": "NodePort", "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
        }))
        .await;
    let dns = cluster
        .create_service(json!({
            "metadata": {"name": "dns", "namespace": "default"},
            "spec": {"ports": [{"name": "dns", "protocol": "UDP", "port": 53, "targetPort": 5353}]},
        }))
        .await;
    let empty = cluster
        .create_service(json!({
            "metadata": {"name": "empty", "namespace": "default"},
            "spec": {"ports": [{"port": 81, "targetPort": 8080}]},
        }))
        .await;
    cluster.set_endpoints("web", "http", "TCP", 8080, &[a, b]).await;
    cluster.set_endpoints("dns", "dns", "UDP", 5353, &[a]).await;
    cluster.start_proxy(&["--proxy-mode", "userspace"]).await;

    let addresses =
        String::from_utf8_lossy(&cluster.world.node.exec("ip", &["-4", "addr", "show", "rudder-svc"]).stdout)
            .into_owned();
    let address = cluster_address(&web);
    assert!(addresses.contains(&format!("{}/32", address.ip())), "{addresses}");

    let replies = common::tcp_requests(cluster.world.pod("c"), address, 10).await;
    assert_eq!(tally(&replies).get("pod-a"), Some(&5), "round robin over two endpoints: {replies:?}");
    assert_eq!(tally(&replies).get("pod-b"), Some(&5), "{replies:?}");
    let replies = common::tcp_requests(&cluster.world.outside, node_port_address(&web), 4).await;
    assert!(replies.iter().all(|r| r == "pod-a" || r == "pod-b"), "{replies:?}");

    // Without endpoints the connection is reset at once, never left hanging.
    let outcome = common::tcp_request(cluster.world.pod("c"), cluster_address(&empty)).await;
    assert!(outcome.as_ref().map_or(true, String::is_empty), "a Service without endpoints answered {outcome:?}");

    let client = common::UdpClient::new(cluster.world.pod("c"));
    client.wait(cluster_address(&dns), "UDP through the proxy", |r| r.as_deref() == Some("pod-a")).await;

    // Round robin makes two b's in a row impossible until a has gone.
    cluster.set_endpoints("web", "http", "TCP", 8080, &[b]).await;
    let start = std::time::Instant::now();
    while common::tcp_requests(cluster.world.pod("c"), address, 2).await != ["pod-b", "pod-b"] {
        assert!(start.elapsed() < common::DEADLINE, "traffic still reaches a:\n{}", cluster.proxy_log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let replies = common::tcp_requests(cluster.world.pod("c"), address, 10).await;
    assert!(replies.iter().all(|r| r == "pod-b"), "{replies:?}");

    // Stopping removes the interface and with it the ClusterIPs.
    let status = cluster.proxy.take().unwrap().terminate(Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "kube-proxy did not stop cleanly: {status:?}");
    let links = cluster.world.node.exec("ip", &["link", "show", "rudder-svc"]);
    assert!(!links.status.success(), "rudder-svc is still there after kube-proxy stopped");
}
