//! The nftables ruleset as a function of a `Snapshot` (and of the ruleset it replaces,
//! whose unchanged ports it keeps), and the `nft -f` text that programs it: either
//! the whole table (deleted and recreated in the same transaction) or the difference
//! from the ruleset the kernel holds.
//!
//! Layout (one `ip` table of kube-proxy's own):
//! - `services` (nat, prerouting and output) looks `daddr . l4proto . dport` up in
//!   the verdict map `service-ips`, and `l4proto . dport` of traffic to a node
//!   address in `service-nodeports`: one lookup however many Services there are.
//! - Service ports with endpoints (and without affinity) are grouped by protocol and
//!   endpoint count n: the group's chain `svc/<protocol>/<n>` (the verdict map's
//!   target) has one DNAT rule for all of them, which looks
//!   `daddr . dport . numgen random mod n` up in the group's map
//!   `endpoints/<protocol>/<n>` (address . port per key); with a cluster CIDR, a rule
//!   before it marks traffic from outside for masquerade. NodePorts likewise go to
//!   `np/<protocol>/<n>`, which marks the packet and looks `dport . numgen random mod n`
//!   up in `nodeport-endpoints/<protocol>/<n>`. So the table holds a few rules however
//!   many Services there are, and every endpoint change, count changes included, is
//!   map elements only.
//! - with ClientIP affinity, a port has a chain `svc/<id>` of its own instead, which
//!   picks one chain `ep/...` per endpoint that records the client in a timeout set
//!   `aff/...` and DNATs; its NodePort goes through `np/<id>`, which marks the packet.
//! - ports without endpoints are in `no-endpoint-services`/`-nodeports`, looked up
//!   by filter chains before NAT, for new connections only, that reject (TCP reset,
//!   ICMP port unreachable).
//! - postrouting masquerades marked packets, and hairpin traffic (a pod reaching
//!   itself through its Service: saddr . daddr of one endpoint, in set `hairpin`).
//!   Only this node's pods can do that here, so endpoints known to be on other nodes
//!   are left out: in a large cluster that is most of them, and the set would
//!   otherwise be as large as all the endpoint maps together.
//!
//! Why groups by count: a rule per port costs the kernel a lookup of its map by name
//! among all sets and of each expression type when the rule is added, and rule changes
//! make it re-validate the table; a rule per group costs neither, and each map is bound
//! by one rule (the kernel walks a map's elements for each rule bound to it). And `nft`
//! lists every chain of the table before applying even one element change: with a
//! chain per group that listing is short.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::sync::Arc;

use crate::model::{Cidr, Protocol, ServicePort, Snapshot};

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

/// The sets and maps of the skeleton, with their types.
const SKELETON_SETS: [(&str, &str, &str); 6] = [
    ("map", SERVICE_IPS, "type ipv4_addr . inet_proto . inet_service : verdict"),
    ("map", SERVICE_NODEPORTS, "type inet_proto . inet_service : verdict"),
    ("map", NO_ENDPOINT_SERVICES, "type ipv4_addr . inet_proto . inet_service : verdict"),
    ("map", NO_ENDPOINT_NODEPORTS, "type inet_proto . inet_service : verdict"),
    ("set", NODE_IPS, "type ipv4_addr"),
    ("set", HAIRPIN, "type ipv4_addr . ipv4_addr"),
];

/// The ports that share an endpoints map and its chain: protocol and endpoint count.
type Group = (Protocol, u32);

/// Whether a group's map is keyed by ClusterIP . port or by NodePort.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Via {
    ClusterIp,
    NodePort,
}

impl Via {
    /// The group's endpoints map.
    fn map(self, (protocol, n): Group) -> String {
        match self {
            Via::ClusterIp => format!("endpoints/{protocol}/{n}"),
            Via::NodePort => format!("nodeport-endpoints/{protocol}/{n}"),
        }
    }

    /// The group's chain, the target of the port's verdict map element.
    fn chain(self, (protocol, n): Group) -> String {
        match self {
            Via::ClusterIp => format!("svc/{protocol}/{n}"),
            Via::NodePort => format!("np/{protocol}/{n}"),
        }
    }

    /// The lookup key the chain's rule computes (and the map's typeof). Written with
    /// the protocol's own dport, which is also the protocol match a DNAT to a port
    /// needs: nft 1.0.6 refuses a rule with `meta l4proto tcp` that uses a map (from
    /// the kernel) typed `th dport` ("conflicting protocols specified").
    fn key(self, (protocol, n): Group) -> String {
        match self {
            Via::ClusterIp => format!("ip daddr . {protocol} dport . numgen random mod {n}"),
            Via::NodePort => format!("{protocol} dport . numgen random mod {n}"),
        }
    }

    fn map_type(self, (protocol, _): Group) -> String {
        format!("typeof {} : ip daddr . {protocol} dport", self.key((protocol, 1)))
    }

    /// The rules of the group's chain.
    fn rules(self, group: Group, options: &Options) -> Vec<String> {
        let dnat = format!("dnat ip addr . port to {} map @{}", self.key(group), self.map(group));
        match self {
            Via::ClusterIp => mark_outsiders(options).into_iter().chain([dnat]).collect(),
            Via::NodePort => vec![format!("{} {dnat}", mark_for_masquerade())],
        }
    }
}

/// The statement that marks a packet for postrouting's masquerade.
fn mark_for_masquerade() -> String {
    format!("meta mark set meta mark | {MASQUERADE_MARK:#x}")
}

