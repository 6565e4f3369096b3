//! Kubernetes-form YAML and JSON for every kind.
//!
//! Decoding is strict, as Kubernetes' is: an unknown key is an error naming its path
//! and, where one is close, the field that was probably meant
//! (`spec.ports[0].nodeport: unknown field (did you mean "nodePort"?)`); a value of the
//! wrong type is an error naming what was expected. Every problem in a document is
//! reported, not just the first. The mapping is driven by the protobuf descriptors, so
//! every kind gets the same treatment.

pub mod conversion;
mod decode;
mod encode;
mod special;
pub mod suggest;

use std::sync::OnceLock;

use bytes::Bytes;
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};
use serde::Deserialize as _;
use serde_json::{Map, Value as Json};

pub use crate::field_error::FieldError;
use crate::meta::v1::{ObjectMeta, PartialObjectMetadata};
use crate::resource::{self, KindInfo, Resource};

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The text is not YAML or JSON.
    #[error("{0}")]
    Syntax(String),
    /// apiVersion or kind is missing or names nothing this API serves.
    #[error("{0}")]
    Type(String),
    /// The document names a kind but some of its fields are wrong.
    #[error("{}", lines(.0))]
    Fields(Vec<FieldError>),
}

fn lines(errors: &[FieldError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
}

/// The descriptors of every message of the API.
pub fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        // The descriptor set is generated at build time from our own .proto files;
        // failing to read it is a build defect, not a runtime condition.
        DescriptorPool::decode(crate::DESCRIPTOR_SET).expect("the built-in descriptor set decodes")
    })
}

fn descriptor(info: &KindInfo) -> MessageDescriptor {
    pool()
        .get_message_by_name(info.message)
        .unwrap_or_else(|| panic!("kind {} has no message {} in the descriptor set", info.kind, info.message))
}

/// An object of some kind, decoded from a manifest or received from the API.
#[derive(Debug, Clone, PartialEq)]
pub struct DynamicObject {
    pub info: &'static KindInfo,
    /// The protobuf encoding of the kind's message, as the API carries it.
    pub bytes: Bytes,
}

impl DynamicObject {
    pub fn new(info: &'static KindInfo, bytes: impl Into<Bytes>) -> Self {
        DynamicObject { info, bytes: bytes.into() }
    }

    pub fn metadata(&self) -> ObjectMeta {
        PartialObjectMetadata::decode(self.bytes.as_ref()).ok().and_then(|p| p.metadata).unwrap_or_default()
    }

    /// The typed message, if `T` is this object's kind.
    pub fn to_typed<T: Resource>(&self) -> Option<T> {
        if T::INFO != self.info {
            return None;
        }
        T::decode(self.bytes.as_ref()).ok()
    }

    /// The object as Kubernetes-form JSON, apiVersion and kind first.
    pub fn to_json(&self) -> Json {
        match DynamicMessage::decode(descriptor(self.info), self.bytes.as_ref()) {
            Ok(message) => with_type(self.info, encode::encode_message(&message)),
            // Bytes that do not decode came from a peer that does not speak this API;
            // say so in the output rather than fail a whole listing.
            Err(e) => serde_json::json!({
                "apiVersion": self.info.api_version(),
                "kind": self.info.kind,
                "error": format!("undecodable {} object: {e}", self.info.kind),
            }),
        }
    }
}

fn with_type(info: &KindInfo, body: Json) -> Json {
    let mut object = Map::new();
    object.insert("apiVersion".to_string(), Json::String(info.api_version()));
    object.insert("kind".to_string(), Json::String(info.kind.to_string()));
    if let Json::Object(fields) = body {
        object.extend(fields);
    }
    Json::Object(object)
}

/// Decodes one Kubernetes-form object whose apiVersion and kind say what it is.
/// Older apiVersions of served kinds are converted to the served version.
pub fn decode_object(value: &Json) -> Result<DynamicObject, DecodeError> {
    let Json::Object(object) = value else {
        return Err(DecodeError::Type(format!(
            "expected an object with apiVersion and kind, got {}",
            decode::describe(value)
        )));
    };
    let api_version = type_field(object, "apiVersion")?;
    let kind = type_field(object, "kind")?;
    let mut converted;
    let (info, object) = match resource::by_api_version_kind(api_version, kind) {
        Some(info) => (info, object),
        None => {
            converted = object.clone();
            match conversion::to_served(api_version, kind, &mut converted).map_err(DecodeError::Type)? {
                Some(info) => (info, &converted),
                None => return Err(unknown_type(api_version, kind)),
            }
        }
    };
    let message = decode_body(info, object)?;
    Ok(DynamicObject::new(info, message.encode_to_vec()))
}

