//! What the cluster domain contains, built from Services and Endpoints, and the
//! answer to a question about it. Pure: no I/O, so every rule is unit-tested.
//!
//! Names follow the Kubernetes DNS specification:
//! - `<svc>.<ns>.svc.<domain>`: A/AAAA of the ClusterIPs; for a headless Service
//!   (clusterIP None) the ready endpoint addresses; for an ExternalName Service a
//!   CNAME to the external name.
//! - `<host>.<svc>.<ns>.svc.<domain>` for headless Services: an endpoint by its
//!   hostname (StatefulSet pods) or by its dashed address (`10-1-2-3`).
//! - `_<port>._<proto>.<svc>.<ns>.svc.<domain>`: SRV for each named port.
//! - `<a-b-c-d>.<ns>.pod.<domain>`: the address written in the name, for any
//!   namespace (CoreDNS' "pods insecure" mode, the kube-dns behaviour), so no
//!   watch of every pod is needed.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv6Addr};

use proto::core::v1::{Endpoints, Service};

use crate::wire::{Name, RData, Record, RecordType};

/// The answer to one question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Not in the cluster domain: someone else's to answer.
    Outside,
    /// The name does not exist.
    NxDomain,
    /// The name exists; `answers` empty means it has no data of the asked type.
    Found { answers: Vec<Record>, additional: Vec<Record> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Port {
    /// Lower case.
    name: String,
    /// Lower case: "tcp", "udp", "sctp".
    protocol: String,
    port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ServiceKind {
    ClusterIp(Vec<IpAddr>),
    Headless,
    ExternalName(Name),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ServiceEntry {
    kind: ServiceKind,
    ports: Vec<Port>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoint {
    ip: IpAddr,
    /// Lower case; the name under the Service (hostname, else the dashed address).
    label: String,
    ports: Vec<Port>,
}

/// (namespace, name), lower case.
type Key = (String, String);

/// The records of the cluster domain.
#[derive(Debug, Clone)]
pub struct Records {
    /// Lower case, no trailing dot.
    domain: String,
    domain_name: Name,
    ttl: u32,
    services: HashMap<Key, ServiceEntry>,
    endpoints: HashMap<Key, Vec<Endpoint>>,
    /// Services per namespace, to tell an empty namespace name from an unknown one.
    namespaces: HashMap<String, usize>,
    /// Bumped on every change: the SOA serial.
    serial: u32,
}

impl Records {
    /// Empty records for `domain` ("cluster.local"), answered with `ttl` seconds.
    pub fn new(domain: &Name, ttl: u32) -> Records {
        Records {
            domain: domain.to_lowercase_text().unwrap_or_default(),
            domain_name: domain.clone(),
            ttl,
            services: HashMap::new(),
            endpoints: HashMap::new(),
            namespaces: HashMap::new(),
            serial: 1,
        }
    }

    pub fn ttl(&self) -> u32 {
        self.ttl
    }

    pub fn service_count(&self) -> usize {
        self.services.len()
    }

    /// Adds or replaces a Service.
    pub fn upsert_service(&mut self, service: &Service) {
        let Some(key) = key_of(service.metadata.as_ref()) else { return };
        let spec = service.spec.clone().unwrap_or_default();
        let kind = if spec.r#type == "ExternalName" {
            match Name::parse(&spec.external_name) {
                Ok(name) if !spec.external_name.is_empty() => ServiceKind::ExternalName(name),
                _ => {
                    tracing::warn!(service = %format!("{}/{}", key.0, key.1), external_name = %spec.external_name, "ExternalName is not a valid DNS name; no record");
                    ServiceKind::ClusterIp(Vec::new())
                }
            }
        } else if spec.cluster_ip == "None" {
            ServiceKind::Headless
        } else {
            let ips: &[String] =
                if spec.cluster_ips.is_empty() { std::slice::from_ref(&spec.cluster_ip) } else { &spec.cluster_ips };
            ServiceKind::ClusterIp(ips.iter().filter_map(|ip| ip.parse().ok()).collect())
        };
        let ports = spec.ports.iter().filter_map(|p| named_port(&p.name, &p.protocol, p.port)).collect();
        if self.services.insert(key.clone(), ServiceEntry { kind, ports }).is_none() {
            *self.namespaces.entry(key.0).or_default() += 1;
        }
        self.bump();
    }

    pub fn remove_service(&mut self, service: &Service) {
        let Some(key) = key_of(service.metadata.as_ref()) else { return };
        if self.services.remove(&key).is_some()
            && let Some(count) = self.namespaces.get_mut(&key.0)
        {
            *count -= 1;
            if *count == 0 {
                self.namespaces.remove(&key.0);
            }
        }
        self.bump();
    }

    /// Adds or replaces the Endpoints of a Service. Only ready addresses count:
    /// the endpoints controller already puts not-ready pods among them when the
    /// Service publishes not-ready addresses.
    pub fn upsert_endpoints(&mut self, endpoints: &Endpoints) {
        let Some(key) = key_of(endpoints.metadata.as_ref()) else { return };
        let mut list = Vec::new();
        for subset in &endpoints.subsets {
            let ports: Vec<Port> =
                subset.ports.iter().filter_map(|p| named_port(&p.name, &p.protocol, p.port)).collect();
            for address in &subset.addresses {
                let Ok(ip) = address.ip.parse::<IpAddr>() else { continue };
                let label =
                    if is_dns_label(&address.hostname) { address.hostname.to_ascii_lowercase() } else { dashed(ip) };
                list.push(Endpoint { ip, label, ports: ports.clone() });
            }
        }
        self.endpoints.insert(key, list);
        self.bump();
    }

    pub fn remove_endpoints(&mut self, endpoints: &Endpoints) {
        if let Some(key) = key_of(endpoints.metadata.as_ref()) {
            self.endpoints.remove(&key);
            self.bump();
        }
    }

    fn bump(&mut self) {
        self.serial = self.serial.wrapping_add(1).max(1);
    }

    /// The zone's SOA record; also the authority of negative answers, its
    /// minimum (the negative-caching TTL, RFC 2308) being the records' TTL.
    pub fn soa(&self) -> Record {
        let under = |label: &str| {
            let mut labels = vec![label.as_bytes().to_vec()];
            labels.extend(self.domain_name.labels().iter().cloned());
            Name::from_labels(labels).unwrap_or_else(|_| self.domain_name.clone())
        };
        Record::new(
            self.domain_name.clone(),
            self.ttl,
            RData::Soa {
                mname: under("ns"),
                rname: under("hostmaster"),
                serial: self.serial,
                refresh: 7200,
                retry: 1800,
                expire: 86400,
                minimum: self.ttl,
            },
        )
    }

    /// Answers a question. `name` is used as written for the answers' owner
    /// names; matching ignores case.
    pub fn lookup(&self, name: &Name, qtype: RecordType) -> Lookup {
        let Some(text) = name.to_lowercase_text() else { return Lookup::Outside };
        let rest = if text == self.domain {
            ""
        } else {
            match text.strip_suffix(&self.domain).and_then(|r| r.strip_suffix('.')) {
                Some(rest) => rest,
                None if self.domain.is_empty() => text.as_str(),
                None => return Lookup::Outside,
            }
        };
        let labels: Vec<&str> = if rest.is_empty() { Vec::new() } else { rest.split('.').collect() };
        let nodata = || Lookup::Found { answers: Vec::new(), additional: Vec::new() };
        match labels.as_slice() {
            [] if qtype == RecordType::SOA || qtype == RecordType::ANY => {
                Lookup::Found { answers: vec![self.soa()], additional: Vec::new() }
            }
            [] | ["svc"] | ["pod"] => nodata(),
            [ns, "svc"] => {
                if self.namespaces.contains_key(*ns) {
                    nodata()
                } else {
                    Lookup::NxDomain
                }
            }
            [svc, ns, "svc"] => self.service(name, ns, svc, qtype),
            [first, svc, ns, "svc"] => self.under_service(name, ns, svc, first, qtype),
            [port, protocol, svc, ns, "svc"] => self.srv(name, ns, svc, port, protocol, qtype),
            [_ns, "pod"] => nodata(),
            [address, _ns, "pod"] => match undashed(address) {
                Some(ip) => self.address_answer(name, &[ip], qtype),
                None => Lookup::NxDomain,
            },
            _ => Lookup::NxDomain,
        }
    }

    fn key(ns: &str, svc: &str) -> Key {
        (ns.to_string(), svc.to_string())
    }

    fn ready(&self, key: &Key) -> &[Endpoint] {
        self.endpoints.get(key).map(Vec::as_slice).unwrap_or_default()
    }

    fn service(&self, name: &Name, ns: &str, svc: &str, qtype: RecordType) -> Lookup {
        let key = Self::key(ns, svc);
        let Some(service) = self.services.get(&key) else { return Lookup::NxDomain };
        match &service.kind {
            ServiceKind::ExternalName(target) => Lookup::Found {
                answers: vec![Record::new(name.clone(), self.ttl, RData::Cname(target.clone()))],
                additional: Vec::new(),
            },
            ServiceKind::ClusterIp(ips) => self.address_answer(name, ips, qtype),
            ServiceKind::Headless => {
                let ips: BTreeSet<IpAddr> = self.ready(&key).iter().map(|e| e.ip).collect();
                self.address_answer(name, &ips.into_iter().collect::<Vec<_>>(), qtype)
            }
        }
    }

    /// A name one label below a Service: `_proto` (an empty non-terminal above
    /// SRV names) or an endpoint of a headless Service.
    fn under_service(&self, name: &Name, ns: &str, svc: &str, first: &str, qtype: RecordType) -> Lookup {
        let key = Self::key(ns, svc);
        let Some(service) = self.services.get(&key) else { return Lookup::NxDomain };
        if let Some(protocol) = first.strip_prefix('_') {
            return if service.ports.iter().any(|p| p.protocol == protocol) {
                Lookup::Found { answers: Vec::new(), additional: Vec::new() }
            } else {
                Lookup::NxDomain
            };
        }
        if service.kind != ServiceKind::Headless {
            return Lookup::NxDomain;
        }
        let ips: BTreeSet<IpAddr> = self.ready(&key).iter().filter(|e| e.label == first).map(|e| e.ip).collect();
        if ips.is_empty() {
            return Lookup::NxDomain;
        }
        self.address_answer(name, &ips.into_iter().collect::<Vec<_>>(), qtype)
    }

    fn srv(&self, name: &Name, ns: &str, svc: &str, port: &str, protocol: &str, qtype: RecordType) -> Lookup {
        let key = Self::key(ns, svc);
        let Some(service) = self.services.get(&key) else { return Lookup::NxDomain };
        let (Some(port), Some(protocol)) = (port.strip_prefix('_'), protocol.strip_prefix('_')) else {
            return Lookup::NxDomain;
        };
        let Some(service_port) = service.ports.iter().find(|p| p.name == port && p.protocol == protocol) else {
            return Lookup::NxDomain;
        };
        if qtype != RecordType::SRV && qtype != RecordType::ANY {
            return Lookup::Found { answers: Vec::new(), additional: Vec::new() };
        }
        let service_name = match self.name_under(&[svc, ns, "svc"]) {
            Some(n) => n,
            None => return Lookup::NxDomain,
        };
        let mut answers = Vec::new();
        let mut additional = Vec::new();
        match &service.kind {
            ServiceKind::ClusterIp(ips) => {
                answers.push(self.srv_record(name, 100, service_port.port, service_name.clone()));
                additional.extend(ips.iter().map(|&ip| self.address_record(&service_name, ip)));
            }
            ServiceKind::ExternalName(target) => {
                answers.push(self.srv_record(name, 100, service_port.port, target.clone()));
            }
            ServiceKind::Headless => {
                // Each endpoint that serves this port, under its own name.
                let targets: Vec<(&Endpoint, u16)> = self
                    .ready(&key)
                    .iter()
                    .filter_map(|e| {
                        e.ports.iter().find(|p| p.name == port && p.protocol == protocol).map(|p| (e, p.port))
                    })
                    .collect();
                let weight = u16::try_from(100 / targets.len().max(1)).unwrap_or(1).max(1);
                for (endpoint, port) in targets {
                    let Some(target) = self.name_under(&[&endpoint.label, svc, ns, "svc"]) else { continue };
                    answers.push(self.srv_record(name, weight, port, target.clone()));
                    additional.push(self.address_record(&target, endpoint.ip));
                }
            }
        }
        Lookup::Found { answers, additional }
    }

    fn srv_record(&self, name: &Name, weight: u16, port: u16, target: Name) -> Record {
        Record::new(name.clone(), self.ttl, RData::Srv { priority: 0, weight, port, target })
    }

    /// The A (or AAAA) records of `ips` that match `qtype`; none for other types.
    fn address_answer(&self, name: &Name, ips: &[IpAddr], qtype: RecordType) -> Lookup {
        let answers = ips
            .iter()
            .filter(|ip| match qtype {
                RecordType::A => ip.is_ipv4(),
                RecordType::AAAA => ip.is_ipv6(),
                RecordType::ANY => true,
                _ => false,
            })
            .map(|&ip| self.address_record(name, ip))
            .collect();
        Lookup::Found { answers, additional: Vec::new() }
    }

    fn address_record(&self, name: &Name, ip: IpAddr) -> Record {
        let data = match ip {
            IpAddr::V4(v4) => RData::A(v4),
            IpAddr::V6(v6) => RData::Aaaa(v6),
        };
        Record::new(name.clone(), self.ttl, data)
    }

    /// `labels` followed by the domain.
    fn name_under(&self, labels: &[&str]) -> Option<Name> {
        let mut all: Vec<Vec<u8>> = labels.iter().map(|l| l.as_bytes().to_vec()).collect();
        all.extend(self.domain_name.labels().iter().cloned());
        Name::from_labels(all).ok()
    }
}

fn key_of(meta: Option<&proto::meta::v1::ObjectMeta>) -> Option<Key> {
    let meta = meta?;
    if meta.name.is_empty() {
        return None;
    }
    let ns = if meta.namespace.is_empty() { "default" } else { meta.namespace.as_str() };
    Some((ns.to_ascii_lowercase(), meta.name.to_ascii_lowercase()))
}

/// A port that has a name gets SRV records; unnamed ones do not (Kubernetes DNS
/// specification). The protocol defaults to TCP.
fn named_port(name: &str, protocol: &str, port: i32) -> Option<Port> {
    if name.is_empty() {
        return None;
    }
    let protocol = if protocol.is_empty() { "tcp".to_string() } else { protocol.to_ascii_lowercase() };
    Some(Port { name: name.to_ascii_lowercase(), protocol, port: u16::try_from(port).ok()? })
}

fn is_dns_label(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 63
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !text.starts_with('-')
        && !text.ends_with('-')
}

/// `10.1.2.3` -> `10-1-2-3`; `fd00::1` -> `fd00--1`.
fn dashed(ip: IpAddr) -> String {
    ip.to_string().replace(['.', ':'], "-")
}

/// The inverse of `dashed`: `10-1-2-3` -> 10.1.2.3.
fn undashed(label: &str) -> Option<IpAddr> {
    if label.matches('-').count() == 3
        && let Ok(v4) = label.replace('-', ".").parse()
    {
        return Some(IpAddr::V4(v4));
    }
    label.replace('-', ":").parse::<Ipv6Addr>().ok().map(IpAddr::V6)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::core::v1::{EndpointAddress, EndpointPort, EndpointSubset, ServicePort, ServiceSpec};
    use proto::meta::v1::ObjectMeta;
    use std::net::Ipv4Addr;

    fn meta(ns: &str, name: &str) -> Option<ObjectMeta> {
        Some(ObjectMeta { name: name.into(), namespace: ns.into(), ..Default::default() })
    }

    fn port(name: &str, protocol: &str, port: i32) -> ServicePort {
        ServicePort { name: name.into(), protocol: protocol.into(), port, ..Default::default() }
    }

    fn service(ns: &str, name: &str, cluster_ip: &str, ports: Vec<ServicePort>) -> Service {
        Service {
            metadata: meta(ns, name),
            spec: Some(ServiceSpec { cluster_ip: cluster_ip.into(), ports, ..Default::default() }),
            status: None,
        }
    }

    fn endpoints(ns: &str, name: &str, addresses: &[(&str, &str)], ports: &[(&str, i32)]) -> Endpoints {
        Endpoints {
            metadata: meta(ns, name),
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
                ports: ports
                    .iter()
                    .map(|(n, p)| EndpointPort {
                        name: n.to_string(),
                        port: *p,
                        protocol: "TCP".into(),
                        ..Default::default()
                    })
                    .collect(),
            }],
        }
    }

    fn records() -> Records {
        let mut r = Records::new(&Name::parse("cluster.local").unwrap(), 5);
        r.upsert_service(&service("default", "web", "10.96.0.10", vec![port("http", "TCP", 80), port("", "TCP", 81)]));
        r.upsert_service(&service("default", "db", "None", vec![port("pg", "", 5432)]));
        r.upsert_endpoints(&endpoints("default", "db", &[("10.244.0.5", "db-0"), ("10.244.1.7", "")], &[("pg", 5432)]));
        r
    }

    fn ask(r: &Records, name: &str, qtype: RecordType) -> Lookup {
        r.lookup(&Name::parse(name).unwrap(), qtype)
    }

    fn addresses(lookup: &Lookup) -> Vec<String> {
        match lookup {
            Lookup::Found { answers, .. } => answers
                .iter()
                .map(|a| match &a.data {
                    RData::A(ip) => ip.to_string(),
                    RData::Aaaa(ip) => ip.to_string(),
                    other => format!("{other:?}"),
                })
                .collect(),
            other => panic!("expected records, got {other:?}"),
        }
    }

    const NODATA: Lookup = Lookup::Found { answers: Vec::new(), additional: Vec::new() };

    #[test]
    fn service_a_record_ignoring_case() {
        let r = records();
        assert_eq!(addresses(&ask(&r, "web.default.svc.cluster.local", RecordType::A)), ["10.96.0.10"]);
        let upper = ask(&r, "WEB.Default.SVC.Cluster.Local.", RecordType::A);
        assert_eq!(addresses(&upper), ["10.96.0.10"]);
        // The owner name is the question's, as written.
        if let Lookup::Found { answers, .. } = upper {
            assert_eq!(answers[0].name.to_string(), "WEB.Default.SVC.Cluster.Local");
        }
    }

    #[test]
    fn other_types_of_existing_names_are_nodata() {
        let r = records();
        assert_eq!(ask(&r, "web.default.svc.cluster.local", RecordType::AAAA), NODATA);
        assert_eq!(ask(&r, "web.default.svc.cluster.local", RecordType(16)), NODATA);
        assert_eq!(ask(&r, "default.svc.cluster.local", RecordType::A), NODATA);
        assert_eq!(ask(&r, "svc.cluster.local", RecordType::A), NODATA);
        assert_eq!(ask(&r, "cluster.local", RecordType::A), NODATA);
        assert_eq!(ask(&r, "_tcp.web.default.svc.cluster.local", RecordType::A), NODATA);
        assert_eq!(ask(&r, "_http._tcp.web.default.svc.cluster.local", RecordType::A), NODATA);
    }

    #[test]
    fn unknown_names_inside_the_domain_do_not_exist() {
        let r = records();
        for name in [
            "nope.default.svc.cluster.local",
            "web.other.svc.cluster.local",
            "other.svc.cluster.local",
            "x.cluster.local",
            "a.b.c.d.e.f.svc.cluster.local",
            "_udp.web.default.svc.cluster.local",
            "_https._tcp.web.default.svc.cluster.local",
            "_http._udp.web.default.svc.cluster.local",
            "db-1.db.default.svc.cluster.local",
            // Per-endpoint names exist only for headless Services.
            "10-96-0-10.web.default.svc.cluster.local",
            "not-an-ip.default.pod.cluster.local",
        ] {
            assert_eq!(ask(&r, name, RecordType::A), Lookup::NxDomain, "{name}");
        }
    }

    #[test]
    fn names_outside_the_domain_are_not_ours() {
        let r = records();
        assert_eq!(ask(&r, "example.com", RecordType::A), Lookup::Outside);
        assert_eq!(ask(&r, "cluster.localhost", RecordType::A), Lookup::Outside);
        assert_eq!(ask(&r, "evilcluster.local", RecordType::A), Lookup::Outside);
        assert_eq!(ask(&r, ".", RecordType::NS), Lookup::Outside);
    }

    #[test]
    fn headless_service_answers_ready_endpoints_and_per_pod_names() {
        let r = records();
        assert_eq!(addresses(&ask(&r, "db.default.svc.cluster.local", RecordType::A)), ["10.244.0.5", "10.244.1.7"]);
        assert_eq!(addresses(&ask(&r, "db-0.db.default.svc.cluster.local", RecordType::A)), ["10.244.0.5"]);
        assert_eq!(addresses(&ask(&r, "10-244-1-7.db.default.svc.cluster.local", RecordType::A)), ["10.244.1.7"]);
        // Not-ready addresses are not served.
        assert_eq!(ask(&r, "10-244-9-9.db.default.svc.cluster.local", RecordType::A), Lookup::NxDomain);
    }

    #[test]
    fn srv_for_named_ports() {
        let r = records();
        let Lookup::Found { answers, additional } =
            ask(&r, "_http._tcp.web.default.svc.cluster.local", RecordType::SRV)
        else {
            panic!("no SRV")
        };
        assert_eq!(answers.len(), 1);
        assert_eq!(
            answers[0].data,
            RData::Srv {
                priority: 0,
                weight: 100,
                port: 80,
                target: Name::parse("web.default.svc.cluster.local").unwrap()
            }
        );
        assert_eq!(additional[0].data, RData::A(Ipv4Addr::new(10, 96, 0, 10)));

        let Lookup::Found { answers, additional } = ask(&r, "_pg._tcp.db.default.svc.cluster.local", RecordType::SRV)
        else {
            panic!("no SRV")
        };
        let targets: Vec<String> = answers
            .iter()
            .map(|a| match &a.data {
                RData::Srv { port, target, .. } => format!("{target}:{port}"),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(targets, ["db-0.db.default.svc.cluster.local:5432", "10-244-1-7.db.default.svc.cluster.local:5432"]);
        assert_eq!(additional.len(), 2);
    }

    #[test]
    fn pod_names_carry_their_address() {
        let r = records();
        assert_eq!(addresses(&ask(&r, "10-244-0-5.default.pod.cluster.local", RecordType::A)), ["10.244.0.5"]);
        assert_eq!(addresses(&ask(&r, "fd00--5.any.pod.cluster.local", RecordType::AAAA)), ["fd00::5"]);
        assert_eq!(ask(&r, "10-244-0-5.default.pod.cluster.local", RecordType::AAAA), NODATA);
        assert_eq!(ask(&r, "default.pod.cluster.local", RecordType::A), NODATA);
    }

    #[test]
    fn external_name_is_a_cname() {
        let mut r = records();
        let mut svc = service("default", "ext", "", vec![]);
        if let Some(spec) = svc.spec.as_mut() {
            spec.r#type = "ExternalName".into();
            spec.external_name = "db.example.com".into();
        }
        r.upsert_service(&svc);
        let Lookup::Found { answers, .. } = ask(&r, "ext.default.svc.cluster.local", RecordType::A) else { panic!() };
        assert_eq!(answers[0].data, RData::Cname(Name::parse("db.example.com").unwrap()));
    }

    #[test]
    fn dual_stack_cluster_ips() {
        let mut r = records();
        let mut svc = service("default", "web", "10.96.0.10", vec![]);
        if let Some(spec) = svc.spec.as_mut() {
            spec.cluster_ips = vec!["10.96.0.10".into(), "fd00:96::10".into()];
        }
        r.upsert_service(&svc);
        assert_eq!(addresses(&ask(&r, "web.default.svc.cluster.local", RecordType::AAAA)), ["fd00:96::10"]);
        assert_eq!(
            addresses(&ask(&r, "web.default.svc.cluster.local", RecordType::ANY)),
            ["10.96.0.10", "fd00:96::10"]
        );
    }

    #[test]
    fn removals_and_updates_take_effect() {
        let mut r = records();
        let serial = r.serial;
        r.upsert_endpoints(&endpoints("default", "db", &[("10.244.2.2", "")], &[("pg", 5432)]));
        assert_eq!(addresses(&ask(&r, "db.default.svc.cluster.local", RecordType::A)), ["10.244.2.2"]);
        r.remove_endpoints(&endpoints("default", "db", &[], &[]));
        assert_eq!(ask(&r, "db.default.svc.cluster.local", RecordType::A), NODATA);
        r.remove_service(&service("default", "db", "None", vec![]));
        r.remove_service(&service("default", "web", "", vec![]));
        assert_eq!(ask(&r, "web.default.svc.cluster.local", RecordType::A), Lookup::NxDomain);
        // The namespace has no Service left: its name is gone too.
        assert_eq!(ask(&r, "default.svc.cluster.local", RecordType::A), Lookup::NxDomain);
        assert!(r.serial > serial);
    }

    #[test]
    fn soa_at_the_apex_and_as_authority() {
        let r = records();
        let Lookup::Found { answers, .. } = ask(&r, "cluster.local", RecordType::SOA) else { panic!() };
        assert_eq!(answers, vec![r.soa()]);
        let RData::Soa { mname, minimum, .. } = &answers[0].data else { panic!() };
        assert_eq!(mname.to_string(), "ns.cluster.local");
        assert_eq!(*minimum, 5);
    }

    #[test]
    fn dashed_addresses_round_trip() {
        for ip in ["10.1.2.3", "fd00::1", "2001:db8::a:b"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(undashed(&dashed(ip)), Some(ip));
        }
        assert_eq!(undashed("1-2-3"), None);
        assert_eq!(undashed("web"), None);
    }
}
