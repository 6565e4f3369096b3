//! The kinds the API serves: names, groups, scopes, and the `Resource` trait that ties
//! each generated message to them.

use crate::meta::v1::ObjectMeta;

/// What the API knows about one kind.
#[derive(Debug, PartialEq, Eq)]
pub struct KindInfo {
    /// API group; "" for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// Lower-case plural, the name in API paths and `resource` fields ("pods").
    pub plural: &'static str,
    pub singular: &'static str,
    pub short_names: &'static [&'static str],
    pub namespaced: bool,
    /// Full protobuf name of the kind's message ("core.v1.Pod").
    pub message: &'static str,
    /// Whether the kind has a status subresource (UpdateStatus).
    pub has_status: bool,
    /// kubectl categories ("all").
    pub categories: &'static [&'static str],
}

impl KindInfo {
    /// "v1" for the core group, "apps/v1" otherwise.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.to_string() } else { format!("{}/{}", self.group, self.version) }
    }

    /// "pods" for the core group, "deployments.apps" otherwise: unambiguous everywhere.
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() { self.plural.to_string() } else { format!("{}.{}", self.plural, self.group) }
    }

    /// The name `ctl` prints before an object's name ("deployment.apps/web").
    pub fn qualified_singular(&self) -> String {
        if self.group.is_empty() { self.singular.to_string() } else { format!("{}.{}", self.singular, self.group) }
    }
}

/// Every kind the API serves, in the order `ctl api-resources` lists them.
pub static KINDS: &[&KindInfo] = &[
    &kinds::NAMESPACE,
    &kinds::POD,
    &kinds::NODE,
    &kinds::SERVICE,
    &kinds::ENDPOINTS,
    &kinds::CONFIG_MAP,
    &kinds::SECRET,
    &kinds::EVENT,
    &kinds::REPLICATION_CONTROLLER,
    &kinds::PERSISTENT_VOLUME,
    &kinds::PERSISTENT_VOLUME_CLAIM,
    &kinds::SERVICE_ACCOUNT,
    &kinds::DEPLOYMENT,
    &kinds::REPLICA_SET,
    &kinds::STATEFUL_SET,
    &kinds::DAEMON_SET,
    &kinds::CONTROLLER_REVISION,
    &kinds::JOB,
    &kinds::CRON_JOB,
    &kinds::LEASE,
];

/// One constant per kind, named after it (`kinds::POD`, `kinds::DEPLOYMENT`).
pub mod kinds {
    use super::KindInfo;

    pub const NAMESPACE: KindInfo = KindInfo {
        group: "",
        version: "v1",
        kind: "Namespace",
        plural: "namespaces",
        singular: "namespace",
        short_names: &["ns"],
        namespaced: false,
        message: "core.v1.Namespace",
        has_status: true,
        categories: &[],
    };

    pub const POD: KindInfo = KindInfo {
        group: "",
        version: "v1",
        kind: "Pod",
        plural: "pods",
        singular: "pod",
        short_names: &["po"],
        namespaced: true,
        message: "core.v1.Pod",
        has_status: true,
        categories: &["all"],
    };

    pub const NODE: KindInfo = KindInfo {
        group: "",
        version: "v1",
        kind: "Node",
        plural: "nodes",
        singular: "node",
        short_names: &["no"],
        namespaced: false,
        message: "core.v1.Node",
        has_status: true,
        categories: &[],
    };

    pub const SERVICE: KindInfo = KindInfo {
        group: "",
        version: "v1",
        kind: "Service",
        plural: "services",
        singular: "service",
        short_names: &["svc"],
        namespaced: true,
        message: "core.v1.Service",
        has_status: true,
        categories: &["all"],
    };

    pub const ENDPOINTS: KindInfo = KindInfo {
        group: "",
        version: "v1",
        kind: "Endpoints",
        plural: "endpoints",
        singular: "endpoints",
        short_names: &["ep"],
        namespaced: true,
        message: "core.v1.Endpoints",
        has_status: false,
        categories: &[],
    };

    pub const CONFIG_MAP: KindInfo = KindInfo {
        group: "",
        version: "v1",
        kind: "ConfigMap",
        plural: "configmaps",
        singular: "configmap",
        short_names: &["cm"],
        namespaced: true,
        message: "core.v1.ConfigMap",
        has_status: false,
        categories: &[],
    };

    pub const SECRET: KindInfo = KindInfo {
        group: "",
        version: "v1",
        kind: "Secret",
        plural: "secrets",
        singular: "secret",
        short_names: &[],
        namespaced: true,
        message: "core.v1.Secret",
        has_status: false,
        categories: &[],
    };

