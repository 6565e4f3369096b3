//! Authoritative answers for the cluster domain from a real apiserver's Services
//! and Endpoints, through the server's informers, over UDP and TCP.

mod common;

use client::Api;
use common::{RunningDns, addresses, ask_tcp, ask_udp, ask_until, cluster, is_nxdomain};
use dns::wire::{RData, Rcode, RecordType};
use proto::core::v1::{EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Service, ServicePort, ServiceSpec};
use proto::meta::v1::{DeleteOptions, ObjectMeta};

fn service(name: &str, cluster_ip: &str, ports: &[(&str, i32)]) -> Service {
    Service {
        metadata: Some(ObjectMeta { name: name.into(), ..Default::default() }),
        spec: Some(ServiceSpec {
            cluster_ip: cluster_ip.into(),
            ports: ports
                .iter()
                .map(|(n, p)| ServicePort {
                    name: n.to_string(),
                    port: *p,
                    protocol: "TCP".into(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        status: None,
    }
}

fn endpoints(name: &str, addresses: &[(&str, &str)], port: (&str, i32)) -> Endpoints {
    Endpoints {
        metadata: Some(ObjectMeta { name: name.into(), ..Default::default() }),
        subsets: vec![EndpointSubset {
            addresses: addresses
                .iter()
                .map(|(ip, host)| EndpointAddress {
                    ip: ip.to_string(),
                    hostname: host.to_string(),
                    ..Default::default()
                })
                .collect(),
            not_ready_addresses: vec![EndpointAddress { ip: "10.244.9.9".into(), ..Default::default() }],
            ports: vec![EndpointPort {
                name: port.0.into(),
                port: port.1,
                protocol: "TCP".into(),
                ..Default::default()
            }],
        }],
    }
}

fn cluster_ip(service: &Service) -> String {
    service.spec.as_ref().map(|s| s.cluster_ip.clone()).unwrap_or_default()
}

#[tokio::test]
async fn service_names_srv_and_nxdomain() {
    let cluster = cluster().await;
    let services: Api<Service> = Api::namespaced(&cluster.client, "default");
    // One Service exists before the server starts, one is created after.
    let early = services.create(&service("early", "", &[("http", 80)])).await.unwrap();
    let dns = RunningDns::start(&cluster.client, Vec::new(), true).await;
    let answer = ask_udp(dns.address, "early.default.svc.cluster.local", RecordType::A).await;
    assert_eq!(answer.rcode(), Rcode::NoError);
    assert!(answer.header.authoritative);
    assert_eq!(addresses(&answer), [cluster_ip(&early)]);

    let web = services.create(&service("web", "", &[("http", 80), ("grpc", 9090)])).await.unwrap();
    let ip = cluster_ip(&web);
    assert!(!ip.is_empty(), "the apiserver allocated a ClusterIP");
    let answer =
        ask_until(dns.address, "web.default.svc.cluster.local", RecordType::A, "the new Service resolves", |m| {
            !m.answers.is_empty()
        })
        .await;
    assert_eq!(addresses(&answer), [ip.as_str()]);
    assert_eq!(answer.answers[0].ttl, dns::config::DEFAULT_TTL);

    // Names ignore case; the answer keeps the question's spelling.
    let answer = ask_udp(dns.address, "WEB.Default.Svc.Cluster.Local", RecordType::A).await;
    assert_eq!(addresses(&answer), [ip.as_str()]);
    assert_eq!(answer.answers[0].name.to_string(), "WEB.Default.Svc.Cluster.Local");

    // The same over TCP.
    let answer = ask_tcp(dns.address, "web.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(addresses(&answer), [ip.as_str()]);

    // An existing name asked for another type: NOERROR, no data, SOA for negative caching.
    let answer = ask_udp(dns.address, "web.default.svc.cluster.local", RecordType::AAAA).await;
    assert_eq!(answer.rcode(), Rcode::NoError);
    assert!(answer.answers.is_empty());
    assert_eq!(answer.authority.first().map(|r| r.rtype), Some(RecordType::SOA));

    // SRV for the named port, with the target's address alongside.
    let answer = ask_udp(dns.address, "_http._tcp.web.default.svc.cluster.local", RecordType::SRV).await;
    let srv: Vec<(u16, String)> = answer
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::Srv { port, target, .. } => Some((*port, target.to_string())),
            _ => None,
        })
        .collect();
    assert_eq!(srv, [(80, "web.default.svc.cluster.local".to_string())]);
    assert_eq!(answer.additional.iter().filter(|r| r.data == RData::A(ip.parse().unwrap())).count(), 1);
    // A port the Service does not have, or the wrong protocol: no such name.
    for name in ["_https._tcp.web.default.svc.cluster.local", "_http._udp.web.default.svc.cluster.local"] {
        assert!(is_nxdomain(&ask_udp(dns.address, name, RecordType::SRV).await), "{name}");
    }

    // Unknown names inside the domain: NXDOMAIN with the zone's SOA.
    for name in ["nope.default.svc.cluster.local", "web.elsewhere.svc.cluster.local", "x.cluster.local"] {
        let answer = ask_udp(dns.address, name, RecordType::A).await;
        assert!(is_nxdomain(&answer), "{name}: {answer:?}");
        assert!(answer.header.authoritative);
        let soa = answer.authority.first().expect("an authority record");
        assert!(matches!(soa.data, RData::Soa { .. }));
        assert_eq!(soa.name.to_string(), "cluster.local");
    }

    // Pod names carry their address.
    let answer = ask_udp(dns.address, "10-244-3-4.default.pod.cluster.local", RecordType::A).await;
    assert_eq!(addresses(&answer), ["10.244.3.4"]);

    // A deleted Service stops resolving.
    services.delete("web", DeleteOptions::default()).await.unwrap();
    ask_until(dns.address, "web.default.svc.cluster.local", RecordType::A, "the deleted Service is gone", is_nxdomain)
        .await;
    let counts = dns.status.counts();
    assert!(counts.authoritative > 10 && counts.nxdomain >= 4, "{counts:?}");
    dns.stop().await;
}

#[tokio::test]
async fn headless_service_answers_its_ready_endpoints() {
    let cluster = cluster().await;
    let dns = RunningDns::start(&cluster.client, Vec::new(), true).await;
    let services: Api<Service> = Api::namespaced(&cluster.client, "default");
    let endpoints_api: Api<Endpoints> = Api::namespaced(&cluster.client, "default");
    services.create(&service("db", "None", &[("pg", 5432)])).await.unwrap();
    endpoints_api.create(&endpoints("db", &[("10.244.0.5", "db-0"), ("10.244.1.7", "")], ("pg", 5432))).await.unwrap();

    let answer = ask_until(dns.address, "db.default.svc.cluster.local", RecordType::A, "the endpoints resolve", |m| {
        m.answers.len() == 2
    })
    .await;
    assert_eq!(addresses(&answer), ["10.244.0.5", "10.244.1.7"], "ready addresses only");

    let answer = ask_udp(dns.address, "db-0.db.default.svc.cluster.local", RecordType::A).await;
    assert_eq!(addresses(&answer), ["10.244.0.5"]);
    let answer = ask_udp(dns.address, "10-244-1-7.db.default.svc.cluster.local", RecordType::A).await;
    assert_eq!(addresses(&answer), ["10.244.1.7"]);
    let answer = ask_udp(dns.address, "10-244-9-9.db.default.svc.cluster.local", RecordType::A).await;
    assert!(is_nxdomain(&answer), "a not-ready address has no name");

    let answer = ask_tcp(dns.address, "_pg._tcp.db.default.svc.cluster.local", RecordType::SRV).await;
    let mut srv: Vec<String> = answer
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::Srv { port, target, .. } => Some(format!("{target}:{port}")),
            _ => None,
        })
        .collect();
    srv.sort();
    assert_eq!(srv, ["10-244-1-7.db.default.svc.cluster.local:5432", "db-0.db.default.svc.cluster.local:5432"]);
    assert_eq!(answer.additional.len(), 2, "each target's address: {:?}", answer.additional);

    // The endpoints change: the answer follows.
    let mut current = endpoints_api.get("db").await.unwrap();
    current.subsets[0].addresses.truncate(1);
    endpoints_api.update(&current).await.unwrap();
    ask_until(dns.address, "db.default.svc.cluster.local", RecordType::A, "the removed endpoint is gone", |m| {
        addresses(m) == ["10.244.0.5"]
    })
    .await;
    dns.stop().await;
}

/// Output and success of `busybox nslookup NAME 127.0.0.1:PORT`, the client pods
/// built from busybox use.
async fn nslookup(server: std::net::SocketAddr, args: &[&str]) -> (bool, String) {
    let output = tokio::process::Command::new("busybox")
        .arg("nslookup")
        .args(args)
        .arg(server.to_string())
        .output()
        .await
        .expect("busybox runs (deploy/install-deps.sh installs busybox-static)");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

#[tokio::test]
async fn busybox_nslookup_resolves_services() {
    let cluster = cluster().await;
    let dns = RunningDns::start(&cluster.client, Vec::new(), true).await;
    let services: Api<Service> = Api::namespaced(&cluster.client, "default");
    let web = services.create(&service("web", "", &[("http", 80)])).await.unwrap();
    let ip = cluster_ip(&web);
    ask_until(dns.address, "web.default.svc.cluster.local", RecordType::A, "the Service resolves", |m| {
        !m.answers.is_empty()
    })
    .await;

    let (ok, text) = nslookup(dns.address, &["web.default.svc.cluster.local"]).await;
    assert!(ok && text.contains(&format!("Address: {ip}")), "{text}");
    let (_, text) = nslookup(dns.address, &["-type=srv", "_http._tcp.web.default.svc.cluster.local"]).await;
    assert!(text.contains("80 web.default.svc.cluster.local"), "{text}");
    let (ok, text) = nslookup(dns.address, &["nope.default.svc.cluster.local"]).await;
    assert!(!ok && text.contains("NXDOMAIN"), "{text}");
    dns.stop().await;
}
