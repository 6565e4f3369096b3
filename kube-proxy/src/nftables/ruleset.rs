//! The nftables ruleset as a pure function of a `Snapshot`, and the `nft -f` text
//! that programs it: either the whole table (deleted and recreated in the same
//! transaction) or the difference from the ruleset the kernel holds.
//!
//! Layout (one `ip` table of kube-proxy's own):
//! - `services` (nat, prerouting and output) looks `daddr . l4proto . dport` up in
//!   the verdict map `service-ips`, and `l4proto . dport` of traffic to a node
//!   address in `service-nodeports`: one lookup however many Services there are.
//! - each Service port with endpoints has a chain `svc/<id>` that DNATs at random
//!   (numgen) across its endpoints; with ClientIP affinity, through one chain
//!   `ep/...` per endpoint that records the client in a timeout set `aff/...`.
//! - a NodePort goes through `np/<id>`, which marks the packet for masquerade.
//! - ports without endpoints are in `no-endpoint-services`/`-nodeports`, looked up
//!   by filter chains before NAT that reject (TCP reset, ICMP port unreachable).
//! - postrouting masquerades marked packets, and hairpin traffic (a pod reaching
//!   itself through its Service: saddr . daddr of one endpoint, in set `hairpin`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::model::{Cidr, ServicePort, Snapshot};

/// The packet mark meaning "masquerade this connection"; Kubernetes' value.
pub const MASQUERADE_MARK: u32 = 0x4000;

/// The table's default name.
pub const DEFAULT_TABLE: &str = "rudder-proxy";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The `ip` family table to own.
    pub table: String,
    /// Traffic to a ClusterIP from outside this CIDR is masqueraded, so replies
    /// come back through this node.
    pub cluster_cidr: Option<Cidr>,
}

impl Default for Options {
    fn default() -> Self {
        Options { table: DEFAULT_TABLE.to_string(), cluster_cidr: None }
    }
}

const SERVICE_IPS: &str = "service-ips";
const SERVICE_NODEPORTS: &str = "service-nodeports";
const NO_ENDPOINT_SERVICES: &str = "no-endpoint-services";
const NO_ENDPOINT_NODEPORTS: &str = "no-endpoint-nodeports";
const NODE_IPS: &str = "node-ips";
const HAIRPIN: &str = "hairpin";

/// The sets and maps of the skeleton whose elements follow the snapshot, with their types.
const ELEMENT_SETS: [(&str, &str, &str); 6] = [
    ("map", SERVICE_IPS, "type ipv4_addr . inet_proto . inet_service : verdict"),
    ("map", SERVICE_NODEPORTS, "type inet_proto . inet_service : verdict"),
    ("map", NO_ENDPOINT_SERVICES, "type ipv4_addr . inet_proto . inet_service : verdict"),
    ("map", NO_ENDPOINT_NODEPORTS, "type inet_proto . inet_service : verdict"),
    ("set", NODE_IPS, "type ipv4_addr"),
    ("set", HAIRPIN, "type ipv4_addr . ipv4_addr"),
];

/// The fixed chains, which never change while the process runs.
fn base_chains() -> Vec<(&'static str, Option<&'static str>, Vec<String>)> {
    let mark = format!("meta mark & {MASQUERADE_MARK:#x} == {MASQUERADE_MARK:#x} masquerade");
    vec![
        ("reject-service", None, vec!["meta l4proto tcp reject with tcp reset".into(), "reject".into()]),
        (
            "filter-services",
            None,
            vec![
                format!("ip daddr . meta l4proto . th dport vmap @{NO_ENDPOINT_SERVICES}"),
                format!("ip daddr @{NODE_IPS} meta l4proto . th dport vmap @{NO_ENDPOINT_NODEPORTS}"),
            ],
        ),
        (
            "filter-prerouting",
            Some("type filter hook prerouting priority dstnat - 10; policy accept;"),
            vec!["jump filter-services".into()],
        ),
        (
            "filter-output",
            Some("type filter hook output priority -110; policy accept;"),
            vec!["jump filter-services".into()],
        ),
        (
            "services",
            None,
            vec![
                format!("ip daddr . meta l4proto . th dport vmap @{SERVICE_IPS}"),
                format!("ip daddr @{NODE_IPS} meta l4proto . th dport vmap @{SERVICE_NODEPORTS}"),
            ],
        ),
        (
            "nat-prerouting",
            Some("type nat hook prerouting priority dstnat; policy accept;"),
            vec!["jump services".into()],
        ),
        // dstnat is refused on the output hook; -100 is its value.
        ("nat-output", Some("type nat hook output priority -100; policy accept;"), vec!["jump services".into()]),
        (
            "nat-postrouting",
            Some("type nat hook postrouting priority srcnat; policy accept;"),
            vec![mark, format!("ct status dnat ip saddr . ip daddr @{HAIRPIN} masquerade")],
        ),
    ]
}

