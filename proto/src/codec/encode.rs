//! Protobuf messages into JSON values in Kubernetes' form: fields in declaration
//! order under their JSON names, unset fields left out, map keys sorted.

use base64::Engine as _;
use prost_reflect::{DynamicMessage, Kind, MapKey, ReflectMessage as _, Value};
use serde_json::{Map, Value as Json};

use super::special::Special;

pub(super) fn encode_message(message: &DynamicMessage) -> Json {
    let desc = message.descriptor();
    if let Some(special) = Special::of(&desc) {
        return special.encode(message);
    }
    let mut object = Map::new();
    for field in desc.fields() {
        if message.has_field(&field) {
            let value = message.get_field(&field);
            object.insert(field.json_name().to_string(), encode_value(&field.kind(), &value));
        }
    }
    Json::Object(object)
}

fn encode_value(kind: &Kind, value: &Value) -> Json {
    match value {
        Value::Bool(b) => Json::Bool(*b),
        Value::I32(i) => Json::from(*i),
        Value::I64(i) => Json::from(*i),
        Value::U32(u) => Json::from(*u),
        Value::U64(u) => Json::from(*u),
        Value::F32(f) => serde_json::Number::from_f64(f64::from(*f)).map_or(Json::Null, Json::Number),
        Value::F64(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        Value::String(s) => Json::String(s.clone()),
        Value::Bytes(b) => Json::String(base64::engine::general_purpose::STANDARD.encode(b)),
        Value::EnumNumber(n) => match kind.as_enum().and_then(|e| e.get_value(*n)) {
            Some(v) => Json::String(v.name().to_string()),
            None => Json::from(*n),
        },
        Value::Message(m) => encode_message(m),
        Value::List(items) => Json::Array(items.iter().map(|item| encode_value(kind, item)).collect()),
        Value::Map(entries) => {
            let value_kind =
                kind.as_message().map(|entry| entry.map_entry_value_field().kind()).unwrap_or(Kind::String);
            let mut sorted: Vec<(&MapKey, &Value)> = entries.iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(b.0));
            let mut object = Map::new();
            for (key, item) in sorted {
                object.insert(map_key(key), encode_value(&value_kind, item));
            }
            Json::Object(object)
        }
    }
}

fn map_key(key: &MapKey) -> String {
    match key {
        MapKey::String(s) => s.clone(),
        MapKey::Bool(b) => b.to_string(),
        MapKey::I32(i) => i.to_string(),
        MapKey::I64(i) => i.to_string(),
        MapKey::U32(u) => u.to_string(),
        MapKey::U64(u) => u.to_string(),
    }
}