/// With a cluster CIDR, the rule that marks Service traffic from outside it.
fn mark_outsiders(options: &Options) -> Option<String> {
    options.cluster_cidr.map(|cidr| format!("ip saddr != {cidr} {}", mark_for_masquerade()))
}

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
        // Only a connection's first packet can be to a Service without endpoints (as
        // Kubernetes' `ct state new` check): the others skip both lookups.
        (
            "filter-prerouting",
            Some("type filter hook prerouting priority dstnat - 10; policy accept;"),
            vec!["ct state new jump filter-services".into()],
        ),
        (
            "filter-output",
            Some("type filter hook output priority -110; policy accept;"),
            vec!["ct state new jump filter-services".into()],
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

/// An element of a set or map: the set, its key, and the element's text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Element {
    set: String,
    key: String,
    text: String,
}

/// What one Service port puts in the table, kept with the port it was made from so
/// an unchanged port is neither rebuilt nor compared rule by rule.
#[derive(Debug, PartialEq, Eq)]
struct PortRules {
    source: ServicePort,
    /// Its group (ports with endpoints and without affinity).
    group: Option<Group>,
    /// Its own chains (`svc/`, `np/`, `ep/` with affinity): name and rules.
    chains: Vec<(String, Vec<String>)>,
    /// ClientIP affinity sets: name and timeout in seconds.
    affinity_sets: Vec<(String, u32)>,
    elements: Vec<Element>,
}

impl PortRules {
    /// The groups whose maps and chains it uses.
    fn groups(&self) -> impl Iterator<Item = (Via, Group)> + '_ {
        let node_port = self.source.node_port.is_some();
        self.group
            .into_iter()
            .flat_map(move |g| [(Via::ClusterIp, g)].into_iter().chain(node_port.then_some((Via::NodePort, g))))
    }
}

/// Everything kube-proxy's table holds for one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruleset {
    options: Options,
    node_ips: Vec<Ipv4Addr>,
    /// Per Service port, by id.
    ports: BTreeMap<String, Arc<PortRules>>,
    /// Hairpin elements (one per endpoint address), with how many ports have it.
    hairpin: BTreeMap<Ipv4Addr, usize>,
    /// Groups in use (each a map and a chain), with how many ports use each.
    groups: BTreeMap<(Via, Group), usize>,
}

fn svc_chain(id: &str) -> String {
    format!("svc/{id}")
}

fn endpoint_name(prefix: &str, id: &str, endpoint: &std::net::SocketAddrV4) -> String {
    format!("{prefix}/{id}/{}/{}", endpoint.ip(), endpoint.port())
}

fn element(set: &str, key: String, value: Option<String>) -> Element {
    let text = match value {
        Some(value) => format!("{key} : {value}"),
        None => key.clone(),
    };
    Element { set: set.to_string(), key, text }
}

impl Ruleset {
    /// The ruleset for `snapshot`. Ports unchanged since `previous` (the ruleset the
    /// kernel holds) are taken from it as they are.
    pub fn build(snapshot: &Snapshot, options: &Options, previous: Option<&Ruleset>) -> Ruleset {
        let previous = previous.filter(|p| p.options == *options);
        let mut ports = Vec::with_capacity(snapshot.service_ports.len());
        // Previous ports found in the snapshot (kept as they are, or replaced).
        let mut kept_or_replaced = 0;
        let mut replaced = Vec::new();
        let mut added = Vec::new();
        // Both are sorted by id, so the previous port is usually the next one.
        let mut cursor = previous.map(|p| p.ports.iter().peekable());
        for port in &snapshot.service_ports {
            let id = port.id();
            let old = match (&mut cursor, previous) {
                (Some(cursor), Some(previous)) => {
                    while cursor.next_if(|(key, _)| key.as_str() < id.as_str()).is_some() {}
                    match cursor.next_if(|(key, _)| **key == id) {
                        Some((_, old)) => Some(old),
                        None => previous.ports.get(&id),
                    }
                }
                _ => None,
            };
            match old {
                Some(old) if old.source == *port => {
                    kept_or_replaced += 1;
                    ports.push((id, old.clone()));
                }
                _ => {
                    if let Some(old) = old {
                        kept_or_replaced += 1;
                        replaced.push(old);
                    }
                    let rules = Arc::new(port_rules(port, &id, options));
                    added.push(rules.clone());
                    ports.push((id, rules));
                }
            }
        }
        let ports: BTreeMap<String, Arc<PortRules>> = ports.into_iter().collect();
        // The tallies follow from the previous ones and the ports that changed, so an
        // endpoint change does not recount 50,000 endpoints.
        let mut tally = match previous {
            Some(p) => Tally { hairpin: p.hairpin.clone(), groups: p.groups.clone() },
            None => Tally::default(),
        };
        for old in &replaced {
            tally.count(old, false);
        }
        if let Some(p) = previous.filter(|p| p.ports.len() > kept_or_replaced) {
            for (id, old) in &p.ports {
                if !ports.contains_key(id) {
                    tally.count(old, false);
                }
            }
        }
        for new in &added {
            tally.count(new, true);
        }
        let Tally { hairpin, groups } = tally;
        // Sorted for diff_keys.
        let mut node_ips = snapshot.node_ips.clone();
        node_ips.sort();
        node_ips.dedup();
        Ruleset { options: options.clone(), node_ips, ports, hairpin, groups }
    }

