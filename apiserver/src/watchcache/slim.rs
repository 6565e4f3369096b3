//! The selector attributes of an encoded object (namespace, name, labels), read
//! without decoding the object: the cache indexes every event, and most kinds need
//! nothing else from it.
//!
//! Every kind's message holds its `ObjectMeta` in field 1 (as `PartialObjectMetadata`
//! does), and protobuf decoding skips the fields a message does not declare, so these
//! two messages read exactly those three fields of any kind. The tags are
//! `meta.v1.ObjectMeta`'s; a test checks them against it.

use prost::Message;

use super::filter::Attrs;

#[derive(Clone, PartialEq, Message)]
struct SlimObject {
    #[prost(message, optional, tag = "1")]
    metadata: Option<SlimMeta>,
}

#[derive(Clone, PartialEq, Message)]
struct SlimMeta {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "3")]
    namespace: String,
    #[prost(btree_map = "string, string", tag = "11")]
    labels: std::collections::BTreeMap<String, String>,
}

/// The attributes of an encoded object of any kind, with no kind-specific fields.
pub fn attrs(value: &[u8]) -> Result<Attrs, prost::DecodeError> {
    let meta = SlimObject::decode(value)?.metadata.unwrap_or_default();
    Ok(Attrs { namespace: meta.namespace, name: meta.name, labels: meta.labels, fields: Vec::new() })
}

#[cfg(test)]
mod tests {
    use proto::core::v1::ConfigMap;
    use proto::meta::v1::{ObjectMeta, OwnerReference};

    use super::*;
    use crate::watchcache::with_revision;

    #[test]
    fn reads_name_namespace_and_labels_of_a_full_object() {
        let object = ConfigMap {
            metadata: Some(ObjectMeta {
                name: "web".to_string(),
                generate_name: "w-".to_string(),
                namespace: "prod".to_string(),
                uid: "u".to_string(),
                labels: [("app".to_string(), "web".to_string()), ("tier".to_string(), "front".to_string())].into(),
                annotations: [("note".to_string(), "x".to_string())].into(),
                owner_references: vec![OwnerReference { name: "owner".to_string(), ..Default::default() }],
                finalizers: vec!["f".to_string()],
                ..Default::default()
            }),
            data: [("name".to_string(), "not-the-name".to_string())].into(),
            ..Default::default()
        };
        let encoded = bytes::Bytes::from(object.encode_to_vec());
        // What the cache indexes: the stored value with a resourceVersion appended.
        let attrs = attrs(&with_revision(&encoded, 42)).expect("decodes");
        let meta = object.metadata.expect("set above");
        assert_eq!(
            attrs,
            Attrs { namespace: meta.namespace, name: meta.name, labels: meta.labels, fields: Vec::new() }
        );
    }

    #[test]
    fn an_object_without_metadata_has_empty_attributes() {
        assert_eq!(attrs(&ConfigMap::default().encode_to_vec()).expect("decodes"), Attrs::default());
    }
}
