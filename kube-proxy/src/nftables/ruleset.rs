//! The nftables ruleset as a function of a `Snapshot` (and of the ruleset it replaces,
//! whose endpoint-map slots it keeps), and the `nft -f` text that programs it: either
//! the whole table (deleted and recreated in the same transaction) or the difference
//! from the ruleset the kernel holds.
//!
//! Layout (one `ip` table of kube-proxy's own):
//! - `services` (nat, prerouting and output) looks `daddr . l4proto . dport` up in
//!   the verdict map `service-ips`, and `l4proto . dport` of traffic to a node
//!   address in `service-nodeports`: one lookup however many Services there are.
//! - the Service ports with endpoints are in buckets of 16 (by a slot each keeps
//!   while it exists); the ports of a bucket share a map `endpoints/<protocol>/<bucket>`
//!   and a chain `svc/<protocol>/<bucket>` (the verdict map's target) with one DNAT
//!   rule per port: it matches the port's address and dport, and
//!   `numgen random mod <n> offset <slot base>` picks a key of the port's slot in
//!   the map (address . port per key); with a cluster CIDR, a rule before it marks
//!   traffic from outside for masquerade. So an endpoint change that keeps the count
//!   changes map elements only, and a count change the rules of one chain of 16.
//!   NodePorts likewise go to `np/<protocol>/<bucket>`, whose rules also mark the
//!   packet for masquerade.
//! - with ClientIP affinity, a port has a chain `svc/<id>` of its own instead, which
//!   picks one chain `ep/...` per endpoint that records the client in a timeout set
//!   `aff/...` and DNATs; its NodePort goes through `np/<id>`, which marks the packet.
//! - ports without endpoints are in `no-endpoint-services`/`-nodeports`, looked up
//!   by filter chains before NAT that reject (TCP reset, ICMP port unreachable).
//! - postrouting masquerades marked packets, and hairpin traffic (a pod reaching
//!   itself through its Service: saddr . daddr of one endpoint, in set `hairpin`).
//!
//! Why buckets: the kernel walks every element of a map for each rule bound to it,
//! and every binding for each element added, so one map for all ports is quadratic
//! (10,000 ports: a minute), and one map per port is too, through the kernel's linear
//! set lookup by name. And `nft` lists every chain of the table before applying even
//! one element change: 10,000 chains made that 25-35 ms, 625 make it a few.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::sync::Arc;

use crate::model::{Cidr, Protocol, ServicePort, Snapshot};

/// The packet mark meaning "masquerade this connection"; Kubernetes' value.
pub const MASQUERADE_MARK: u32 = 0x4000;

/// The table's default name.
pub const DEFAULT_TABLE: &str = "rudder-proxy";

/// A slot's keys in an endpoints map are `slot << SLOT_SHIFT` plus the endpoint's
/// index, so a port has at most this many endpoints (an Endpoints object holds at most
/// 1,000) and a node at most 2^18 ports with endpoints.
const SLOT_SHIFT: u32 = 14;
const MAX_ENDPOINTS: usize = 1 << SLOT_SHIFT;
const MAX_SLOTS: u32 = 1 << (32 - SLOT_SHIFT);
/// Ports per endpoints map.
const SLOTS_PER_MAP: u32 = 16;

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

/// An endpoints map's type: numgen's value to address . port. Written with the
/// protocol's own dport: nft 1.0.6 refuses a rule with `meta l4proto tcp` that uses a
/// map (from the kernel) typed `th dport` ("conflicting protocols specified").
fn endpoint_map_type(protocol: Protocol) -> String {
    format!("typeof numgen random mod 1 : ip daddr . {protocol} dport")
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
    /// Its endpoints-map slot (ports with endpoints and without affinity).
    slot: Option<u32>,
    /// Its own chains (`svc/`, `np/`, `ep/` with affinity): name and rules.
    chains: Vec<(String, Vec<String>)>,
    /// Its rules in the chains it shares with the other ports of its endpoints map
    /// (`svc/<protocol>/<bucket>`, `np/<protocol>/<bucket>`): chain name and rules.
    shared: Vec<(String, Vec<String>)>,
    /// ClientIP affinity sets: name and timeout in seconds.
    affinity_sets: Vec<(String, u32)>,
    elements: Vec<Element>,
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
    /// Endpoint maps in use (by protocol and bucket), with how many ports use each.
    endpoint_maps: BTreeMap<(Protocol, u32), usize>,
}

