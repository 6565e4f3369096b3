//! Services: type-dependent rules, and the ClusterIP and NodePorts allocated to each.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;

use bytes::Bytes;
use proto::codec::FieldError;
use proto::core::v1::{Service, ServiceSpec};
use proto::{ApiError, Reason, validation};

use crate::allocation::{RangeAllocator, Reservations};
use crate::registry::{NameRule, Strategy};

const TYPES: &[&str] = &["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"];
const PROTOCOLS: &[&str] = &["TCP", "UDP", "SCTP"];

pub struct ServiceStrategy {
    ips: Arc<RangeAllocator>,
    ports: Arc<RangeAllocator>,
}

impl ServiceStrategy {
    pub fn new(ips: Arc<RangeAllocator>, ports: Arc<RangeAllocator>) -> Self {
        ServiceStrategy { ips, ports }
    }

    fn owner(service: &Service) -> Bytes {
        let meta = service.metadata.clone().unwrap_or_default();
        Bytes::from(format!("{}/{}", meta.namespace, meta.name))
    }

    /// The cluster IPs and node ports a service holds.
    fn held(spec: &ServiceSpec) -> (BTreeSet<u32>, BTreeSet<u32>) {
        let ips = spec.cluster_ip.parse::<Ipv4Addr>().ok().map(u32::from).into_iter().collect();
        let ports = spec.ports.iter().filter_map(|p| u32::try_from(p.node_port).ok()).filter(|p| *p > 0).collect();
        (ips, ports)
    }

    fn reserve(&self, service: &Service, ips: &BTreeSet<u32>, ports: &BTreeSet<u32>, r: &mut Reservations) {
        let owner = Self::owner(service);
        for ip in ips {
            r.reserve.push((self.ips.key(&Ipv4Addr::from(*ip).to_string()), owner.clone()));
        }
        for port in ports {
            r.reserve.push((self.ports.key(&port.to_string()), owner.clone()));
        }
    }

    fn release(&self, ips: &BTreeSet<u32>, ports: &BTreeSet<u32>, r: &mut Reservations) {
        for ip in ips {
            r.release.push(self.ips.key(&Ipv4Addr::from(*ip).to_string()));
        }
        for port in ports {
            r.release.push(self.ports.key(&port.to_string()));
        }
    }

    /// Fills in a ClusterIP and NodePorts where the spec wants them and has none.
    /// `taken_before`: values this service already held (they stay its own).
    fn allocate(
        &self,
        name: &str,
        spec: &mut ServiceSpec,
        taken_before: &(BTreeSet<u32>, BTreeSet<u32>),
    ) -> Result<(), ApiError> {
        if spec.r#type != "ExternalName" && spec.cluster_ip.is_empty() {
            let (_, ip) = self.ips.pick(&[]).ok_or_else(|| {
                ApiError::new(
                    Reason::InternalError,
                    format!("no ClusterIP is left in the service range {}", self.ips.describe()),
                )
            })?;
            spec.cluster_ip = ip.clone();
            spec.cluster_ips = vec![ip];
        } else if let Ok(ip) = spec.cluster_ip.parse::<Ipv4Addr>()
            && !taken_before.0.contains(&u32::from(ip))
            && self.ips.is_used(u32::from(ip))
        {
            return Err(ApiError::invalid(
                &proto::resource::kinds::SERVICE,
                name,
                &[FieldError::invalid(
                    "spec.clusterIPs",
                    &spec.cluster_ip,
                    &format!("failed to allocate IP {ip}: provided IP is already allocated"),
                )],
            ));
        }
        if wants_node_ports(&spec.r#type) {
            let mut picked: Vec<u32> = Vec::new();
            for (i, port) in spec.ports.iter_mut().enumerate() {
                if port.node_port == 0 {
                    let (value, _) = self.ports.pick(&picked).ok_or_else(|| {
                        ApiError::new(
                            Reason::InternalError,
                            format!("no NodePort is left in the range {}", self.ports.describe()),
                        )
                    })?;
                    picked.push(value);
                    port.node_port = i32::try_from(value).unwrap_or(0);
                } else if let Ok(value) = u32::try_from(port.node_port) {
                    if !taken_before.1.contains(&value) && self.ports.is_used(value) {
                        return Err(ApiError::invalid(
                            &proto::resource::kinds::SERVICE,
                            name,
                            &[FieldError::invalid(
                                format!("spec.ports[{i}].nodePort"),
                                port.node_port,
                                "provided port is already allocated",
                            )],
                        ));
                    }
                    picked.push(value);
                }
            }
        }
        Ok(())
    }
}

impl ServiceStrategy {
    fn mark(&self, key: &str, used: bool) {
        self.ips.mark_key(key, used, |s| s.parse::<Ipv4Addr>().ok().map(u32::from));
        self.ports.mark_key(key, used, |s| s.parse::<u32>().ok());
    }
}

fn wants_node_ports(service_type: &str) -> bool {
    service_type == "NodePort" || service_type == "LoadBalancer"
}

impl Strategy<Service> for ServiceStrategy {
    fn name_rule(&self) -> NameRule {
        NameRule::Label1035
    }

