//! JSON values (from YAML or JSON text) into protobuf messages, strictly: every key
//! must be a field of the message, every value of the field's type. All problems are
//! collected, each with the path of the field it concerns.

use base64::Engine as _;
use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor, Value};
use serde_json::{Map, Value as Json};

use super::{FieldError, special};
use crate::codec::suggest;

/// Decodes `object` into a message of type `desc`, skipping the top-level keys in
/// `skip` (apiVersion and kind, which name the type rather than belong to it).
pub(super) fn decode_message(
    desc: &MessageDescriptor,
    object: &Map<String, Json>,
    skip: &[&str],
    path: &str,
    errors: &mut Vec<FieldError>,
) -> DynamicMessage {
    let mut message = DynamicMessage::new(desc.clone());
    for (key, value) in object {
        if skip.contains(&key.as_str()) {
            continue;
        }
        let field_path = join(path, key);
        let Some(field) = desc.get_field_by_json_name(key) else {
            let names = desc.fields().map(|f| f.json_name().to_string()).collect::<Vec<_>>();
            let message = match suggest::closest(key, names.iter().map(String::as_str)) {
                Some(near) => format!("unknown field (did you mean \"{near}\"?)"),
                None => "unknown field".to_string(),
            };
            errors.push(FieldError::new(field_path, message));
            continue;
        };
        if let Some(decoded) = decode_field(&field, value, &field_path, errors) {
            message.set_field(&field, decoded);
        }
    }
    message
}

fn decode_field(field: &FieldDescriptor, value: &Json, path: &str, errors: &mut Vec<FieldError>) -> Option<Value> {
    if value.is_null() {
        return None;
    }
    if field.is_map() {
        let Json::Object(entries) = value else {
            errors.push(FieldError::new(path, format!("expected an object, got {}", describe(value))));
            return None;
        };
        let entry = field.kind();
        let entry = entry.as_message()?;
        let value_kind = entry.map_entry_value_field().kind();
        let mut map = std::collections::HashMap::with_capacity(entries.len());
        for (key, item) in entries {
            let item_path = format!("{path}[{key}]");
            if item.is_null() {
                errors.push(FieldError::new(item_path, format!("expected {}, got null", expected(&value_kind))));
                continue;
            }
            if let Some(decoded) = decode_single(&value_kind, item, &item_path, errors) {
                map.insert(MapKey::String(key.clone()), decoded);
            }
        }
        return Some(Value::Map(map));
    }
    if field.is_list() {
        let Json::Array(items) = value else {
            errors.push(FieldError::new(path, format!("expected a list, got {}", describe(value))));
            return None;
        };
        let kind = field.kind();
        let mut list = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            let item_path = format!("{path}[{index}]");
            if item.is_null() {
                errors.push(FieldError::new(item_path, format!("expected {}, got null", expected(&kind))));
                continue;
            }
            if let Some(decoded) = decode_single(&kind, item, &item_path, errors) {
                list.push(decoded);
            }
        }
        return Some(Value::List(list));
    }
    decode_single(&field.kind(), value, path, errors)
}

fn decode_single(kind: &Kind, value: &Json, path: &str, errors: &mut Vec<FieldError>) -> Option<Value> {
    let result = match kind {
        Kind::Message(desc) => {
            if let Some(special) = special::Special::of(desc) {
                return match special.decode(desc, value) {
                    Ok(message) => Some(Value::Message(message)),
                    Err(message) => {
                        errors.push(FieldError::new(path, message));
                        None
                    }
                };
            }
            match value {
                Json::Object(object) => Ok(Value::Message(decode_message(desc, object, &[], path, errors))),
                other => Err(format!("expected an object, got {}", describe(other))),
            }
        }
        Kind::String => match value {
            Json::String(s) => Ok(Value::String(s.clone())),
            Json::Number(n) => Err(format!("expected a string, got number {n} (quote it: \"{n}\")")),
            Json::Bool(b) => Err(format!("expected a string, got {b} (quote it: \"{b}\")")),
            other => Err(format!("expected a string, got {}", describe(other))),
        },
        Kind::Bytes => match value {
            Json::String(s) => base64::engine::general_purpose::STANDARD
                .decode(s.as_bytes())
                .map(|bytes| Value::Bytes(bytes.into()))
                .map_err(|e| format!("expected base64-encoded data: {e}")),
            other => Err(format!("expected a base64-encoded string, got {}", describe(other))),
        },
        Kind::Bool => match value {
            Json::Bool(b) => Ok(Value::Bool(*b)),
            other => Err(format!("expected true or false, got {}", describe(other))),
        },
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => integer(value)
            .and_then(|i| i32::try_from(i).map_err(|_| format!("{i} is out of range for a 32-bit integer")))
            .map(Value::I32),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => integer(value)
            .and_then(|i| i64::try_from(i).map_err(|_| format!("{i} is out of range for a 64-bit integer")))
            .map(Value::I64),
        Kind::Uint32 | Kind::Fixed32 => integer(value)
            .and_then(|i| u32::try_from(i).map_err(|_| format!("{i} is out of range for an unsigned 32-bit integer")))
            .map(Value::U32),
        Kind::Uint64 | Kind::Fixed64 => integer(value)
            .and_then(|i| u64::try_from(i).map_err(|_| format!("{i} is out of range for an unsigned 64-bit integer")))
            .map(Value::U64),
        Kind::Float => number(value).map(|f| Value::F32(f as f32)),
        Kind::Double => number(value).map(Value::F64),
        Kind::Enum(desc) => match value {
            Json::String(s) => desc.get_value_by_name(s).map(|v| Value::EnumNumber(v.number())).ok_or_else(|| {
                let names: Vec<String> = desc.values().map(|v| v.name().to_string()).collect();
                format!("unsupported value \"{s}\": supported values: \"{}\"", names.join("\", \""))
            }),
            other => Err(format!("expected a string, got {}", describe(other))),
        },
    };
    match result {
        Ok(decoded) => Some(decoded),
        Err(message) => {
            errors.push(FieldError::new(path, message));
            None
        }
    }
}

fn integer(value: &Json) -> Result<i128, String> {
    match value {
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ok(i128::from(i))
            } else if let Some(u) = n.as_u64() {
                Ok(i128::from(u))
            } else {
                Err(format!("expected an integer, got {n}"))
            }
        }
        other => Err(format!("expected an integer, got {}", describe(other))),
    }
}

fn number(value: &Json) -> Result<f64, String> {
    match value {
        Json::Number(n) => n.as_f64().ok_or_else(|| format!("{n} is not a representable number")),
        other => Err(format!("expected a number, got {}", describe(other))),
    }
}

/// How a JSON value is named in error messages.
pub(super) fn describe(value: &Json) -> String {
    match value {
        Json::Null => "null".to_string(),
        Json::Bool(b) => b.to_string(),
        Json::Number(n) => format!("number {n}"),
        Json::String(s) => format!("string \"{s}\""),
        Json::Array(_) => "a list".to_string(),
        Json::Object(_) => "an object".to_string(),
    }
}

fn expected(kind: &Kind) -> &'static str {
    match kind {
        Kind::String => "a string",
        Kind::Bool => "true or false",
        Kind::Bytes => "a base64-encoded string",
        Kind::Message(_) => "an object",
        Kind::Float | Kind::Double => "a number",
        Kind::Enum(_) => "a string",
        _ => "an integer",
    }
}

pub(super) fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}