fn svc_chain(id: &str) -> String {
    format!("svc/{id}")
}

fn endpoint_name(prefix: &str, id: &str, endpoint: &std::net::SocketAddrV4) -> String {
    format!("{prefix}/{id}/{}/{}", endpoint.ip(), endpoint.port())
}

/// The chain `prefix/<protocol>/<bucket>` the ports of one endpoints map share.
fn shared_chain(prefix: &str, (protocol, bucket): (Protocol, u32)) -> String {
    format!("{prefix}/{protocol}/{bucket}")
}

/// The endpoints map of (protocol, bucket).
fn endpoint_map((protocol, bucket): (Protocol, u32)) -> String {
    format!("endpoints/{protocol}/{bucket}")
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
    /// kernel holds) are taken from it as they are, and every port keeps its slot.
    pub fn build(snapshot: &Snapshot, options: &Options, previous: Option<&Ruleset>) -> Ruleset {
        let previous = previous.filter(|p| p.options == *options);
        let mut ports = Vec::with_capacity(snapshot.service_ports.len());
        let mut fresh = Vec::new();
        // Previous ports found in the snapshot (kept as they are, or replaced).
        let mut kept_or_replaced = 0;
        let mut replaced = Vec::new();
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
                    let wants_slot = !port.endpoints.is_empty() && port.affinity_seconds.is_none();
                    let slot = old.and_then(|o| o.slot).filter(|_| wants_slot);
                    fresh.push((id, port, wants_slot, slot));
                }
            }
        }
        // Slots in use, only when a port needs a new one.
        let mut used_slots: Option<BTreeSet<u32>> = None;
        let mut next_free = 0;
        let mut added = Vec::with_capacity(fresh.len());
        for (id, port, wants_slot, slot) in &fresh {
            let mut slot = *slot;
            if *wants_slot && slot.is_none() {
                let used = used_slots.get_or_insert_with(|| {
                    ports.iter().filter_map(|(_, p)| p.slot).chain(fresh.iter().filter_map(|f| f.3)).collect()
                });
                while used.contains(&next_free) {
                    next_free += 1;
                }
                if next_free < MAX_SLOTS {
                    used.insert(next_free);
                    slot = Some(next_free);
                } else {
                    tracing::error!(
                        port = id,
                        "more than {MAX_SLOTS} Service ports with endpoints; rejecting this one"
                    );
                }
            }
            added.push(Arc::new(port_rules(port, id, slot, options)));
        }
        ports.extend(fresh.into_iter().map(|f| f.0).zip(added.iter().cloned()));
        let ports: BTreeMap<String, Arc<PortRules>> = ports.into_iter().collect();
        // The tallies follow from the previous ones and the ports that changed, so an
        // endpoint change does not recount 50,000 endpoints.
        let mut tally = match previous {
            Some(p) => Tally { hairpin: p.hairpin.clone(), endpoint_maps: p.endpoint_maps.clone() },
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
        let Tally { hairpin, endpoint_maps } = tally;
        // Sorted for diff_keys.
        let mut node_ips = snapshot.node_ips.clone();
        node_ips.sort();
        node_ips.dedup();
        Ruleset { options: options.clone(), node_ips, ports, hairpin, endpoint_maps }
    }

    /// Rules plus set and map elements: what the kernel evaluates or holds.
    pub fn rule_count(&self) -> usize {
        let base: usize = base_chains().iter().map(|(_, _, rules)| rules.len()).sum();
        let ports: usize = self
            .ports
            .values()
            .map(|p| p.chains.iter().chain(&p.shared).map(|(_, rules)| rules.len()).sum::<usize>() + p.elements.len())
            .sum();
        base + ports + self.hairpin.len() + self.node_ips.len()
    }

    /// Deletes the table (if there) and creates it whole, in one transaction.
    pub fn full_transaction(&self) -> String {
        let table = &self.options.table;
        let mut out = String::with_capacity(256 * (self.ports.len() + 16));
        // Creating the table first makes the delete valid when it does not exist yet.
        let _ = writeln!(out, "table ip {table} {{}}\ndelete table ip {table}\ntable ip {table} {{");
        for (kind, name, type_) in SKELETON_SETS {
            let _ = writeln!(out, "{kind} {name} {{\n{type_}\n}}");
        }
        for map in self.endpoint_maps.keys() {
            let _ = writeln!(out, "map {} {{\n{}\n}}", endpoint_map(*map), endpoint_map_type(map.0));
        }
        for rules in self.ports.values() {
            for (name, timeout) in &rules.affinity_sets {
                let _ = writeln!(out, "set {name} {{ {} }}", affinity_set_body(*timeout));
            }
        }
        for (name, hook, rules) in base_chains() {
            write_chain(&mut out, name, hook, &rules);
        }
        for rules in self.ports.values() {
            for (name, rules) in &rules.chains {
                write_chain(&mut out, name, None, rules);
            }
        }
        for (name, rules) in self.shared_chains(|_| true) {
            write_chain(&mut out, name, None, &rules);
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
        for map in self.endpoint_maps.keys().filter(|m| !applied.endpoint_maps.contains_key(m)) {
            let _ = writeln!(out, "add map ip {table} {} {{ {}; }}", endpoint_map(*map), endpoint_map_type(map.0));
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
        let gone_maps: BTreeSet<String> = applied
            .endpoint_maps
            .keys()
            .filter(|m| !self.endpoint_maps.contains_key(m))
            .map(|m| endpoint_map(*m))
            .collect();
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
        // Per set, deletes come first: a key can move (a slot or a ClusterIP reused).
        let sets: BTreeSet<&str> = gone.keys().chain(added.keys()).copied().collect();
        for set in sets {
            write_elements(&mut out, "delete", table, set, gone.get(set).into_iter().flatten().copied());
            write_elements(&mut out, "add", table, set, added.get(set).into_iter().flatten().copied());
        }
        // Chains and sets go last, once no element or rule refers to them.
        let removed: Vec<&str> =
            changes.chains.iter().filter(|(_, (_, new))| new.is_none()).map(|(name, _)| *name).collect();
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

    /// The shared chains whose name `wanted` accepts, with their rules: each port's
    /// in id order.
    fn shared_chains(&self, wanted: impl Fn(&str) -> bool) -> BTreeMap<&str, Vec<&str>> {
        let mut chains: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for rules in self.ports.values() {
            for (name, rules) in rules.shared.iter().filter(|(name, _)| wanted(name)) {
                chains.entry(name).or_default().extend(rules.iter().map(String::as_str));
            }
        }
        chains
    }

    /// Whether `update_transaction` from `applied` is possible: same table and options.
    pub fn can_update_from(&self, applied: &Ruleset) -> bool {
        self.options == applied.options
    }
}

/// The rules and elements of one port.
fn port_rules(port: &ServicePort, id: &str, slot: Option<u32>, options: &Options) -> PortRules {
    let mut rules = PortRules {
        source: port.clone(),
        slot,
        chains: Vec::new(),
        shared: Vec::new(),
        affinity_sets: Vec::new(),
        elements: Vec::new(),
    };
    let proto = port.protocol.as_str();
    let service_key = format!("{} . {proto} . {}", port.cluster_ip, port.port);
    let nodeport_key = port.node_port.map(|n| format!("{proto} . {n}"));
    let outsiders =
        options.cluster_cidr.map(|cidr| format!("ip saddr != {cidr} meta mark set meta mark | {MASQUERADE_MARK:#x}"));
    let mark = format!("meta mark set meta mark | {MASQUERADE_MARK:#x}");
    let (chain, np_chain) = match (port.affinity_seconds, slot) {
        // Without endpoints (or, beyond MAX_SLOTS, without a slot) the port rejects.
        _ if port.endpoints.is_empty() => (None, None),
        (Some(timeout), _) => {
            let chain = svc_chain(id);
            let mut svc_rules: Vec<String> = outsiders.into_iter().collect();
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
            let np_chain = nodeport_key.as_ref().map(|_| {
                let np_chain = format!("np/{id}");
                rules.chains.push((np_chain.clone(), vec![mark.clone(), format!("goto {chain}")]));
                np_chain
            });
            (Some(chain), np_chain)
        }
        (None, Some(slot)) => {
            let endpoints = &port.endpoints[..port.endpoints.len().min(MAX_ENDPOINTS)];
            if endpoints.len() < port.endpoints.len() {
                tracing::warn!(port = id, "more than {MAX_ENDPOINTS} endpoints; using the first {MAX_ENDPOINTS}");
            }
            let base = slot << SLOT_SHIFT;
            let bucket = (port.protocol, slot / SLOTS_PER_MAP);
            let map = endpoint_map(bucket);
            // The protocol's dport match is also the protocol match a DNAT to a port needs.
            let dnat = format!("dnat ip addr . port to numgen random mod {} offset {base} map @{map}", endpoints.len());
            let this = format!("ip daddr {} {proto} dport {}", port.cluster_ip, port.port);
            let mut svc_rules: Vec<String> = outsiders.into_iter().map(|o| format!("{this} {o}")).collect();
            svc_rules.push(format!("{this} {dnat}"));
            let chain = shared_chain("svc", bucket);
            rules.shared.push((chain.clone(), svc_rules));
            let np_chain = port.node_port.map(|node_port| {
                let np_chain = shared_chain("np", bucket);
                rules.shared.push((np_chain.clone(), vec![format!("{proto} dport {node_port} {mark} {dnat}")]));
                np_chain
            });
            for (i, endpoint) in (0u32..).zip(endpoints) {
                rules.elements.push(element(
                    &map,
                    (base + i).to_string(),
                    Some(format!("{} . {}", endpoint.ip(), endpoint.port())),
                ));
            }
            (Some(chain), np_chain)
        }
        (None, None) => (None, None),
    };
    let Some(chain) = chain else {
        rules.elements.push(element(NO_ENDPOINT_SERVICES, service_key, Some("goto reject-service".into())));
        if let Some(key) = nodeport_key {
            rules.elements.push(element(NO_ENDPOINT_NODEPORTS, key, Some("goto reject-service".into())));
        }
        return rules;
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
        let mut dirty: BTreeSet<&str> = BTreeSet::new();
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
            // A shared chain changes only when a port's rules in it do (not, say,
            // when an endpoint moves and only a map element changes).
            let shared = |rules: Option<&'a Arc<PortRules>>| rules.map(|r| r.shared.as_slice()).unwrap_or_default();
            let (b, a) = (shared(before), shared(after));
            for (name, _) in b.iter().filter(|r| !a.contains(r)).chain(a.iter().filter(|r| !b.contains(r))) {
                dirty.insert(name.as_str());
            }
            if let Some(before) = before {
                changes.add(before, false, &mut old_sets);
            }
            if let Some(after) = after {
                changes.add(after, true, &mut new_sets);
            }
        }
        if !dirty.is_empty() {
            let mut olds = old.shared_chains(|name| dirty.contains(name));
            let mut news = new.shared_chains(|name| dirty.contains(name));
            for name in dirty {
                changes.chains.insert(name, (olds.remove(name), news.remove(name)));
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

/// The hairpin addresses and endpoint maps, with how many ports use each.
#[derive(Default)]
struct Tally {
    hairpin: BTreeMap<Ipv4Addr, usize>,
    endpoint_maps: BTreeMap<(Protocol, u32), usize>,
}

impl Tally {
    fn count(&mut self, rules: &PortRules, add: bool) {
        for endpoint in &rules.source.endpoints {
            count(&mut self.hairpin, *endpoint.ip(), add);
        }
        if let Some(slot) = rules.slot {
            count(&mut self.endpoint_maps, (rules.source.protocol, slot / SLOTS_PER_MAP), add);
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

    fn slot(ruleset: &Ruleset, name: &str) -> Option<u32> {
        ruleset.ports[&format!("default/{name}/tcp/http")].slot
    }

    #[test]
    fn a_service_dnats_at_random_across_its_endpoints_through_one_map_lookup() {
        let rules = build(vec![port("web", "10.96.0.10", &["10.244.0.2:8080", "10.244.0.3:8080"])], None);
        let text = rules.full_transaction();
        assert!(text.starts_with("table ip rudder-proxy {}\ndelete table ip rudder-proxy\n"), "{text}");
        assert!(
            text.contains("add element ip rudder-proxy service-ips { 10.96.0.10 . tcp . 80 : goto svc/tcp/0 }"),
            "{text}"
        );
        assert!(
            text.contains("chain svc/tcp/0 {\nip daddr 10.96.0.10 tcp dport 80 dnat ip addr . port to numgen random mod 2 offset 0 map @endpoints/tcp/0\n}"),
            "{text}"
        );
        assert!(text.contains("map endpoints/tcp/0 {\ntypeof numgen random mod 1 : ip daddr . tcp dport\n}"), "{text}");
        assert!(
            text.contains(
                "add element ip rudder-proxy endpoints/tcp/0 { 0 : 10.244.0.2 . 8080, 1 : 10.244.0.3 . 8080 }"
            ),
            "{text}"
        );
        assert!(
            text.contains("add element ip rudder-proxy hairpin { 10.244.0.2 . 10.244.0.2, 10.244.0.3 . 10.244.0.3 }"),
            "{text}"
        );
        assert!(text.contains("add element ip rudder-proxy node-ips { 192.168.1.10 }"), "{text}");
        // Elements follow the table's body, so the rules bound to a map exist first.
        assert!(text.find("add element").unwrap() > text.find("chain svc/").unwrap(), "{text}");
        assert_eq!(chain_names(&rules), BTreeSet::new(), "no chain of its own");
        assert_eq!(rules.rule_count(), 12 + 1 + 2 + 1 + 2 + 1);
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
        assert!(text.contains("service-nodeports { udp . 30080 : goto np/udp/0 }"), "{text}");
        assert!(
            text.contains(
                "chain np/udp/0 {\nudp dport 30080 meta mark set meta mark | 0x4000 dnat ip addr . port to numgen random mod 1 offset 0 map @endpoints/udp/0\n}"
            ),
            "{text}"
        );
        assert!(text.contains("chain svc/udp/0 {\nip daddr 10.96.0.10 udp dport 80 ip saddr != 10.244.0.0/16 meta mark set meta mark | 0x4000\nip daddr 10.96.0.10 udp dport 80 dnat ip addr . port to numgen random mod 1 offset 0 map @endpoints/udp/0\n}"), "{text}");
    }

    #[test]
    fn client_ip_affinity_remembers_each_client_per_endpoint() {
        let mut p = port("web", "10.96.0.10", &["10.244.0.2:8080", "10.244.0.3:8080"]);
        p.affinity_seconds = Some(60);
        let rules = build(vec![p], None);
        assert_eq!(slot(&rules, "web"), None, "affinity picks through chains, not the endpoint maps");
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
        // a's rule changes and c's goes: their shared chain is rewritten, with b's rule.
        let expected = "flush chain ip rudder-proxy svc/tcp/0\n\
             add rule ip rudder-proxy svc/tcp/0 ip daddr 10.96.0.1 tcp dport 80 dnat ip addr . port to numgen random mod 1 offset 0 map @endpoints/tcp/0\n\
             add rule ip rudder-proxy svc/tcp/0 ip daddr 10.96.0.2 tcp dport 80 dnat ip addr . port to numgen random mod 1 offset 16384 map @endpoints/tcp/0\n\
             delete element ip rudder-proxy hairpin { 10.244.0.3 . 10.244.0.3, 10.244.0.5 . 10.244.0.5 }\n\
             delete element ip rudder-proxy endpoints/tcp/0 { 1, 32768 }\n\
             add element ip rudder-proxy no-endpoint-services { 10.96.0.3 . tcp . 80 : goto reject-service }\n\
             delete element ip rudder-proxy service-ips { 10.96.0.3 . tcp . 80 }\n";
        assert_eq!(update, expected);
    }

    #[test]
    fn an_endpoint_moving_changes_one_map_element_and_no_rule() {
        let before = build(vec![port("a", "10.96.0.1", &["10.244.0.2:80", "10.244.0.3:80"])], None);
        let after = build(vec![port("a", "10.96.0.1", &["10.244.0.2:80", "10.244.0.9:80"])], Some(&before));
        let update = after.update_transaction(&before);
        let expected = "delete element ip rudder-proxy hairpin { 10.244.0.3 . 10.244.0.3 }\n\
             add element ip rudder-proxy hairpin { 10.244.0.9 . 10.244.0.9 }\n\
             delete element ip rudder-proxy endpoints/tcp/0 { 1 }\n\
             add element ip rudder-proxy endpoints/tcp/0 { 1 : 10.244.0.9 . 80 }\n";
        assert_eq!(update, expected);
    }

    #[test]
    fn ports_keep_their_slots_and_a_map_goes_with_its_last_port() {
        let names: Vec<String> = (0..17).map(|i| format!("s{i:02}")).collect();
        let ports = |names: &[String]| -> Vec<ServicePort> {
            names.iter().enumerate().map(|(i, n)| port(n, &format!("10.96.0.{}", i + 1), &["10.244.0.2:80"])).collect()
        };
        let first = build(ports(&names), None);
        assert_eq!(slot(&first, "s16"), Some(16));
        assert_eq!(
            first.endpoint_maps.keys().copied().collect::<Vec<_>>(),
            vec![(Protocol::Tcp, 0), (Protocol::Tcp, 1)]
        );
        // s00 goes: the others keep their slots, and a newcomer takes the free one.
        let mut fewer = names[1..].to_vec();
        fewer.push("t".to_string());
        let second = build(ports(&fewer), Some(&first));
        assert_eq!(slot(&second, "s16"), Some(16));
        assert_eq!(slot(&second, "t"), Some(0));
        // Only s16 in endpoints/tcp/1: it going removes the map, after its chain.
        let third = build(ports(&fewer[..15]), Some(&second));
        let update = third.update_transaction(&second);
        let chain = update.find("delete chain ip rudder-proxy svc/tcp/1").unwrap();
        let map = update.find("delete map ip rudder-proxy endpoints/tcp/1").unwrap();
        assert!(chain < map, "{update}");
        assert!(!update.contains("delete element ip rudder-proxy endpoints/tcp/1"), "{update}");
        // And coming back creates it before the rule that uses it.
        let update = second.update_transaction(&third);
        let map = update
            .find("add map ip rudder-proxy endpoints/tcp/1 { typeof numgen random mod 1 : ip daddr . tcp dport; }")
            .unwrap();
        let rule = update.find("add rule ip rudder-proxy svc/tcp/1 ip daddr 10.96.0.16").unwrap();
        assert!(map < rule, "{update}");
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
                port("b", "10.96.0.2", &["10.244.0.5:81"]),
                port("d", "10.96.0.4", &["10.244.0.2:90"]),
            ],
            Some(&before),
        );
        let mut recount = Tally::default();
        for rules in after.ports.values() {
            recount.count(rules, true);
        }
        assert_eq!(after.hairpin, recount.hairpin);
        assert_eq!(after.endpoint_maps, recount.endpoint_maps);
        let addresses: Vec<String> = after.hairpin.keys().map(ToString::to_string).collect();
        assert_eq!(addresses, ["10.244.0.2", "10.244.0.3", "10.244.0.5"]);
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
        assert!(up.contains("delete map ip rudder-proxy endpoints/tcp/0"), "{up}");
        let down = plain.update_transaction(&sticky);
        let flush = down.find("flush chain ip rudder-proxy ep/").unwrap();
        let delete = down.find("delete chain ip rudder-proxy ep/").unwrap();
        let set = down.find("delete set ip rudder-proxy aff/30/").unwrap();
        assert!(flush < delete && delete < set, "{down}");
    }
}