/// Everything kube-proxy's table holds for one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruleset {
    options: Options,
    /// Per-Service chains (`svc/`, `np/`, `ep/`): name -> rules.
    chains: BTreeMap<String, Vec<String>>,
    /// ClientIP affinity sets: name -> timeout in seconds.
    affinity_sets: BTreeMap<String, u32>,
    /// Elements of the skeleton's sets and maps: set -> key -> element text.
    elements: BTreeMap<&'static str, BTreeMap<String, String>>,
}

fn svc_chain(port: &ServicePort) -> String {
    format!("svc/{}", port.id())
}

fn endpoint_name(prefix: &str, port: &ServicePort, endpoint: &std::net::SocketAddrV4) -> String {
    format!("{prefix}/{}/{}/{}", port.id(), endpoint.ip(), endpoint.port())
}

impl Ruleset {
    pub fn build(snapshot: &Snapshot, options: &Options) -> Ruleset {
        let mut ruleset = Ruleset {
            options: options.clone(),
            chains: BTreeMap::new(),
            affinity_sets: BTreeMap::new(),
            elements: ELEMENT_SETS.iter().map(|(_, name, _)| (*name, BTreeMap::new())).collect(),
        };
        for ip in &snapshot.node_ips {
            ruleset.element(NODE_IPS, ip.to_string(), None);
        }
        for port in &snapshot.service_ports {
            ruleset.add_service_port(port);
        }
        ruleset
    }

    fn element(&mut self, set: &'static str, key: String, value: Option<String>) {
        let text = match value {
            Some(value) => format!("{key} : {value}"),
            None => key.clone(),
        };
        self.elements.entry(set).or_default().insert(key, text);
    }

    fn add_service_port(&mut self, port: &ServicePort) {
        let proto = port.protocol.as_str();
        let service_key = format!("{} . {proto} . {}", port.cluster_ip, port.port);
        let nodeport_key = port.node_port.map(|n| format!("{proto} . {n}"));
        if port.endpoints.is_empty() {
            self.element(NO_ENDPOINT_SERVICES, service_key, Some("goto reject-service".into()));
            if let Some(key) = nodeport_key {
                self.element(NO_ENDPOINT_NODEPORTS, key, Some("goto reject-service".into()));
            }
            return;
        }
        let chain = svc_chain(port);
        let mut rules = Vec::new();
        if let Some(cidr) = self.options.cluster_cidr {
            rules.push(format!("ip saddr != {cidr} meta mark set meta mark | {MASQUERADE_MARK:#x}"));
        }
        match port.affinity_seconds {
            Some(timeout) => {
                let mut picks = Vec::new();
                for (i, endpoint) in port.endpoints.iter().enumerate() {
                    // The timeout is in the name so a changed timeout is a new set.
                    let set = endpoint_name(&format!("aff/{timeout}"), port, endpoint);
                    let ep_chain = endpoint_name("ep", port, endpoint);
                    rules.push(format!("ip saddr @{set} goto {ep_chain}"));
                    picks.push(format!("{i} : goto {ep_chain}"));
                    self.chains.insert(
                        ep_chain,
                        vec![
                            format!("update @{set} {{ ip saddr }}"),
                            format!("meta l4proto {proto} dnat to {endpoint}"),
                        ],
                    );
                    self.affinity_sets.insert(set, timeout);
                }
                rules.push(format!("numgen random mod {} vmap {{ {} }}", picks.len(), picks.join(", ")));
            }
            None => {
                // A cascade: endpoint i of n is taken with probability 1/(n-i) when
                // none before it was, so each gets 1/n. Maps (anonymous per rule or
                // named per Service) would be one lookup, but the kernel's cost of
                // loading thousands of them grows quadratically: 10,000 take 8-15 s.
                let last = port.endpoints.len() - 1;
                for (i, endpoint) in port.endpoints.iter().enumerate() {
                    if i == last {
                        rules.push(format!("meta l4proto {proto} dnat to {endpoint}"));
                    } else {
                        let remaining = port.endpoints.len() - i;
                        rules.push(format!(
                            "numgen random mod {remaining} == 0 meta l4proto {proto} dnat to {endpoint}"
                        ));
                    }
                }
            }
        }
        self.chains.insert(chain.clone(), rules);
        self.element(SERVICE_IPS, service_key, Some(format!("goto {chain}")));
        if let Some(key) = nodeport_key {
            let np_chain = format!("np/{}", port.id());
            let rules = vec![format!("meta mark set meta mark | {MASQUERADE_MARK:#x}"), format!("goto {chain}")];
            self.chains.insert(np_chain.clone(), rules);
            self.element(SERVICE_NODEPORTS, key, Some(format!("goto {np_chain}")));
        }
        for endpoint in &port.endpoints {
            let ip = endpoint.ip();
            self.element(HAIRPIN, format!("{ip} . {ip}"), None);
        }
    }