    fn default(&self, service: &mut Service) {
        let spec = service.spec.get_or_insert_with(ServiceSpec::default);
        if spec.r#type.is_empty() {
            spec.r#type = "ClusterIP".to_string();
        }
        if spec.session_affinity.is_empty() {
            spec.session_affinity = "None".to_string();
        }
        if spec.session_affinity == "ClientIP" {
            let config = spec.session_affinity_config.get_or_insert_with(Default::default);
            let client = config.client_ip.get_or_insert_with(Default::default);
            client.timeout_seconds.get_or_insert(10800);
        }
        for port in &mut spec.ports {
            if port.protocol.is_empty() {
                port.protocol = "TCP".to_string();
            }
            if port.target_port.is_none() {
                port.target_port = Some(proto::meta::v1::IntOrString::int(port.port));
            }
        }
        if spec.r#type != "ExternalName" {
            if spec.ip_families.is_empty() {
                spec.ip_families = vec!["IPv4".to_string()];
            }
            spec.ip_family_policy.get_or_insert_with(|| "SingleStack".to_string());
            spec.internal_traffic_policy.get_or_insert_with(|| "Cluster".to_string());
            if !spec.cluster_ip.is_empty() && spec.cluster_ips.is_empty() {
                spec.cluster_ips = vec![spec.cluster_ip.clone()];
            }
        }
        if wants_node_ports(&spec.r#type) && spec.external_traffic_policy.is_empty() {
            spec.external_traffic_policy = "Cluster".to_string();
        }
    }

    fn validate(&self, service: &Service) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let Some(spec) = service.spec.as_ref() else {
            return vec![FieldError::required("spec", "")];
        };
        let service_type = spec.r#type.as_str();
        if !TYPES.contains(&service_type) {
            errors.push(FieldError::not_supported("spec.type", service_type, TYPES));
        }
        let headless = spec.cluster_ip == "None";
        if service_type == "ExternalName" {
            if spec.external_name.is_empty() {
                errors.push(FieldError::required("spec.externalName", ""));
            }
        } else if spec.ports.is_empty() && !headless {
            errors.push(FieldError::required("spec.ports", ""));
        }
        if headless && service_type != "ClusterIP" {
            errors.push(FieldError::invalid(
                "spec.clusterIP",
                &spec.cluster_ip,
                &format!("may not be set to 'None' for {service_type} services"),
            ));
        }
        if !spec.cluster_ip.is_empty() && !headless {
            match spec.cluster_ip.parse::<Ipv4Addr>() {
                Err(_) => errors.push(FieldError::invalid(
                    "spec.clusterIP",
                    &spec.cluster_ip,
                    "must be empty, 'None', or a valid IP address",
                )),
                Ok(ip) if service_type != "ExternalName" && !self.ips.contains(u32::from(ip)) => {
                    errors.push(FieldError::invalid(
                        "spec.clusterIP",
                        &spec.cluster_ip,
                        &format!(
                            "provided IP is not in the valid range. The range of valid IPs is {}",
                            self.ips.describe()
                        ),
                    ))
                }
                Ok(_) => {}
            }
        }
        let mut names = BTreeSet::new();
        for (i, port) in spec.ports.iter().enumerate() {
            let path = format!("spec.ports[{i}]");
            if spec.ports.len() > 1 && port.name.is_empty() {
                errors.push(FieldError::required(format!("{path}.name"), "when more than one port is given"));
            }
            if !port.name.is_empty() {
                for problem in validation::is_dns1123_label(&port.name) {
                    errors.push(FieldError::invalid(format!("{path}.name"), &port.name, &problem));
                }
                if !names.insert(port.name.clone()) {
                    errors.push(FieldError::duplicate(format!("{path}.name"), &port.name));
                }
            }
            for problem in validation::is_valid_port_num(port.port) {
                errors.push(FieldError::invalid(format!("{path}.port"), port.port, &problem));
            }
            if !PROTOCOLS.contains(&port.protocol.as_str()) {
                errors.push(FieldError::not_supported(format!("{path}.protocol"), &port.protocol, PROTOCOLS));
            }
            if let Some(target) = &port.target_port {
                let problems = match (target.as_int(), target.as_str()) {
                    (_, Some(name)) => validation::is_valid_port_name(name),
                    (Some(number), _) => validation::is_valid_port_num(number),
                    _ => Vec::new(),
                };
                for problem in problems {
                    errors.push(FieldError::invalid(format!("{path}.targetPort"), target.to_string(), &problem));
                }
            }
            if port.node_port != 0 {
                if !wants_node_ports(service_type) {
                    errors.push(FieldError::forbidden(
                        format!("{path}.nodePort"),
                        &format!("may not be used when `type` is '{service_type}'"),
                    ));
                } else if !u32::try_from(port.node_port).is_ok_and(|p| self.ports.contains(p)) {
                    errors.push(FieldError::invalid(
                        format!("{path}.nodePort"),
                        port.node_port,
                        &format!(
                            "provided port is not in the valid range. The range of valid ports is {}",
                            self.ports.describe()
                        ),
                    ));
                }
            }
        }
        for (key, value) in &spec.selector {
            for problem in validation::is_qualified_name(key) {
                errors.push(FieldError::invalid("spec.selector", key, &problem));
            }
            for problem in validation::is_valid_label_value(value) {
                errors.push(FieldError::invalid("spec.selector", value, &problem));
            }
        }
        let affinities = ["None", "ClientIP"];
        if !affinities.contains(&spec.session_affinity.as_str()) {
            errors.push(FieldError::not_supported("spec.sessionAffinity", &spec.session_affinity, &affinities));
        }
        let timeout =
            spec.session_affinity_config.as_ref().and_then(|c| c.client_ip.as_ref()).and_then(|c| c.timeout_seconds);
        if let Some(timeout) = timeout
            && !(1..=86400).contains(&timeout)
        {
            errors.push(FieldError::invalid(
                "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                timeout,
                "must be greater than 0 and less than 86400",
            ));
        }
        errors
    }

    fn prepare_for_update(&self, new: &mut Service, old: &Service) {
        let (Some(new_spec), Some(old_spec)) = (new.spec.as_mut(), old.spec.as_ref()) else {
            return;
        };
        // An update may leave the allocated ClusterIP out; it keeps it.
        if new_spec.cluster_ip.is_empty() && new_spec.r#type != "ExternalName" && old_spec.r#type != "ExternalName" {
            new_spec.cluster_ip = old_spec.cluster_ip.clone();
            new_spec.cluster_ips = old_spec.cluster_ips.clone();
        }
        if new_spec.r#type == "ExternalName" {
            new_spec.cluster_ip.clear();
            new_spec.cluster_ips.clear();
        }
        // Ports without a nodePort keep the one they had; a change of type away from
        // NodePort drops the ones it had allocated.
        let keeps_ports = wants_node_ports(&new_spec.r#type);
        for port in &mut new_spec.ports {
            let previous = old_spec.ports.iter().find(|p| {
                (!p.name.is_empty() && p.name == port.name) || (p.port == port.port && p.protocol == port.protocol)
            });
            match previous {
                Some(previous) if keeps_ports && port.node_port == 0 => port.node_port = previous.node_port,
                Some(previous) if !keeps_ports && port.node_port == previous.node_port => port.node_port = 0,
                _ => {}
            }
        }
    }

    fn validate_update(&self, new: &Service, old: &Service) -> Vec<FieldError> {
        let (Some(new_spec), Some(old_spec)) = (new.spec.as_ref(), old.spec.as_ref()) else {
            return Vec::new();
        };
        let external = new_spec.r#type == "ExternalName" || old_spec.r#type == "ExternalName";
        if !external && new_spec.cluster_ip != old_spec.cluster_ip {
            return vec![FieldError::immutable("spec.clusterIP", &new_spec.cluster_ip)];
        }
        Vec::new()
    }

    fn reserves_on_create(&self) -> bool {
        true
    }

    fn reserve_on_create(&self, service: &mut Service) -> Result<Reservations, ApiError> {
        let snapshot = service.clone();
        let name = snapshot.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default();
        let spec = service.spec.get_or_insert_with(ServiceSpec::default);
        self.allocate(&name, spec, &Default::default())?;
        let (ips, ports) = Self::held(spec);
        let mut r = Reservations::default();
        self.reserve(&snapshot, &ips, &ports, &mut r);
        Ok(r)
    }

    fn reserve_on_update(&self, new: &mut Service, old: &Service) -> Result<Reservations, ApiError> {
        let before = Self::held(old.spec.as_ref().unwrap_or(&ServiceSpec::default()));
        let snapshot = new.clone();
        let name = snapshot.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default();
        let spec = new.spec.get_or_insert_with(ServiceSpec::default);
        self.allocate(&name, spec, &before)?;
        let after = Self::held(spec);
        let mut r = Reservations::default();
        let added = (&after.0 - &before.0, &after.1 - &before.1);
        let removed = (&before.0 - &after.0, &before.1 - &after.1);
        self.reserve(&snapshot, &added.0, &added.1, &mut r);
        self.release(&removed.0, &removed.1, &mut r);
        Ok(r)
    }

    fn release_on_delete(&self, service: &Service) -> Reservations {
        let (ips, ports) = Self::held(service.spec.as_ref().unwrap_or(&ServiceSpec::default()));
        let mut r = Reservations::default();
        self.release(&ips, &ports, &mut r);
        r
    }

    fn reservations_taken(&self, keys: &[String]) {
        for key in keys {
            self.mark(key, true);
        }
    }

    fn reservations_committed(&self, reservations: &Reservations) {
        for (key, _) in &reservations.reserve {
            self.mark(key, true);
        }
        for key in &reservations.release {
            self.mark(key, false);
        }
    }

    fn fields(&self, service: &Service) -> Vec<(&'static str, String)> {
        let spec = service.spec.clone().unwrap_or_default();
        vec![("spec.clusterIP", spec.cluster_ip), ("spec.type", spec.r#type)]
    }

    fn field_names(&self) -> &'static [&'static str] {
        &["spec.clusterIP", "spec.type"]
    }
}