    pub const EVENT: KindInfo = KindInfo {
        group: "",
        version: "v1",
        kind: "Event",
        plural: "events",
        singular: "event",
        short_names: &["ev"],
        namespaced: true,
        message: "core.v1.Event",
        has_status: false,
        categories: &[],
    };

    pub const REPLICATION_CONTROLLER: KindInfo = KindInfo {
        group: "",
        version: "v1",
        kind: "ReplicationController",
        plural: "replicationcontrollers",
        singular: "replicationcontroller",
        short_names: &["rc"],
        namespaced: true,
        message: "core.v1.ReplicationController",
        has_status: true,
        categories: &["all"],
    };

    pub const PERSISTENT_VOLUME: KindInfo = KindInfo {
        group: "",
        version: "v1",
        kind: "PersistentVolume",
        plural: "persistentvolumes",
        singular: "persistentvolume",
        short_names: &["pv"],
        namespaced: false,
        message: "core.v1.PersistentVolume",
        has_status: true,
        categories: &[],
    };

    pub const PERSISTENT_VOLUME_CLAIM: KindInfo = KindInfo {
        group: "",
        version: "v1",
        kind: "PersistentVolumeClaim",
        plural: "persistentvolumeclaims",
        singular: "persistentvolumeclaim",
        short_names: &["pvc"],
        namespaced: true,
        message: "core.v1.PersistentVolumeClaim",
        has_status: true,
        categories: &[],
    };

    pub const SERVICE_ACCOUNT: KindInfo = KindInfo {
        group: "",
        version: "v1",
        kind: "ServiceAccount",
        plural: "serviceaccounts",
        singular: "serviceaccount",
        short_names: &["sa"],
        namespaced: true,
        message: "core.v1.ServiceAccount",
        has_status: false,
        categories: &[],
    };

    pub const DEPLOYMENT: KindInfo = KindInfo {
        group: "apps",
        version: "v1",
        kind: "Deployment",
        plural: "deployments",
        singular: "deployment",
        short_names: &["deploy"],
        namespaced: true,
        message: "apps.v1.Deployment",
        has_status: true,
        categories: &["all"],
    };

    pub const REPLICA_SET: KindInfo = KindInfo {
        group: "apps",
        version: "v1",
        kind: "ReplicaSet",
        plural: "replicasets",
        singular: "replicaset",
        short_names: &["rs"],
        namespaced: true,
        message: "apps.v1.ReplicaSet",
        has_status: true,
        categories: &["all"],
    };

    pub const STATEFUL_SET: KindInfo = KindInfo {
        group: "apps",
        version: "v1",
        kind: "StatefulSet",
        plural: "statefulsets",
        singular: "statefulset",
        short_names: &["sts"],
        namespaced: true,
        message: "apps.v1.StatefulSet",
        has_status: true,
        categories: &["all"],
    };

    pub const DAEMON_SET: KindInfo = KindInfo {
        group: "apps",
        version: "v1",
        kind: "DaemonSet",
        plural: "daemonsets",
        singular: "daemonset",
        short_names: &["ds"],
        namespaced: true,
        message: "apps.v1.DaemonSet",
        has_status: true,
        categories: &["all"],
    };

    pub const CONTROLLER_REVISION: KindInfo = KindInfo {
        group: "apps",
        version: "v1",
        kind: "ControllerRevision",
        plural: "controllerrevisions",
        singular: "controllerrevision",
        short_names: &[],
        namespaced: true,
        message: "apps.v1.ControllerRevision",
        has_status: false,
        categories: &[],
    };

    pub const JOB: KindInfo = KindInfo {
        group: "batch",
        version: "v1",
        kind: "Job",
        plural: "jobs",
        singular: "job",
        short_names: &[],
        namespaced: true,
        message: "batch.v1.Job",
        has_status: true,
        categories: &["all"],
    };

    pub const CRON_JOB: KindInfo = KindInfo {
        group: "batch",
        version: "v1",
        kind: "CronJob",
        plural: "cronjobs",
        singular: "cronjob",
        short_names: &["cj"],
        namespaced: true,
        message: "batch.v1.CronJob",
        has_status: true,
        categories: &["all"],
    };

    pub const LEASE: KindInfo = KindInfo {
        group: "coordination.k8s.io",
        version: "v1",
        kind: "Lease",
        plural: "leases",
        singular: "lease",
        short_names: &[],
        namespaced: true,
        message: "coordination.v1.Lease",
        has_status: false,
        categories: &[],
    };
}