    /// Rules plus set and map elements: what the kernel evaluates or holds.
    pub fn rule_count(&self) -> usize {
        let base: usize = base_chains().iter().map(|(_, _, rules)| rules.len()).sum();
        let groups: usize = self.groups.keys().map(|(via, group)| via.rules(*group, &self.options).len()).sum();
        let ports: usize = self
            .ports
            .values()
            .map(|p| p.chains.iter().map(|(_, rules)| rules.len()).sum::<usize>() + p.elements.len())
            .sum();
        base + groups + ports + self.hairpin.len() + self.node_ips.len()
    }

    /// Deletes the table (if there) and creates it whole, in one transaction.
    pub fn full_transaction(&self) -> String {
        let table = &self.options.table;
        let mut out = String::with_capacity(160 * (self.ports.len() + 16));
        // Creating the table first makes the delete valid when it does not exist yet.
        let _ = writeln!(out, "table ip {table} {{}}\ndelete table ip {table}\ntable ip {table} {{");
        for (kind, name, type_) in SKELETON_SETS {
            let _ = writeln!(out, "{kind} {name} {{\n{type_}\n}}");
        }
        for (via, group) in self.groups.keys() {
            let _ = writeln!(out, "map {} {{\n{}\n}}", via.map(*group), via.map_type(*group));
        }
        for rules in self.ports.values() {
            for (name, timeout) in &rules.affinity_sets {
                let _ = writeln!(out, "set {name} {{ {} }}", affinity_set_body(*timeout));
            }
        }
        for (name, hook, rules) in base_chains() {
            write_chain(&mut out, name, hook, &rules);
        }
        for (via, group) in self.groups.keys() {
            write_chain(&mut out, &via.chain(*group), None, &via.rules(*group, &self.options));
        }
        for rules in self.ports.values() {
            for (name, rules) in &rules.chains {
                write_chain(&mut out, name, None, rules);
            }
        }
        out.push_str("}\n");
        // Elements go in after the rules that use their map: the kernel walks a map's
        // elements for each rule bound to it, but not the bindings for each element.
        let mut by_set: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for rules in self.ports.values() {
            for element in &rules.elements {
                by_set.entry(&element.set).or_default().push(&element.text);
            }
        }
        let node_ips: Vec<String> = self.node_ips.iter().map(ToString::to_string).collect();
        let hairpin: Vec<String> = self.hairpin.keys().map(|ip| format!("{ip} . {ip}")).collect();
        write_elements(&mut out, "add", table, NODE_IPS, node_ips.iter().map(String::as_str));
        write_elements(&mut out, "add", table, HAIRPIN, hairpin.iter().map(String::as_str));
        for (set, texts) in by_set {
            write_elements(&mut out, "add", table, set, texts);
        }
        out
    }

    /// The change from `applied` (what the kernel holds now) to this ruleset, in one
    /// transaction. Empty when nothing differs.
    pub fn update_transaction(&self, applied: &Ruleset) -> String {
        let table = &self.options.table;
        let changes = Changes::between(applied, self);
        let mut out = String::new();
        for (name, timeout) in &changes.sets_added {
            let _ = writeln!(out, "add set ip {table} {name} {{ {} }}", affinity_set_body(*timeout));
        }
        let new_groups: Vec<(Via, Group)> =
            self.groups.keys().filter(|g| !applied.groups.contains_key(g)).copied().collect();
        let gone_groups: Vec<(Via, Group)> =
            applied.groups.keys().filter(|g| !self.groups.contains_key(g)).copied().collect();
        // A group's map exists before its chain's rule, and both before any element
        // refers to them.
        for (via, group) in &new_groups {
            let _ = writeln!(out, "add map ip {table} {} {{ {}; }}", via.map(*group), via.map_type(*group));
        }
        for (via, group) in &new_groups {
            let chain = via.chain(*group);
            let _ = writeln!(out, "add chain ip {table} {chain}");
            for rule in via.rules(*group, &self.options) {
                let _ = writeln!(out, "add rule ip {table} {chain} {rule}");
            }
        }
        // All new chains exist before any rule or element refers to one.
        for (name, (old, _)) in &changes.chains {
            if old.is_none() {
                let _ = writeln!(out, "add chain ip {table} {name}");
            }
        }
        for (name, (old, new)) in &changes.chains {
            let Some(new) = new else { continue };
            if old.is_some() {
                let _ = writeln!(out, "flush chain ip {table} {name}");
            }
            for rule in new {
                let _ = writeln!(out, "add rule ip {table} {name} {rule}");
            }
        }
        let gone_maps: BTreeSet<String> = gone_groups.iter().map(|(via, group)| via.map(*group)).collect();
        let mut gone: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        let mut added: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for ((set, key), (old, new)) in &changes.elements {
            if old.map(|e| &e.text) == new.map(|e| &e.text) {
                continue;
            }
            // A map that goes takes its elements with it.
            if old.is_some() && !gone_maps.contains(*set) {
                gone.entry(set).or_default().push(key);
            }
            if let Some(new) = new {
                added.entry(set).or_default().push(&new.text);
            }
        }
        let node_ips = diff_keys(applied.node_ips.iter(), self.node_ips.iter(), |ip| ip.to_string());
        let hairpin = diff_keys(applied.hairpin.keys(), self.hairpin.keys(), |ip| format!("{ip} . {ip}"));
        for (set, (old, new)) in [(NODE_IPS, &node_ips), (HAIRPIN, &hairpin)] {
            write_elements(&mut out, "delete", table, set, old.iter().map(String::as_str));
            write_elements(&mut out, "add", table, set, new.iter().map(String::as_str));
        }
        // Per set, deletes come first: a key can move (a ClusterIP or NodePort reused).
        let sets: BTreeSet<&str> = gone.keys().chain(added.keys()).copied().collect();
        for set in sets {
            write_elements(&mut out, "delete", table, set, gone.get(set).into_iter().flatten().copied());
            write_elements(&mut out, "add", table, set, added.get(set).into_iter().flatten().copied());
        }
        // Chains and sets go last, once no element or rule refers to them.
        let removed: Vec<String> = changes
            .chains
            .iter()
            .filter(|(_, (_, new))| new.is_none())
            .map(|(name, _)| name.to_string())
            .chain(gone_groups.iter().map(|(via, group)| via.chain(*group)))
            .collect();
        for name in &removed {
            let _ = writeln!(out, "flush chain ip {table} {name}");
        }
        for name in &removed {
            let _ = writeln!(out, "delete chain ip {table} {name}");
        }
        for name in &gone_maps {
            let _ = writeln!(out, "delete map ip {table} {name}");
        }
        for name in &changes.sets_removed {
            let _ = writeln!(out, "delete set ip {table} {name}");
        }
        out
    }