fn type_field<'a>(object: &'a Map<String, Json>, key: &str) -> Result<&'a str, DecodeError> {
    match object.get(key) {
        Some(Json::String(s)) if !s.is_empty() => Ok(s),
        Some(other) if !other.is_null() => {
            Err(DecodeError::Type(format!("{key}: expected a string, got {}", decode::describe(other))))
        }
        _ => Err(DecodeError::Type(format!(
            "{key} is not set: every object needs apiVersion and kind (for example apiVersion: v1, kind: Pod)"
        ))),
    }
}

fn unknown_type(api_version: &str, kind: &str) -> DecodeError {
    let versions = conversion::known_versions(kind);
    if !versions.is_empty() {
        return DecodeError::Type(format!(
            "no kind \"{kind}\" is served in version \"{api_version}\": use apiVersion {}",
            versions.join(" or ")
        ));
    }
    let kinds = resource::KINDS.iter().map(|k| k.kind);
    match suggest::closest(kind, kinds) {
        Some(near) => DecodeError::Type(format!(
            "no kind \"{kind}\" is served in version \"{api_version}\" (did you mean \"{near}\"?)"
        )),
        None => DecodeError::Type(format!(
            "no kind \"{kind}\" is served in version \"{api_version}\"; `ctl api-resources` lists the kinds served"
        )),
    }
}

fn decode_body(info: &KindInfo, object: &Map<String, Json>) -> Result<DynamicMessage, DecodeError> {
    let mut errors = Vec::new();
    let message = decode::decode_message(&descriptor(info), object, &["apiVersion", "kind"], "", &mut errors);
    if errors.is_empty() { Ok(message) } else { Err(DecodeError::Fields(errors)) }
}

/// Decodes an object of kind `T`. apiVersion and kind may be left out; if given they
/// must name `T` (or an older version of it).
pub fn decode<T: Resource>(value: &Json) -> Result<T, DecodeError> {
    let has_type =
        value.get("apiVersion").is_some_and(|v| !v.is_null()) || value.get("kind").is_some_and(|v| !v.is_null());
    let bytes = if has_type {
        let object = decode_object(value)?;
        if object.info != T::INFO {
            return Err(DecodeError::Type(format!(
                "expected a {} ({}), got a {}",
                T::INFO.kind,
                T::INFO.api_version(),
                object.info.kind
            )));
        }
        object.bytes
    } else {
        let Json::Object(object) = value else {
            return Err(DecodeError::Type(format!("expected an object, got {}", decode::describe(value))));
        };
        Bytes::from(decode_body(T::INFO, object)?.encode_to_vec())
    };
    T::decode(bytes.as_ref()).map_err(|e| DecodeError::Syntax(format!("re-decoding {}: {e}", T::INFO.kind)))
}

/// The object as Kubernetes-form JSON, apiVersion and kind first.
pub fn encode<T: Resource>(object: &T) -> Json {
    DynamicObject::new(T::INFO, object.encode_to_vec()).to_json()
}

/// Parses YAML (one or more `---`-separated documents) or JSON text into JSON values.
/// Empty documents are skipped; a `kind: List` is expanded into its items.
pub fn parse_documents(text: &str) -> Result<Vec<Json>, DecodeError> {
    let mut values = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value =
            Json::deserialize(document).map_err(|e| DecodeError::Syntax(format!("document {}: {e}", index + 1)))?;
        push_expanding_lists(value, &mut values);
    }
    Ok(values)
}

fn push_expanding_lists(value: Json, out: &mut Vec<Json>) {
    match value {
        Json::Null => {}
        Json::Object(mut object) if object.get("kind").and_then(Json::as_str) == Some("List") => {
            if let Some(Json::Array(items)) = object.remove("items") {
                for item in items {
                    push_expanding_lists(item, out);
                }
            }
        }
        other => out.push(other),
    }
}

/// YAML as kubectl prints it: keys sorted at every level.
pub fn to_yaml(value: &Json) -> String {
    serde_yaml::to_string(&sorted(value)).unwrap_or_default()
}

/// Indented JSON as kubectl prints it: keys in the API's field order.
pub fn to_json_pretty(value: &Json) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

fn sorted(value: &Json) -> Json {
    match value {
        Json::Object(object) => {
            let mut keys: Vec<&String> = object.keys().collect();
            keys.sort();
            Json::Object(keys.into_iter().map(|k| (k.clone(), sorted(&object[k]))).collect())
        }
        Json::Array(items) => Json::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}
