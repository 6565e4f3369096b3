//! `label` and `annotate`: `key=value` sets, `key-` removes; a value already set
//! is replaced only with `--overwrite`.

use anyhow::Result;
use client::ListParams;
use proto::DynamicObject;
use serde_json::{Map, Value as Json};

use super::{DryRun, modify, targets};
use crate::cli::MetaArgs;
use crate::connection::Connection;
use crate::output::{self, Format};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Field {
    Labels,
    Annotations,
}

impl Field {
    fn key(self) -> &'static str {
        match self {
            Field::Labels => "labels",
            Field::Annotations => "annotations",
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Field::Labels => "labeled",
            Field::Annotations => "annotated",
        }
    }
}

/// One change: set `key` to a value, or remove it.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Set(String, String),
    Remove(String),
}

pub fn parse_changes(words: &[String], field: Field) -> Result<Vec<Change>> {
    let mut changes = Vec::new();
    for word in words {
        let change = if let Some((key, value)) = word.split_once('=') {
            if field == Field::Labels {
                let errors = proto::validation::is_valid_label_value(value);
                if !errors.is_empty() {
                    anyhow::bail!("invalid label value: \"{word}\": {}", errors.join("; "));
                }
            }
            Change::Set(key.to_string(), value.to_string())
        } else if let Some(key) = word.strip_suffix('-') {
            Change::Remove(key.to_string())
        } else {
            anyhow::bail!("invalid {} \"{word}\": use key=value to set or key- to remove", field.key());
        };
        let key = match &change {
            Change::Set(k, _) | Change::Remove(k) => k,
        };
        let errors = proto::validation::is_qualified_name(key);
        if !errors.is_empty() {
            anyhow::bail!("invalid {} key \"{key}\": {}", field.key(), errors.join("; "));
        }
        changes.push(change);
    }
    if changes.is_empty() {
        anyhow::bail!("at least one {} update is required (key=value or key-)", field.key());
    }
    Ok(changes)
}

/// Applies changes to a string map; false when nothing changed.
pub fn apply_changes(map: &mut Map<String, Json>, changes: &[Change], overwrite: bool) -> Result<bool> {
    let mut changed = false;
    for change in changes {
        match change {
            Change::Set(key, value) => match map.get(key).and_then(Json::as_str) {
                Some(old) if old == value => {}
                Some(old) if !overwrite => {
                    anyhow::bail!("'{key}' already has a value ({old}), and --overwrite is false");
                }
                _ => {
                    map.insert(key.clone(), Json::String(value.clone()));
                    changed = true;
                }
            },
            Change::Remove(key) => {
                if map.remove(key).is_some() {
                    changed = true;
                } else {
                    eprintln!("{key} not found.");
                }
            }
        }
    }
    Ok(changed)
}

pub async fn label_or_annotate(connection: &Connection, args: &MetaArgs, field: Field) -> Result<()> {
    let dry_run = DryRun::parse(&args.dry_run)?;
    let format = Format::parse(args.output.as_deref())?;
    let parsed = targets(&args.args, |w| w.contains('=') || w.ends_with('-'))?;
    let changes = parse_changes(&parsed.rest, field)?;
    let mut objects: Vec<(&'static proto::KindInfo, String, String)> =
        parsed.objects.iter().map(|(info, name)| (*info, connection.scoped(info), name.clone())).collect();
    if objects.is_empty() {
        let Some(info) = parsed.kind else { anyhow::bail!("give objects to change") };
        if args.selector.is_empty() && !args.all {
            anyhow::bail!("one or more resources must be specified as <resource> <name>, or with -l / --all");
        }
        let list =
            connection.client.list(info, &connection.list_namespace(info), &ListParams::labels(&args.selector)).await?;
        for bytes in list.items {
            let meta = DynamicObject::new(info, bytes).metadata();
            objects.push((info, meta.namespace, meta.name));
        }
    }
    for (info, namespace, name) in objects {
        let result = modify(connection, info, &namespace, &name, dry_run, |object| {
            if let Some(rv) = &args.resource_version
                && object.pointer("/metadata/resourceVersion").and_then(Json::as_str) != Some(rv.as_str())
            {
                anyhow::bail!(
                    "{} \"{name}\" is no longer at resourceVersion {rv}: it changed; read it again",
                    info.qualified_singular()
                );
            }
            let meta = object
                .get_mut("metadata")
                .and_then(Json::as_object_mut)
                .ok_or_else(|| anyhow::anyhow!("the object has no metadata"))?;
            let map = meta.entry(field.key()).or_insert_with(|| Json::Object(Map::new()));
            let Some(map) = map.as_object_mut() else { anyhow::bail!("metadata.{} is not a map", field.key()) };
            apply_changes(map, &changes, args.overwrite)
        })
        .await?;
        let shown = output::name_of(info, &name);
        match (&format, result) {
            (Format::Table, Some(_)) => println!("{shown} {}{}", field.verb(), dry_run.suffix()),
            (Format::Table, None) => println!("{shown} not {}", field.verb()),
            (Format::Name, _) => println!("{shown}"),
            (other, Some(object)) => print!("{}", output::document(&[object], other, false)),
            (other, None) => {
                let bytes = connection.client.get(info, &namespace, &name).await?;
                print!("{}", output::document(&[DynamicObject::new(info, bytes)], other, false));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn words(w: &[&str]) -> Vec<String> {
        w.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn changes_set_overwrite_and_remove() {
        let changes = parse_changes(&words(&["a=1", "b-"]), Field::Labels).unwrap();
        let mut map = json!({"a": "0", "b": "x"}).as_object().unwrap().clone();
        assert!(apply_changes(&mut map.clone(), &changes, false).is_err());
        assert!(apply_changes(&mut map, &changes, true).unwrap());
        assert_eq!(Json::Object(map.clone()), json!({"a": "1"}));
        assert!(!apply_changes(&mut map, &parse_changes(&words(&["a=1"]), Field::Labels).unwrap(), false).unwrap());
        assert!(parse_changes(&words(&["bad key=1"]), Field::Labels).is_err());
        assert!(parse_changes(&words(&["a=not a label"]), Field::Labels).is_err());
        assert!(parse_changes(&words(&["a=not a label"]), Field::Annotations).is_ok());
    }
}
