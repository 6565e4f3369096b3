//! Nodes: registered by their kubelet with status included, selectable by
//! spec.unschedulable.

use proto::core::v1::Node;

use crate::registry::{NameRule, Strategy};

pub struct NodeStrategy;

impl Strategy<Node> for NodeStrategy {
    fn name_rule(&self) -> NameRule {
        NameRule::Any
    }

    /// A kubelet registers its node with the status it observed; keep it.
    fn prepare_for_create(&self, _node: &mut Node) {}

    fn fields(&self, node: &Node) -> Vec<(&'static str, String)> {
        let unschedulable = node.spec.as_ref().is_some_and(|s| s.unschedulable);
        vec![("spec.unschedulable", unschedulable.to_string())]
    }

    fn field_names(&self) -> &'static [&'static str] {
        &["spec.unschedulable"]
    }
}