    /// Whether `update_transaction` from `applied` is possible: same table and options.
    pub fn can_update_from(&self, applied: &Ruleset) -> bool {
        self.options == applied.options
    }
}

/// The rules and elements of one port.
fn port_rules(port: &ServicePort, id: &str, options: &Options) -> PortRules {
    let mut rules = PortRules {
        source: port.clone(),
        group: None,
        chains: Vec::new(),
        affinity_sets: Vec::new(),
        elements: Vec::new(),
    };
    let proto = port.protocol.as_str();
    let service_key = format!("{} . {proto} . {}", port.cluster_ip, port.port);
    let nodeport_key = port.node_port.map(|n| format!("{proto} . {n}"));
    if port.endpoints.is_empty() {
        rules.elements.push(element(NO_ENDPOINT_SERVICES, service_key, Some("goto reject-service".into())));
        if let Some(key) = nodeport_key {
            rules.elements.push(element(NO_ENDPOINT_NODEPORTS, key, Some("goto reject-service".into())));
        }
        return rules;
    }
    let (chain, np_chain) = match port.affinity_seconds {
        Some(timeout) => {
            let chain = svc_chain(id);
            let mut svc_rules: Vec<String> = mark_outsiders(options).into_iter().collect();
            let mut picks = Vec::new();
            for (i, endpoint) in port.endpoints.iter().enumerate() {
                // The timeout is in the name so a changed timeout is a new set.
                let set = endpoint_name(&format!("aff/{timeout}"), id, endpoint);
                let ep_chain = endpoint_name("ep", id, endpoint);
                svc_rules.push(format!("ip saddr @{set} goto {ep_chain}"));
                picks.push(format!("{i} : goto {ep_chain}"));
                rules.chains.push((
                    ep_chain,
                    vec![format!("update @{set} {{ ip saddr }}"), format!("meta l4proto {proto} dnat to {endpoint}")],
                ));
                rules.affinity_sets.push((set, timeout));
            }
            svc_rules.push(format!("numgen random mod {} vmap {{ {} }}", picks.len(), picks.join(", ")));
            rules.chains.push((chain.clone(), svc_rules));
            let np_chain = port.node_port.map(|_| {
                let np_chain = format!("np/{id}");
                rules.chains.push((np_chain.clone(), vec![mark_for_masquerade(), format!("goto {chain}")]));
                np_chain
            });
            (chain, np_chain)
        }
        None => {
            let Ok(n) = u32::try_from(port.endpoints.len()) else {
                tracing::error!(port = id, "more than 2^32 endpoints");
                return rules;
            };
            let group = (port.protocol, n);
            rules.group = Some(group);
            let map = Via::ClusterIp.map(group);
            for (i, endpoint) in port.endpoints.iter().enumerate() {
                let target = Some(format!("{} . {}", endpoint.ip(), endpoint.port()));
                rules.elements.push(element(&map, format!("{} . {} . {i}", port.cluster_ip, port.port), target));
            }
            let np_chain = port.node_port.map(|node_port| {
                let map = Via::NodePort.map(group);
                for (i, endpoint) in port.endpoints.iter().enumerate() {
                    let target = Some(format!("{} . {}", endpoint.ip(), endpoint.port()));
                    rules.elements.push(element(&map, format!("{node_port} . {i}"), target));
                }
                Via::NodePort.chain(group)
            });
            (Via::ClusterIp.chain(group), np_chain)
        }
    };
    rules.elements.push(element(SERVICE_IPS, service_key, Some(format!("goto {chain}"))));
    if let (Some(key), Some(np_chain)) = (nodeport_key, np_chain) {
        rules.elements.push(element(SERVICE_NODEPORTS, key, Some(format!("goto {np_chain}"))));
    }
    rules
}

/// (before, after); None where absent.
type Change<T> = (Option<T>, Option<T>);