    /// Rules plus set and map elements: what the kernel evaluates or holds.
    pub fn rule_count(&self) -> usize {
        let base: usize = base_chains().iter().map(|(_, _, rules)| rules.len()).sum();
        let chains: usize = self.chains.values().map(Vec::len).sum();
        let elements: usize = self.elements.values().map(BTreeMap::len).sum();
        base + chains + elements
    }

    /// Deletes the table (if there) and creates it whole, in one transaction.
    pub fn full_transaction(&self) -> String {
        let table = &self.options.table;
        let mut out = String::with_capacity(256 * (self.chains.len() + 16));
        // Creating the table first makes the delete valid when it does not exist yet.
        let _ = writeln!(out, "table ip {table} {{}}\ndelete table ip {table}\ntable ip {table} {{");
        for (kind, name, type_) in ELEMENT_SETS {
            let _ = write!(out, "{kind} {name} {{\n{type_}\n");
            let elements = &self.elements[name];
            if !elements.is_empty() {
                out.push_str("elements = { ");
                join_into(&mut out, elements.values());
                out.push_str(" }\n");
            }
            out.push_str("}\n");
        }
        for (name, timeout) in &self.affinity_sets {
            let _ = writeln!(out, "set {name} {{ {} }}", affinity_set_body(*timeout));
        }
        for (name, hook, rules) in base_chains() {
            write_chain(&mut out, name, hook, &rules);
        }
        for (name, rules) in &self.chains {
            write_chain(&mut out, name, None, rules);
        }
        out.push_str("}\n");
        out
    }

    /// The change from `applied` (what the kernel holds now) to this ruleset, in one
    /// transaction. Empty when nothing differs.
    pub fn update_transaction(&self, applied: &Ruleset) -> String {
        let table = &self.options.table;
        let mut out = String::new();
        for (name, timeout) in &self.affinity_sets {
            if !applied.affinity_sets.contains_key(name) {
                let _ = writeln!(out, "add set ip {table} {name} {{ {} }}", affinity_set_body(*timeout));
            }
        }
        // All new chains exist before any rule jumps to one.
        for name in self.chains.keys() {
            if !applied.chains.contains_key(name) {
                let _ = writeln!(out, "add chain ip {table} {name}");
            }
        }
        for (name, rules) in &self.chains {
            match applied.chains.get(name) {
                Some(old) if old == rules => continue,
                Some(_) => {
                    let _ = writeln!(out, "flush chain ip {table} {name}");
                }
                None => {}
            }
            for rule in rules {
                let _ = writeln!(out, "add rule ip {table} {name} {rule}");
            }
        }
        for (set, new) in &self.elements {
            let empty = BTreeMap::new();
            let old = applied.elements.get(set).unwrap_or(&empty);
            let gone: Vec<&String> =
                old.iter().filter(|(key, text)| new.get(*key) != Some(*text)).map(|(key, _)| key).collect();
            let added: Vec<&String> =
                new.iter().filter(|(key, text)| old.get(*key) != Some(*text)).map(|(_, text)| text).collect();
            if !gone.is_empty() {
                let _ = write!(out, "delete element ip {table} {set} {{ ");
                join_into(&mut out, gone);
                out.push_str(" }\n");
            }
            if !added.is_empty() {
                let _ = write!(out, "add element ip {table} {set} {{ ");
                join_into(&mut out, added);
                out.push_str(" }\n");
            }
        }
        // Chains and sets go last, once no element or rule refers to them.
        let removed: Vec<&String> = applied.chains.keys().filter(|name| !self.chains.contains_key(*name)).collect();
        for name in &removed {
            let _ = writeln!(out, "flush chain ip {table} {name}");
        }
        for name in &removed {
            let _ = writeln!(out, "delete chain ip {table} {name}");
        }
        for name in applied.affinity_sets.keys() {
            if !self.affinity_sets.contains_key(name) {
                let _ = writeln!(out, "delete set ip {table} {name}");
            }
        }
        out
    }

