//! Namespaces: DNS-label names, an Active/Terminating phase, and deletion held by
//! spec.finalizers until the namespace controller has emptied the namespace.

use proto::core::v1::{Namespace, NamespaceSpec, NamespaceStatus};

use crate::registry::{NameRule, Strategy};

/// The finalizer that holds a namespace until everything in it is gone.
pub const KUBERNETES_FINALIZER: &str = "kubernetes";

pub struct NamespaceStrategy;

impl Strategy<Namespace> for NamespaceStrategy {
    fn name_rule(&self) -> NameRule {
        NameRule::Label
    }

    fn prepare_for_create(&self, ns: &mut Namespace) {
        ns.status = Some(NamespaceStatus { phase: "Active".to_string(), ..Default::default() });
        let spec = ns.spec.get_or_insert_with(NamespaceSpec::default);
        if !spec.finalizers.iter().any(|f| f == KUBERNETES_FINALIZER) {
            spec.finalizers.push(KUBERNETES_FINALIZER.to_string());
        }
    }

    fn fields(&self, ns: &Namespace) -> Vec<(&'static str, String)> {
        vec![("status.phase", ns.status.as_ref().map(|s| s.phase.clone()).unwrap_or_default())]
    }

    fn field_names(&self) -> &'static [&'static str] {
        &["status.phase"]
    }

    fn ready_for_removal(&self, ns: &Namespace) -> bool {
        ns.spec.as_ref().is_none_or(|s| s.finalizers.is_empty())
    }

    fn on_deletion_started(&self, ns: &mut Namespace) {
        ns.status.get_or_insert_with(NamespaceStatus::default).phase = "Terminating".to_string();
    }
}