/// Chains, elements and affinity sets of the ports that differ between two rulesets:
/// (before, after) by name or by (set, key).
struct Changes<'a> {
    chains: BTreeMap<&'a str, Change<Vec<&'a str>>>,
    elements: BTreeMap<(&'a str, &'a str), Change<&'a Element>>,
    sets_added: Vec<(&'a str, u32)>,
    sets_removed: Vec<&'a str>,
}

impl<'a> Changes<'a> {
    fn between(old: &'a Ruleset, new: &'a Ruleset) -> Changes<'a> {
        let mut changes = Changes {
            chains: BTreeMap::new(),
            elements: BTreeMap::new(),
            sets_added: Vec::new(),
            sets_removed: Vec::new(),
        };
        let mut old_sets = BTreeMap::new();
        let mut new_sets = BTreeMap::new();
        // One pass over both, in id order.
        let (mut befores, mut afters) = (old.ports.iter().peekable(), new.ports.iter().peekable());
        loop {
            let order = match (befores.peek(), afters.peek()) {
                (None, None) => break,
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some((before, _)), Some((after, _))) => before.cmp(after),
            };
            let before = befores.next_if(|_| order.is_le()).map(|(_, rules)| rules);
            let after = afters.next_if(|_| order.is_ge()).map(|(_, rules)| rules);
            if let (Some(before), Some(after)) = (before, after)
                && (Arc::ptr_eq(before, after) || before == after)
            {
                continue;
            }
            if let Some(before) = before {
                changes.add(before, false, &mut old_sets);
            }
            if let Some(after) = after {
                changes.add(after, true, &mut new_sets);
            }
        }
        // A chain whose rules are the same (the port changed elsewhere) stays as it is.
        changes.chains.retain(|_, (before, after)| before != after);
        for (name, timeout) in &new_sets {
            if old_sets.get(name) != Some(timeout) {
                changes.sets_added.push((name, *timeout));
            }
        }
        for (name, timeout) in &old_sets {
            if new_sets.get(name) != Some(timeout) {
                changes.sets_removed.push(name);
            }
        }
        changes
    }

    fn add(&mut self, rules: &'a PortRules, after: bool, sets: &mut BTreeMap<&'a str, u32>) {
        for (name, chain) in &rules.chains {
            let entry = self.chains.entry(name).or_default();
            let chain = Some(chain.iter().map(String::as_str).collect());
            if after { entry.1 = chain } else { entry.0 = chain }
        }
        for element in &rules.elements {
            let entry = self.elements.entry((&element.set, &element.key)).or_default();
            if after { entry.1 = Some(element) } else { entry.0 = Some(element) }
        }
        for (name, timeout) in &rules.affinity_sets {
            sets.insert(name, *timeout);
        }
    }
}

/// The hairpin addresses and groups, with how many ports use each.
#[derive(Default)]
struct Tally {
    hairpin: BTreeMap<Ipv4Addr, usize>,
    groups: BTreeMap<(Via, Group), usize>,
}

impl Tally {
    fn count(&mut self, rules: &PortRules, add: bool) {
        let port = &rules.source;
        for ip in port.endpoints.iter().map(|e| *e.ip()) {
            if port.remote_ips.binary_search(&ip).is_err() {
                count(&mut self.hairpin, ip, add);
            }
        }
        for group in rules.groups() {
            count(&mut self.groups, group, add);
        }
    }
}

/// One more or one fewer user of `key`; a key nobody uses goes.
fn count<K: Ord>(tally: &mut BTreeMap<K, usize>, key: K, add: bool) {
    if add {
        *tally.entry(key).or_insert(0) += 1;
    } else if let std::collections::btree_map::Entry::Occupied(mut entry) = tally.entry(key) {
        *entry.get_mut() -= 1;
        if *entry.get() == 0 {
            entry.remove();
        }
    }
}

/// (gone, new) element texts of two sorted key sequences, in one pass.
fn diff_keys<'a, K: Ord + 'a>(
    old: impl Iterator<Item = &'a K>,
    new: impl Iterator<Item = &'a K>,
    text: impl Fn(&K) -> String,
) -> (Vec<String>, Vec<String>) {
    let (mut old, mut new) = (old.peekable(), new.peekable());
    let (mut gone, mut added) = (Vec::new(), Vec::new());
    loop {
        let order = match (old.peek(), new.peek()) {
            (None, None) => break,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(o), Some(n)) => o.cmp(n),
        };
        match order {
            std::cmp::Ordering::Less => gone.extend(old.next().map(&text)),
            std::cmp::Ordering::Greater => added.extend(new.next().map(&text)),
            std::cmp::Ordering::Equal => {
                old.next();
                new.next();
            }
        }
    }
    (gone, added)
}

fn affinity_set_body(timeout: u32) -> String {
    format!("type ipv4_addr; flags dynamic,timeout; timeout {timeout}s;")
}

fn write_chain(out: &mut String, name: &str, hook: Option<&str>, rules: &[impl AsRef<str>]) {
    let _ = writeln!(out, "chain {name} {{");
    if let Some(hook) = hook {
        out.push_str(hook);
        out.push('\n');
    }
    for rule in rules {
        out.push_str(rule.as_ref());
        out.push('\n');
    }
    out.push_str("}\n");
}

/// `add element` or `delete element` of `items`; nothing when there are none.
fn write_elements<'a>(out: &mut String, verb: &str, table: &str, set: &str, items: impl IntoIterator<Item = &'a str>) {
    let mut items = items.into_iter().peekable();
    if items.peek().is_none() {
        return;
    }
    let _ = write!(out, "{verb} element ip {table} {set} {{ ");
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(item);
    }
    out.push_str(" }\n");
}