    /// Whether `update_transaction` from `applied` is possible: same table and options.
    pub fn can_update_from(&self, applied: &Ruleset) -> bool {
        self.options == applied.options
    }
}

fn affinity_set_body(timeout: u32) -> String {
    format!("type ipv4_addr; flags dynamic,timeout; timeout {timeout}s;")
}

fn write_chain(out: &mut String, name: &str, hook: Option<&str>, rules: &[String]) {
    let _ = writeln!(out, "chain {name} {{");
    if let Some(hook) = hook {
        out.push_str(hook);
        out.push('\n');
    }
    for rule in rules {
        out.push_str(rule);
        out.push('\n');
    }
    out.push_str("}\n");
}

fn join_into<'a>(out: &mut String, items: impl IntoIterator<Item = &'a String>) {
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(item);
    }
}

/// The `nft -f` text that removes the table, if it exists.
pub fn cleanup_transaction(table: &str) -> String {
    format!("table ip {table} {{}}\ndelete table ip {table}\n")
}

#[cfg(test)]
fn chain_names(ruleset: &Ruleset) -> std::collections::BTreeSet<String> {
    ruleset.chains.keys().cloned().collect()
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddrV4};

    use super::*;
    use crate::model::Protocol;

    fn port(name: &str, ip: &str, endpoints: &[&str]) -> ServicePort {
        ServicePort {
            namespace: "default".into(),
            name: name.into(),
            port_name: "http".into(),
            protocol: Protocol::Tcp,
            cluster_ip: ip.parse().unwrap(),
            port: 80,
            node_port: None,
            affinity_seconds: None,
            endpoints: endpoints.iter().map(|e| e.parse::<SocketAddrV4>().unwrap()).collect(),
        }
    }

    fn snapshot(ports: Vec<ServicePort>) -> Snapshot {
        Snapshot { service_ports: ports, node_ips: vec![Ipv4Addr::new(192, 168, 1, 10)] }
    }

    #[test]
    fn a_service_dnats_at_random_across_its_endpoints_through_one_map_lookup() {
        let rules = Ruleset::build(
            &snapshot(vec![port("web", "10.96.0.10", &["10.244.0.2:8080", "10.244.0.3:8080"])]),
            &Options::default(),
        );
        let text = rules.full_transaction();
        assert!(text.starts_with("table ip rudder-proxy {}\ndelete table ip rudder-proxy\n"), "{text}");
        assert!(text.contains("elements = { 10.96.0.10 . tcp . 80 : goto svc/default/web/tcp/http }"), "{text}");
        assert!(
            text.contains("chain svc/default/web/tcp/http {\nnumgen random mod 2 == 0 meta l4proto tcp dnat to 10.244.0.2:8080\nmeta l4proto tcp dnat to 10.244.0.3:8080\n}"),
            "{text}"
        );

        assert!(text.contains("elements = { 10.244.0.2 . 10.244.0.2, 10.244.0.3 . 10.244.0.3 }"), "{text}");
        assert!(text.contains("elements = { 192.168.1.10 }"), "{text}");
        assert_eq!(chain_names(&rules), std::collections::BTreeSet::from(["svc/default/web/tcp/http".to_string()]));
    }

    #[test]
    fn a_service_without_endpoints_rejects() {
        let mut p = port("web", "10.96.0.10", &[]);
        p.node_port = Some(30080);
        let text = Ruleset::build(&snapshot(vec![p]), &Options::default()).full_transaction();
        assert!(text.contains("map no-endpoint-services {\ntype ipv4_addr . inet_proto . inet_service : verdict\nelements = { 10.96.0.10 . tcp . 80 : goto reject-service }"), "{text}");
        assert!(text.contains("elements = { tcp . 30080 : goto reject-service }"), "{text}");
        assert!(!text.contains("chain svc/"), "{text}");
    }

    #[test]
    fn nodeports_mark_for_masquerade_and_cluster_cidr_masquerades_outsiders() {
        let mut p = port("web", "10.96.0.10", &["10.244.0.2:8080"]);
        p.node_port = Some(30080);
        p.protocol = Protocol::Udp;
        p.port_name.clear();
        let options = Options { cluster_cidr: Some("10.244.0.0/16".parse().unwrap()), ..Options::default() };
        let text = Ruleset::build(&snapshot(vec![p]), &options).full_transaction();
        assert!(text.contains("elements = { udp . 30080 : goto np/default/web/udp/80 }"), "{text}");
        assert!(
            text.contains(
                "chain np/default/web/udp/80 {\nmeta mark set meta mark | 0x4000\ngoto svc/default/web/udp/80\n}"
            ),
            "{text}"
        );
        assert!(text.contains("chain svc/default/web/udp/80 {\nip saddr != 10.244.0.0/16 meta mark set meta mark | 0x4000\nmeta l4proto udp dnat to 10.244.0.2:8080\n}"), "{text}");
    }

    #[test]
    fn client_ip_affinity_remembers_each_client_per_endpoint() {
        let mut p = port("web", "10.96.0.10", &["10.244.0.2:8080", "10.244.0.3:8080"]);
        p.affinity_seconds = Some(60);
        let text = Ruleset::build(&snapshot(vec![p]), &Options::default()).full_transaction();
        assert!(text.contains("set aff/60/default/web/tcp/http/10.244.0.2/8080 { type ipv4_addr; flags dynamic,timeout; timeout 60s; }"), "{text}");
        assert!(
            text.contains(
                "ip saddr @aff/60/default/web/tcp/http/10.244.0.3/8080 goto ep/default/web/tcp/http/10.244.0.3/8080"
            ),
            "{text}"
        );
        assert!(text.contains("numgen random mod 2 vmap { 0 : goto ep/default/web/tcp/http/10.244.0.2/8080, 1 : goto ep/default/web/tcp/http/10.244.0.3/8080 }"), "{text}");
        assert!(text.contains("chain ep/default/web/tcp/http/10.244.0.2/8080 {\nupdate @aff/60/default/web/tcp/http/10.244.0.2/8080 { ip saddr }\nmeta l4proto tcp dnat to 10.244.0.2:8080\n}"), "{text}");
    }

    #[test]
    fn an_update_touches_only_what_changed() {
        let before = Ruleset::build(
            &snapshot(vec![
                port("a", "10.96.0.1", &["10.244.0.2:80", "10.244.0.3:80"]),
                port("b", "10.96.0.2", &["10.244.0.4:80"]),
                port("c", "10.96.0.3", &["10.244.0.5:80"]),
            ]),
            &Options::default(),
        );
        let after = Ruleset::build(
            &snapshot(vec![
                port("a", "10.96.0.1", &["10.244.0.2:80"]),
                port("b", "10.96.0.2", &["10.244.0.4:80"]),
                port("c", "10.96.0.3", &[]),
            ]),
            &Options::default(),
        );
        assert_eq!(after.update_transaction(&after), "");
        let update = after.update_transaction(&before);
        let expected = "flush chain ip rudder-proxy svc/default/a/tcp/http\n\
             add rule ip rudder-proxy svc/default/a/tcp/http meta l4proto tcp dnat to 10.244.0.2:80\n\
             delete element ip rudder-proxy hairpin { 10.244.0.3 . 10.244.0.3, 10.244.0.5 . 10.244.0.5 }\n\
             add element ip rudder-proxy no-endpoint-services { 10.96.0.3 . tcp . 80 : goto reject-service }\n\
             delete element ip rudder-proxy service-ips { 10.96.0.3 . tcp . 80 }\n\
             flush chain ip rudder-proxy svc/default/c/tcp/http\n\
             delete chain ip rudder-proxy svc/default/c/tcp/http\n";
        assert_eq!(update, expected);
    }

    #[test]
    fn an_update_creates_affinity_sets_and_chains_before_using_them_and_removes_them_after() {
        let mut with = port("a", "10.96.0.1", &["10.244.0.2:80"]);
        with.affinity_seconds = Some(30);
        let plain = Ruleset::build(&snapshot(vec![port("a", "10.96.0.1", &["10.244.0.2:80"])]), &Options::default());
        let sticky = Ruleset::build(&snapshot(vec![with]), &Options::default());
        let up = sticky.update_transaction(&plain);
        let set = up.find("add set ip rudder-proxy aff/30/").unwrap();
        let chain = up.find("add chain ip rudder-proxy ep/").unwrap();
        let rule = up.find("add rule ip rudder-proxy svc/default/a/tcp/http ip saddr @aff").unwrap();
        assert!(set < chain && chain < rule, "{up}");
        let down = plain.update_transaction(&sticky);
        let flush = down.find("flush chain ip rudder-proxy ep/").unwrap();
        let delete = down.find("delete chain ip rudder-proxy ep/").unwrap();
        let set = down.find("delete set ip rudder-proxy aff/30/").unwrap();
        assert!(flush < delete && delete < set, "{down}");
    }
}
