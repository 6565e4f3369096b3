//! The messages whose JSON form is not an object of their fields: timestamps, resource
//! quantities, int-or-string values and embedded raw objects, written as Kubernetes
//! writes them.

use chrono::{DateTime, SecondsFormat, Utc};
use prost_reflect::{DynamicMessage, MessageDescriptor, Value};
use serde_json::Value as Json;

use super::decode::describe;
use crate::quantity::Amount;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Special {
    /// RFC 3339 with seconds: "2024-01-02T15:04:05Z".
    Time,
    /// RFC 3339 with microseconds: "2024-01-02T15:04:05.000000Z".
    MicroTime,
    /// "500m", "1Gi"; a bare number in input.
    Quantity,
    /// 8080 or "http".
    IntOrString,
    /// Any embedded JSON value.
    RawExtension,
}

impl Special {
    pub(super) fn of(desc: &MessageDescriptor) -> Option<Special> {
        match desc.full_name() {
            "meta.v1.Time" => Some(Special::Time),
            "meta.v1.MicroTime" => Some(Special::MicroTime),
            "meta.v1.Quantity" => Some(Special::Quantity),
            "meta.v1.IntOrString" => Some(Special::IntOrString),
            "meta.v1.RawExtension" => Some(Special::RawExtension),
            _ => None,
        }
    }

    pub(super) fn decode(self, desc: &MessageDescriptor, value: &Json) -> Result<DynamicMessage, String> {
        let mut message = DynamicMessage::new(desc.clone());
        match self {
            Special::Time | Special::MicroTime => {
                let Json::String(text) = value else {
                    return Err(format!(
                        "expected an RFC 3339 time such as \"2024-01-02T15:04:05Z\", got {}",
                        describe(value)
                    ));
                };
                let time = DateTime::parse_from_rfc3339(text)
                    .map_err(|e| format!("\"{text}\" is not an RFC 3339 time such as \"2024-01-02T15:04:05Z\": {e}"))?;
                message.set_field_by_name("seconds", Value::I64(time.timestamp()));
                let nanos = i32::try_from(time.timestamp_subsec_nanos()).unwrap_or(0);
                message.set_field_by_name("nanos", Value::I32(nanos));
            }
            Special::Quantity => {
                let text = match value {
                    Json::String(s) => s.clone(),
                    Json::Number(n) => n.to_string(),
                    other => {
                        return Err(format!(
                            "expected a quantity such as \"500m\" or \"1Gi\", got {}",
                            describe(other)
                        ));
                    }
                };
                Amount::parse(&text).map_err(|e| e.to_string())?;
                message.set_field_by_name("string", Value::String(text));
            }
            Special::IntOrString => match value {
                Json::Number(n) => {
                    let int = n
                        .as_i64()
                        .and_then(|i| i32::try_from(i).ok())
                        .ok_or_else(|| format!("expected a 32-bit integer or a string, got number {n}"))?;
                    message.set_field_by_name("int_val", Value::I32(int));
                }
                Json::String(s) => message.set_field_by_name("str_val", Value::String(s.clone())),
                other => {
                    return Err(format!("expected an integer or a string, got {}", describe(other)));
                }
            },
            Special::RawExtension => {
                let raw = serde_json::to_vec(value).map_err(|e| e.to_string())?;
                message.set_field_by_name("raw", Value::Bytes(raw.into()));
            }
        }
        Ok(message)
    }

    pub(super) fn encode(self, message: &DynamicMessage) -> Json {
        match self {
            Special::Time | Special::MicroTime => {
                let seconds = field(message, "seconds").and_then(|v| v.as_i64()).unwrap_or(0);
                let nanos = field(message, "nanos").and_then(|v| v.as_i32()).unwrap_or(0);
                let nanos = u32::try_from(nanos).unwrap_or(0);
                let time = DateTime::<Utc>::from_timestamp(seconds, nanos).unwrap_or_default();
                let format = if self == Special::Time { SecondsFormat::Secs } else { SecondsFormat::Micros };
                Json::String(time.to_rfc3339_opts(format, true))
            }
            Special::Quantity => {
                Json::String(field(message, "string").and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default())
            }
            Special::IntOrString => {
                if message.has_field_by_name("str_val") {
                    Json::String(
                        field(message, "str_val").and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
                    )
                } else {
                    Json::from(field(message, "int_val").and_then(|v| v.as_i32()).unwrap_or(0))
                }
            }
            Special::RawExtension => {
                let raw = field(message, "raw").and_then(|v| v.as_bytes().cloned()).unwrap_or_default();
                if raw.is_empty() {
                    Json::Null
                } else {
                    serde_json::from_slice(&raw)
                        .unwrap_or_else(|_| Json::String(String::from_utf8_lossy(&raw).into_owned()))
                }
            }
        }
    }
}

fn field(message: &DynamicMessage, name: &str) -> Option<Value> {
    message.get_field_by_name(name).map(|v| v.into_owned())
}