/// Finds a kind by apiVersion and kind, as written in a manifest. Only the served
/// version is known here; older apiVersions are mapped by `codec::conversion` first.
pub fn by_api_version_kind(api_version: &str, kind: &str) -> Option<&'static KindInfo> {
    KINDS.iter().copied().find(|k| k.kind == kind && k.api_version() == api_version)
}

/// Finds a kind by any name `ctl` accepts: plural, singular, short name or kind, any
/// case, optionally qualified by its group ("deployments.apps", "deploy.apps").
pub fn by_name(name: &str) -> Option<&'static KindInfo> {
    let lower = name.to_ascii_lowercase();
    let (base, group) = match lower.split_once('.') {
        Some((base, group)) => (base.to_string(), Some(group.to_string())),
        None => (lower, None),
    };
    KINDS.iter().copied().find(|k| {
        let name_matches = k.plural == base
            || k.singular == base
            || k.kind.eq_ignore_ascii_case(&base)
            || k.short_names.contains(&base.as_str());
        let group_matches = match &group {
            None => true,
            Some(g) => g == k.group || (k.group.is_empty() && g == "core"),
        };
        name_matches && group_matches
    })
}

/// A generated message that is one of the API's kinds.
pub trait Resource: prost::Message + Default + Clone + PartialEq + Send + Sync + 'static {
    const INFO: &'static KindInfo;

    fn metadata(&self) -> &ObjectMeta;
    fn metadata_mut(&mut self) -> &mut ObjectMeta;
}

macro_rules! impl_resource {
    ($($ty:path => $info:ident,)*) => {
        $(
            impl Resource for $ty {
                const INFO: &'static KindInfo = &kinds::$info;

                fn metadata(&self) -> &ObjectMeta {
                    static EMPTY: std::sync::OnceLock<ObjectMeta> = std::sync::OnceLock::new();
                    self.metadata.as_ref().unwrap_or_else(|| EMPTY.get_or_init(ObjectMeta::default))
                }

                fn metadata_mut(&mut self) -> &mut ObjectMeta {
                    self.metadata.get_or_insert_with(ObjectMeta::default)
                }
            }
        )*
    };
}

impl_resource! {
    crate::core::v1::Namespace => NAMESPACE,
    crate::core::v1::Pod => POD,
    crate::core::v1::Node => NODE,
    crate::core::v1::Service => SERVICE,
    crate::core::v1::Endpoints => ENDPOINTS,
    crate::core::v1::ConfigMap => CONFIG_MAP,
    crate::core::v1::Secret => SECRET,
    crate::core::v1::Event => EVENT,
    crate::core::v1::ReplicationController => REPLICATION_CONTROLLER,
    crate::core::v1::PersistentVolume => PERSISTENT_VOLUME,
    crate::core::v1::PersistentVolumeClaim => PERSISTENT_VOLUME_CLAIM,
    crate::core::v1::ServiceAccount => SERVICE_ACCOUNT,
    crate::apps::v1::Deployment => DEPLOYMENT,
    crate::apps::v1::ReplicaSet => REPLICA_SET,
    crate::apps::v1::StatefulSet => STATEFUL_SET,
    crate::apps::v1::DaemonSet => DAEMON_SET,
    crate::apps::v1::ControllerRevision => CONTROLLER_REVISION,
    crate::batch::v1::Job => JOB,
    crate::batch::v1::CronJob => CRON_JOB,
    crate::coordination::v1::Lease => LEASE,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_to_kinds() {
        assert_eq!(by_name("po").map(|k| k.kind), Some("Pod"));
        assert_eq!(by_name("Deployments.apps").map(|k| k.kind), Some("Deployment"));
        assert_eq!(by_name("deploy").map(|k| k.kind), Some("Deployment"));
        assert_eq!(by_name("svc").map(|k| k.kind), Some("Service"));
        assert_eq!(by_name("pods.core").map(|k| k.kind), Some("Pod"));
        assert_eq!(by_name("leases.coordination.k8s.io").map(|k| k.kind), Some("Lease"));
        assert_eq!(by_name("deployments.batch"), None);
        assert_eq!(by_name("nosuch"), None);
    }

    #[test]
    fn names_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for k in KINDS {
            for name in [k.plural, k.singular].iter().chain(k.short_names) {
                assert!(seen.insert(*name) || k.plural == k.singular, "{name} names two kinds");
            }
        }
    }

    #[test]
    fn api_versions() {
        assert_eq!(by_api_version_kind("apps/v1", "Deployment"), Some(&kinds::DEPLOYMENT));
        assert_eq!(by_api_version_kind("v1", "Pod"), Some(&kinds::POD));
        assert_eq!(by_api_version_kind("extensions/v1beta1", "Deployment"), None);
    }
}
