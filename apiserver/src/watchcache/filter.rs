//! What one client watch or cached list asks for: a namespace, a label selector and a
//! field selector, checked against the attributes the cache extracted once per object.

use std::collections::BTreeMap;

use proto::fields::FieldSelector;
use proto::labels::Selector;

/// The attributes of an object that selectors look at.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attrs {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Values of the kind's selectable fields besides metadata.name and
    /// metadata.namespace ("spec.nodeName", "status.phase", ...).
    pub fields: Vec<(&'static str, String)>,
}

impl Attrs {
    pub fn field(&self, name: &str) -> Option<String> {
        match name {
            "metadata.name" => Some(self.name.clone()),
            "metadata.namespace" => Some(self.namespace.clone()),
            _ => self.fields.iter().find(|(f, _)| *f == name).map(|(_, v)| v.clone()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Filter {
    /// None: every namespace.
    pub namespace: Option<String>,
    pub labels: Selector,
    pub fields: FieldSelector,
}

impl Filter {
    pub fn everything() -> Self {
        Filter { namespace: None, labels: Selector::everything(), fields: FieldSelector::everything() }
    }

    pub fn matches(&self, attrs: &Attrs) -> bool {
        if let Some(ns) = &self.namespace
            && *ns != attrs.namespace
        {
            return false;
        }
        self.labels.matches(&attrs.labels) && self.fields.matches(|f| attrs.field(f))
    }
}