/// The `nft -f` text that removes the table, if it exists.
pub fn cleanup_transaction(table: &str) -> String {
    format!("table ip {table} {{}}\ndelete table ip {table}\n")
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
            remote_ips: Vec::new(),
        }
    }

    fn snapshot(ports: Vec<ServicePort>) -> Snapshot {
        Snapshot { service_ports: ports, node_ips: vec![Ipv4Addr::new(192, 168, 1, 10)] }
    }

    fn build(ports: Vec<ServicePort>, previous: Option<&Ruleset>) -> Ruleset {
        Ruleset::build(&snapshot(ports), &Options::default(), previous)
    }

    fn chain_names(ruleset: &Ruleset) -> BTreeSet<String> {
        ruleset.ports.values().flat_map(|p| p.chains.iter().map(|(name, _)| name.clone())).collect()
    }

    #[test]
    fn a_service_dnats_at_random_across_its_endpoints_through_one_map_lookup() {
        let rules = build(vec![port("web", "10.96.0.10", &["10.244.0.2:8080", "10.244.0.3:8080"])], None);
        let text = rules.full_transaction();
        assert!(text.starts_with("table ip rudder-proxy {}\ndelete table ip rudder-proxy\n"), "{text}");
        assert!(
            text.contains("add element ip rudder-proxy service-ips { 10.96.0.10 . tcp . 80 : goto svc/tcp/2 }"),
            "{text}"
        );
        assert!(
            text.contains("chain svc/tcp/2 {\ndnat ip addr . port to ip daddr . tcp dport . numgen random mod 2 map @endpoints/tcp/2\n}"),
            "{text}"
        );
        assert!(
            text.contains(
                "map endpoints/tcp/2 {\ntypeof ip daddr . tcp dport . numgen random mod 1 : ip daddr . tcp dport\n}"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "add element ip rudder-proxy endpoints/tcp/2 { 10.96.0.10 . 80 . 0 : 10.244.0.2 . 8080, 10.96.0.10 . 80 . 1 : 10.244.0.3 . 8080 }"
            ),
            "{text}"
        );
        assert!(
            text.contains("add element ip rudder-proxy hairpin { 10.244.0.2 . 10.244.0.2, 10.244.0.3 . 10.244.0.3 }"),
            "{text}"
        );
        assert!(text.contains("add element ip rudder-proxy node-ips { 192.168.1.10 }"), "{text}");
        // Only new connections are checked for Services without endpoints.
        assert!(text.contains("ct state new jump filter-services"), "{text}");
        // Elements follow the table's body, so the rules bound to a map exist first.
        assert!(text.find("add element").unwrap() > text.find("chain svc/").unwrap(), "{text}");
        assert_eq!(chain_names(&rules), BTreeSet::new(), "no chain of its own");
        assert_eq!(rules.rule_count(), 12 + 1 + 2 + 1 + 2 + 1);
    }

    #[test]
    fn only_endpoints_that_may_be_on_this_node_are_masqueraded_as_hairpin() {
        let mut web = port("web", "10.96.0.10", &["10.244.0.2:8080", "10.244.1.2:8080", "10.244.2.2:8080"]);
        web.remote_ips = vec!["10.244.1.2".parse().unwrap(), "10.244.2.2".parse().unwrap()];
        let rules = build(vec![web.clone()], None);
        let text = rules.full_transaction();
        assert!(text.contains("add element ip rudder-proxy hairpin { 10.244.0.2 . 10.244.0.2 }\n"), "{text}");
        assert!(
            text.contains("10.96.0.10 . 80 . 1 : 10.244.1.2 . 8080, 10.96.0.10 . 80 . 2 : 10.244.2.2 . 8080"),
            "remote endpoints still take traffic: {text}"
        );
        // An endpoint found to be local after all (its node was unknown) becomes one.
        web.remote_ips.pop();
        let update = build(vec![web], Some(&rules)).update_transaction(&rules);
        assert_eq!(update, "add element ip rudder-proxy hairpin { 10.244.2.2 . 10.244.2.2 }\n");
    }

    #[test]
    fn ports_with_as_many_endpoints_share_one_rule() {
        let rules = build(
            vec![
                port("a", "10.96.0.1", &["10.244.0.2:80", "10.244.0.3:80"]),
                port("b", "10.96.0.2", &["10.244.0.4:80", "10.244.0.5:80"]),
                port("c", "10.96.0.3", &["10.244.0.6:80"]),
            ],
            None,
        );
        let text = rules.full_transaction();
        assert_eq!(text.matches("dnat ip addr . port to").count(), 2, "{text}");
        assert!(text.contains("10.96.0.2 . tcp . 80 : goto svc/tcp/2"), "{text}");
        assert!(text.contains("10.96.0.3 . tcp . 80 : goto svc/tcp/1"), "{text}");
        assert!(text.contains("10.96.0.2 . 80 . 1 : 10.244.0.5 . 80"), "{text}");
    }

    #[test]
    fn a_service_without_endpoints_rejects() {
        let mut p = port("web", "10.96.0.10", &[]);
        p.node_port = Some(30080);
        let text = build(vec![p], None).full_transaction();
        assert!(
            text.contains("map no-endpoint-services {\ntype ipv4_addr . inet_proto . inet_service : verdict\n}"),
            "{text}"
        );
        assert!(
            text.contains(
                "add element ip rudder-proxy no-endpoint-services { 10.96.0.10 . tcp . 80 : goto reject-service }"
            ),
            "{text}"
        );
        assert!(text.contains("no-endpoint-nodeports { tcp . 30080 : goto reject-service }"), "{text}");
        assert!(!text.contains("chain svc/"), "{text}");
        assert!(!text.contains("endpoints/"), "{text}");
    }

    #[test]
    fn nodeports_mark_for_masquerade_and_cluster_cidr_masquerades_outsiders() {
        let mut p = port("web", "10.96.0.10", &["10.244.0.2:8080"]);
        p.node_port = Some(30080);
        p.protocol = Protocol::Udp;
        p.port_name.clear();
        let options = Options { cluster_cidr: Some("10.244.0.0/16".parse().unwrap()), ..Options::default() };
        let text = Ruleset::build(&snapshot(vec![p]), &options, None).full_transaction();
        assert!(text.contains("service-nodeports { udp . 30080 : goto np/udp/1 }"), "{text}");
        assert!(
            text.contains(
                "chain np/udp/1 {\nmeta mark set meta mark | 0x4000 dnat ip addr . port to udp dport . numgen random mod 1 map @nodeport-endpoints/udp/1\n}"
            ),
            "{text}"
        );
        assert!(text.contains("nodeport-endpoints/udp/1 { 30080 . 0 : 10.244.0.2 . 8080 }"), "{text}");
        assert!(text.contains("chain svc/udp/1 {\nip saddr != 10.244.0.0/16 meta mark set meta mark | 0x4000\ndnat ip addr . port to ip daddr . udp dport . numgen random mod 1 map @endpoints/udp/1\n}"), "{text}");
    }

    #[test]
    fn client_ip_affinity_remembers_each_client_per_endpoint() {
        let mut p = port("web", "10.96.0.10", &["10.244.0.2:8080", "10.244.0.3:8080"]);
        p.affinity_seconds = Some(60);
        let rules = build(vec![p], None);
        assert!(rules.groups.is_empty(), "affinity picks through chains, not the endpoint maps");
        let text = rules.full_transaction();
        assert!(text.contains("set aff/60/default/web/tcp/http/10.244.0.2/8080 { type ipv4_addr; flags dynamic,timeout; timeout 60s; }"), "{text}");
        assert!(
            text.contains(
                "ip saddr @aff/60/default/web/tcp/http/10.244.0.3/8080 goto ep/default/web/tcp/http/10.244.0.3/8080"
            ),
            "{text}"
        );
        assert!(text.contains("numgen random mod 2 vmap { 0 : goto ep/default/web/tcp/http/10.244.0.2/8080, 1 : goto ep/default/web/tcp/http/10.244.0.3/8080 }"), "{text}");
        assert!(text.contains("chain ep/default/web/tcp/http/10.244.0.2/8080 {\nupdate @aff/60/default/web/tcp/http/10.244.0.2/8080 { ip saddr }\nmeta l4proto tcp dnat to 10.244.0.2:8080\n}"), "{text}");
        assert!(!text.contains("map endpoints/"), "{text}");
    }

    #[test]
    fn an_update_touches_only_what_changed() {
        let before = build(
            vec![
                port("a", "10.96.0.1", &["10.244.0.2:80", "10.244.0.3:80"]),
                port("b", "10.96.0.2", &["10.244.0.4:80"]),
                port("c", "10.96.0.3", &["10.244.0.5:80"]),
            ],
            None,
        );
        let after = build(
            vec![
                port("a", "10.96.0.1", &["10.244.0.2:80"]),
                port("b", "10.96.0.2", &["10.244.0.4:80"]),
                port("c", "10.96.0.3", &[]),
            ],
            Some(&before),
        );
        assert_eq!(after.update_transaction(&after), "");
        assert!(Arc::ptr_eq(&before.ports["default/b/tcp/http"], &after.ports["default/b/tcp/http"]), "b is reused");
        let update = after.update_transaction(&before);
        // a moves to the one-endpoint group, c goes to the rejects; no rule changes,
        // and the two-endpoint group goes with its map's elements.
        let expected = "delete element ip rudder-proxy hairpin { 10.244.0.3 . 10.244.0.3, 10.244.0.5 . 10.244.0.5 }\n\
             delete element ip rudder-proxy endpoints/tcp/1 { 10.96.0.3 . 80 . 0 }\n\
             add element ip rudder-proxy endpoints/tcp/1 { 10.96.0.1 . 80 . 0 : 10.244.0.2 . 80 }\n\
             add element ip rudder-proxy no-endpoint-services { 10.96.0.3 . tcp . 80 : goto reject-service }\n\
             delete element ip rudder-proxy service-ips { 10.96.0.1 . tcp . 80, 10.96.0.3 . tcp . 80 }\n\
             add element ip rudder-proxy service-ips { 10.96.0.1 . tcp . 80 : goto svc/tcp/1 }\n\
             flush chain ip rudder-proxy svc/tcp/2\n\
             delete chain ip rudder-proxy svc/tcp/2\n\
             delete map ip rudder-proxy endpoints/tcp/2\n";
        assert_eq!(update, expected);
    }

    #[test]
    fn an_endpoint_moving_changes_one_map_element_and_no_rule() {
        let before = build(vec![port("a", "10.96.0.1", &["10.244.0.2:80", "10.244.0.3:80"])], None);
        let after = build(vec![port("a", "10.96.0.1", &["10.244.0.2:80", "10.244.0.9:80"])], Some(&before));
        let update = after.update_transaction(&before);
        let expected = "delete element ip rudder-proxy hairpin { 10.244.0.3 . 10.244.0.3 }\n\
             add element ip rudder-proxy hairpin { 10.244.0.9 . 10.244.0.9 }\n\
             delete element ip rudder-proxy endpoints/tcp/2 { 10.96.0.1 . 80 . 1 }\n\
             add element ip rudder-proxy endpoints/tcp/2 { 10.96.0.1 . 80 . 1 : 10.244.0.9 . 80 }\n";
        assert_eq!(update, expected);
    }

    #[test]
    fn a_new_group_is_made_before_its_first_port_uses_it() {
        let mut with_np = port("a", "10.96.0.1", &["10.244.0.2:80"]);
        with_np.node_port = Some(30001);
        let before = build(vec![with_np.clone(), port("b", "10.96.0.2", &["10.244.0.4:80"])], None);
        with_np.endpoints.push("10.244.0.3:80".parse().unwrap());
        let after = build(vec![with_np, port("b", "10.96.0.2", &["10.244.0.4:80"])], Some(&before));
        let update = after.update_transaction(&before);
        let map = update
            .find("add map ip rudder-proxy endpoints/tcp/2 { typeof ip daddr . tcp dport . numgen random mod 1 : ip daddr . tcp dport; }")
            .unwrap();
        let rule = update.find("add rule ip rudder-proxy svc/tcp/2 dnat").unwrap();
        let element =
            update.find("add element ip rudder-proxy service-ips { 10.96.0.1 . tcp . 80 : goto svc/tcp/2 }").unwrap();
        assert!(map < rule && rule < element, "{update}");
        assert!(update.contains("tcp . 30001 : goto np/tcp/2"), "{update}");
        // b still uses the one-endpoint group, but only a had a NodePort.
        assert!(!update.contains("delete chain ip rudder-proxy svc/tcp/1"), "{update}");
        let element = update.find("delete element ip rudder-proxy service-nodeports").unwrap();
        let chain = update.find("delete chain ip rudder-proxy np/tcp/1").unwrap();
        let map = update.find("delete map ip rudder-proxy nodeport-endpoints/tcp/1").unwrap();
        assert!(element < chain && chain < map, "{update}");
        assert!(!update.contains("delete element ip rudder-proxy nodeport-endpoints/tcp/1"), "{update}");
    }

    #[test]
    fn the_tallies_carried_over_equal_a_recount() {
        let before = build(
            vec![
                port("a", "10.96.0.1", &["10.244.0.2:80", "10.244.0.3:80"]),
                port("b", "10.96.0.2", &["10.244.0.3:81"]),
                port("c", "10.96.0.3", &["10.244.0.4:80"]),
            ],
            None,
        );
        // b changes, c goes (its address with it), d comes and shares an address with a.
        let after = build(
            vec![
                port("a", "10.96.0.1", &["10.244.0.2:80", "10.244.0.3:80"]),
                port("b", "10.96.0.2", &["10.244.0.5:81", "10.244.0.6:81", "10.244.0.7:81"]),
                port("d", "10.96.0.4", &["10.244.0.2:90"]),
            ],
            Some(&before),
        );
        let mut recount = Tally::default();
        for rules in after.ports.values() {
            recount.count(rules, true);
        }
        assert_eq!(after.hairpin, recount.hairpin);
        assert_eq!(after.groups, recount.groups);
        let groups: Vec<_> = after.groups.iter().map(|((_, (_, n)), users)| (*n, *users)).collect();
        assert_eq!(groups, [(1, 1), (2, 1), (3, 1)]);
        let addresses: Vec<String> = after.hairpin.keys().map(ToString::to_string).collect();
        assert_eq!(addresses, ["10.244.0.2", "10.244.0.3", "10.244.0.5", "10.244.0.6", "10.244.0.7"]);
        assert_eq!(after.hairpin[&"10.244.0.2".parse().unwrap()], 2);
    }

    #[test]
    fn an_update_creates_affinity_sets_and_chains_before_using_them_and_removes_them_after() {
        let mut with = port("a", "10.96.0.1", &["10.244.0.2:80"]);
        with.affinity_seconds = Some(30);
        let plain = build(vec![port("a", "10.96.0.1", &["10.244.0.2:80"])], None);
        let sticky = build(vec![with], Some(&plain));
        let up = sticky.update_transaction(&plain);
        let set = up.find("add set ip rudder-proxy aff/30/").unwrap();
        let chain = up.find("add chain ip rudder-proxy ep/").unwrap();
        let rule = up.find("add rule ip rudder-proxy svc/default/a/tcp/http ip saddr @aff").unwrap();
        assert!(set < chain && chain < rule, "{up}");
        assert!(up.contains("delete map ip rudder-proxy endpoints/tcp/1"), "{up}");
        let down = plain.update_transaction(&sticky);
        let flush = down.find("flush chain ip rudder-proxy ep/").unwrap();
        let delete = down.find("delete chain ip rudder-proxy ep/").unwrap();
        let set = down.find("delete set ip rudder-proxy aff/30/").unwrap();
        assert!(flush < delete && delete < set, "{down}");
    }
}
