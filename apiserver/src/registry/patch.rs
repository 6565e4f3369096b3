//! Patches applied to an object's JSON form: RFC 7386 JSON merge patch and RFC 6902
//! JSON patch.

use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Merge,
    Json,
}

impl PatchType {
    pub fn parse(s: &str) -> Result<PatchType, String> {
        match s {
            "merge" | "application/merge-patch+json" | "" => Ok(PatchType::Merge),
            "json" | "application/json-patch+json" => Ok(PatchType::Json),
            "strategic" | "application/strategic-merge-patch+json" => {
                Err("strategic merge patches are not supported; use --type merge or --type json".to_string())
            }
            other => Err(format!("unknown patch type \"{other}\": use \"merge\" or \"json\"")),
        }
    }
}

pub fn apply(kind: PatchType, target: Value, patch: &[u8]) -> Result<Value, String> {
    let patch: Value = serde_json::from_slice(patch).map_err(|e| format!("the patch is not valid JSON: {e}"))?;
    match kind {
        PatchType::Merge => {
            if !patch.is_object() {
                return Err("a merge patch must be a JSON object".to_string());
            }
            Ok(merge(target, &patch))
        }
        PatchType::Json => json_patch(target, &patch),
    }
}

/// RFC 7386: objects merge key by key, null removes a key, anything else replaces.
pub fn merge(target: Value, patch: &Value) -> Value {
    let Value::Object(patch) = patch else {
        return patch.clone();
    };
    let mut target = match target {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            let current = target.remove(key).unwrap_or(Value::Null);
            target.insert(key.clone(), merge(current, value));
        }
    }
    Value::Object(target)
}

fn json_patch(mut target: Value, patch: &Value) -> Result<Value, String> {
    let Value::Array(operations) = patch else {
        return Err("a JSON patch must be a list of operations".to_string());
    };
    for (i, operation) in operations.iter().enumerate() {
        apply_operation(&mut target, operation).map_err(|e| format!("operation {i}: {e}"))?;
    }
    Ok(target)
}

fn apply_operation(target: &mut Value, operation: &Value) -> Result<(), String> {
    let field = |name: &str| operation.get(name).and_then(Value::as_str);
    let op = field("op").ok_or("missing \"op\"")?;
    let path = field("path").ok_or("missing \"path\"")?;
    let value = || operation.get("value").cloned().ok_or_else(|| format!("\"{op}\" needs a \"value\""));
    match op {
        "add" => add(target, path, value()?),
        "remove" => remove(target, path).map(drop),
        "replace" => {
            remove(target, path)?;
            add(target, path, value()?)
        }
        "move" => {
            let from = field("from").ok_or("\"move\" needs a \"from\"")?;
            let moved = remove(target, from)?;
            add(target, path, moved)
        }
        "copy" => {
            let from = field("from").ok_or("\"copy\" needs a \"from\"")?;
            let copied = resolve(target, from)?.clone();
            add(target, path, copied)
        }
        "test" => {
            if *resolve(target, path)? == value()? {
                Ok(())
            } else {
                Err(format!("test failed: {path} does not hold the given value"))
            }
        }
        other => Err(format!("unknown operation \"{other}\"")),
    }
}

fn tokens(pointer: &str) -> Result<Vec<String>, String> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let rest = pointer
        .strip_prefix('/')
        .ok_or_else(|| format!("\"{pointer}\" is not a JSON pointer (it must start with /)"))?;
    Ok(rest.split('/').map(|t| t.replace("~1", "/").replace("~0", "~")).collect())
}

fn resolve<'a>(target: &'a Value, pointer: &str) -> Result<&'a Value, String> {
    let mut current = target;
    for token in tokens(pointer)? {
        current = match current {
            Value::Object(map) => map.get(&token),
            Value::Array(items) => token.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        }
        .ok_or_else(|| format!("{pointer} does not exist"))?;
    }
    Ok(current)
}

fn parent<'a>(target: &'a mut Value, pointer: &str) -> Result<(&'a mut Value, String), String> {
    let mut tokens = tokens(pointer)?;
    let last = tokens.pop().ok_or("the whole document cannot be the target")?;
    let mut current = target;
    for token in tokens {
        current = match current {
            Value::Object(map) => map.get_mut(&token),
            Value::Array(items) => token.parse::<usize>().ok().and_then(move |i| items.get_mut(i)),
            _ => None,
        }
        .ok_or_else(|| format!("{pointer}: the parent does not exist"))?;
    }
    Ok((current, last))
}

fn add(target: &mut Value, pointer: &str, value: Value) -> Result<(), String> {
    let (parent, last) = parent(target, pointer)?;
    match parent {
        Value::Object(map) => {
            map.insert(last, value);
            Ok(())
        }
        Value::Array(items) => {
            let index = if last == "-" {
                items.len()
            } else {
                last.parse::<usize>()
                    .ok()
                    .filter(|i| *i <= items.len())
                    .ok_or_else(|| format!("{pointer}: bad index"))?
            };
            items.insert(index, value);
            Ok(())
        }
        _ => Err(format!("{pointer}: the parent is neither an object nor a list")),
    }
}

fn remove(target: &mut Value, pointer: &str) -> Result<Value, String> {
    let (parent, last) = parent(target, pointer)?;
    match parent {
        Value::Object(map) => map.remove(&last).ok_or_else(|| format!("{pointer} does not exist")),
        Value::Array(items) => {
            let index = last
                .parse::<usize>()
                .ok()
                .filter(|i| *i < items.len())
                .ok_or_else(|| format!("{pointer}: bad index"))?;
            Ok(items.remove(index))
        }
        _ => Err(format!("{pointer} does not exist")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc7386() {
        let target = json!({"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]});
        let patch = json!({"a": "z", "c": {"f": null}, "l": [3]});
        assert_eq!(merge(target, &patch), json!({"a": "z", "c": {"d": "e"}, "l": [3]}));
    }

    #[test]
    fn json_patch_operations() {
        let target = json!({"spec": {"replicas": 1, "list": ["a", "c"]}, "x/y": 1});
        let patch = br#"[
            {"op": "replace", "path": "/spec/replicas", "value": 3},
            {"op": "add", "path": "/spec/list/1", "value": "b"},
            {"op": "add", "path": "/spec/list/-", "value": "d"},
            {"op": "remove", "path": "/x~1y"},
            {"op": "copy", "from": "/spec/replicas", "path": "/spec/copy"},
            {"op": "test", "path": "/spec/copy", "value": 3}
        ]"#;
        let patched = apply(PatchType::Json, target, patch).unwrap();
        assert_eq!(patched, json!({"spec": {"replicas": 3, "list": ["a", "b", "c", "d"], "copy": 3}}));
    }

    #[test]
    fn json_patch_errors_name_the_operation() {
        let err = apply(PatchType::Json, json!({}), br#"[{"op": "remove", "path": "/nope"}]"#).unwrap_err();
        assert!(err.contains("operation 0") && err.contains("/nope"), "{err}");
        assert!(apply(PatchType::Merge, json!({}), b"[1]").is_err());
        assert!(PatchType::parse("strategic").is_err());
    }
}
