//! ConfigMaps and Secrets: key rules, Secret's stringData folded into data, and
//! immutable objects.

use proto::codec::FieldError;
use proto::core::v1::{ConfigMap, Secret};
use proto::validation;

use crate::registry::Strategy;

fn validate_keys<'a>(keys: impl Iterator<Item = &'a String>, path: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for key in keys {
        for problem in validation::is_config_map_key(key) {
            errors.push(FieldError::invalid(format!("{path}[{key}]"), key, &problem));
        }
    }
    errors
}

/// An object marked immutable keeps its data, and stays immutable.
fn validate_immutable(old_immutable: Option<bool>, new_immutable: Option<bool>, same_data: bool) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if old_immutable == Some(true) {
        if new_immutable != Some(true) {
            errors.push(FieldError::forbidden("immutable", "field is immutable when `immutable` is set"));
        }
        if !same_data {
            errors.push(FieldError::forbidden("data", "field is immutable when `immutable` is set"));
        }
    }
    errors
}

pub struct ConfigMapStrategy;

impl Strategy<ConfigMap> for ConfigMapStrategy {
    fn validate(&self, cm: &ConfigMap) -> Vec<FieldError> {
        let mut errors = validate_keys(cm.data.keys(), "data");
        errors.extend(validate_keys(cm.binary_data.keys(), "binaryData"));
        for key in cm.data.keys().filter(|k| cm.binary_data.contains_key(*k)) {
            errors.push(FieldError::invalid(format!("data[{key}]"), key, "duplicate of key present in binaryData"));
        }
        let size: usize = cm.data.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
            + cm.binary_data.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        if size > 1024 * 1024 {
            errors.push(FieldError::too_long("data", 1024 * 1024));
        }
        errors
    }

    fn validate_update(&self, new: &ConfigMap, old: &ConfigMap) -> Vec<FieldError> {
        let same = new.data == old.data && new.binary_data == old.binary_data;
        validate_immutable(old.immutable, new.immutable, same)
    }
}

pub struct SecretStrategy;

impl Strategy<Secret> for SecretStrategy {
    /// stringData is a write-only convenience: it lands in data and is not stored.
    fn default(&self, secret: &mut Secret) {
        for (key, value) in std::mem::take(&mut secret.string_data) {
            secret.data.insert(key, value.into_bytes().into());
        }
        if secret.r#type.is_empty() {
            secret.r#type = "Opaque".to_string();
        }
    }

    fn validate(&self, secret: &Secret) -> Vec<FieldError> {
        let mut errors = validate_keys(secret.data.keys(), "data");
        let size: usize = secret.data.iter().map(|(k, v)| k.len() + v.len()).sum();
        if size > 1024 * 1024 {
            errors.push(FieldError::too_long("data", 1024 * 1024));
        }
        let required = match secret.r#type.as_str() {
            "kubernetes.io/dockerconfigjson" => Some(".dockerconfigjson"),
            "kubernetes.io/dockercfg" => Some(".dockercfg"),
            "kubernetes.io/tls" => Some("tls.crt"),
            _ => None,
        };
        if let Some(key) = required.filter(|k| !secret.data.contains_key(*k)) {
            errors.push(FieldError::required(format!("data[{key}]"), ""));
        }
        errors
    }

    fn validate_update(&self, new: &Secret, old: &Secret) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if new.r#type != old.r#type {
            errors.push(FieldError::immutable("type", &new.r#type));
        }
        errors.extend(validate_immutable(old.immutable, new.immutable, new.data == old.data));
        errors
    }
}
