//! `wait --for=condition=X[=V] | --for=delete | --for=jsonpath={PATH}=V`: polls each
//! object until the condition holds or the timeout passes.

use std::time::Duration;

use anyhow::Result;
use client::ListParams;
use proto::{DynamicObject, KindInfo, Reason};
use serde_json::Value as Json;
use tokio::time::Instant;

use super::{parse_duration, server_error, targets};
use crate::cli::WaitArgs;
use crate::connection::Connection;
use crate::output::{Template, name_of};

/// How often an object is re-read while waiting.
const POLL: Duration = Duration::from_millis(200);

enum Condition {
    Delete,
    /// A status condition's type and the status it must have.
    Status(String, String),
    /// A JSONPath expression and the value it must print.
    JsonPath(Template, String),
}

fn parse_condition(text: &str) -> Result<Condition> {
    if text == "delete" {
        return Ok(Condition::Delete);
    }
    if let Some(rest) = text.strip_prefix("condition=") {
        let (name, value) = rest.split_once('=').unwrap_or((rest, "True"));
        if name.is_empty() {
            anyhow::bail!("--for=condition= needs a condition name, e.g. --for=condition=Available");
        }
        return Ok(Condition::Status(name.to_string(), value.to_string()));
    }
    if let Some(rest) = text.strip_prefix("jsonpath=") {
        // The shell may leave the quotes kubectl's docs put around the template.
        let rest = rest.replace('\'', "");
        let rest = rest.as_str();
        let split =
            rest.rfind("}=").map(|i| i + 1).or_else(|| (!rest.contains('{')).then(|| rest.rfind('=')).flatten());
        let Some(split) = split else {
            anyhow::bail!("--for=jsonpath needs a value: --for=jsonpath='{{.status.phase}}'=Running");
        };
        let template = Template::parse(&rest[..split]).map_err(|e| anyhow::anyhow!("--for=jsonpath: {e}"))?;
        return Ok(Condition::JsonPath(template, rest[split + 1..].to_string()));
    }
    anyhow::bail!(
        "unrecognized condition \"{text}\": use --for=delete, --for=condition=NAME[=VALUE] or --for=jsonpath='{{PATH}}'=VALUE"
    )
}

fn holds(condition: &Condition, object: &Json) -> bool {
    match condition {
        Condition::Delete => false,
        Condition::Status(name, value) => {
            let conditions = object.pointer("/status/conditions").and_then(Json::as_array);
            conditions.is_some_and(|c| {
                c.iter().any(|c| {
                    c["type"].as_str().is_some_and(|t| t.eq_ignore_ascii_case(name))
                        && c["status"].as_str().is_some_and(|s| s.eq_ignore_ascii_case(value))
                })
            })
        }
        Condition::JsonPath(template, value) => template.render(object) == *value,
    }
}

pub async fn wait(connection: &Connection, args: &WaitArgs) -> Result<()> {
    let condition = parse_condition(&args.condition)?;
    let timeout = parse_duration(&args.timeout)?;
    let deadline = Instant::now() + timeout;
    let named = targets(&args.args, |_| false)?;
    let mut objects: Vec<(&'static KindInfo, String, String)> = Vec::new();
    for (info, name) in &named.objects {
        objects.push((info, connection.scoped(info), name.clone()));
    }
    if named.objects.is_empty() {
        let Some(info) = named.kind else { anyhow::bail!("give objects to wait for") };
        if args.selector.is_empty() && !args.all {
            anyhow::bail!("resource(s) were provided, but no name was specified: give names, -l SELECTOR or --all");
        }
        let list =
            connection.client.list(info, &connection.list_namespace(info), &ListParams::labels(&args.selector)).await?;
        for bytes in list.items {
            let meta = DynamicObject::new(info, bytes).metadata();
            objects.push((info, meta.namespace, meta.name));
        }
        if objects.is_empty() {
            anyhow::bail!("no matching resources found");
        }
    }
    let mut failures = 0;
    for (info, namespace, name) in objects {
        let shown = name_of(info, &name);
        if let Condition::Delete = condition {
            if wait_deleted(connection, info, &namespace, &name, "", Some(deadline)).await? {
                println!("{shown} condition met");
            } else {
                failures += 1;
                eprintln!("error: timed out waiting for the condition on {}/{name}", info.qualified_plural());
            }
            continue;
        }
        loop {
            match connection.client.get(info, &namespace, &name).await {
                Ok(bytes) => {
                    if holds(&condition, &DynamicObject::new(info, bytes).to_json()) {
                        println!("{shown} condition met");
                        break;
                    }
                }
                Err(e) if e.is(Reason::NotFound) => {
                    failures += 1;
                    eprintln!("{}", server_error(&e));
                    break;
                }
                Err(e) => return Err(e.into()),
            }
            if Instant::now() >= deadline {
                failures += 1;
                eprintln!("error: timed out waiting for the condition on {}/{name}", info.qualified_plural());
                break;
            }
            tokio::time::sleep(POLL).await;
        }
    }
    if failures > 0 {
        anyhow::bail!("{failures} object(s) did not meet the condition");
    }
    Ok(())
}

/// Waits until the object is gone (or replaced by another of the same name: a
/// different `uid`, when one is given). False when the deadline passed first.
pub async fn wait_deleted(
    connection: &Connection,
    info: &'static KindInfo,
    namespace: &str,
    name: &str,
    uid: &str,
    deadline: Option<Instant>,
) -> Result<bool> {
    loop {
        match connection.client.get(info, namespace, name).await {
            Err(e) if e.is(Reason::NotFound) => return Ok(true),
            Err(e) => return Err(e.into()),
            Ok(bytes) => {
                if !uid.is_empty() && DynamicObject::new(info, bytes).metadata().uid != uid {
                    return Ok(true);
                }
            }
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(false);
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn conditions_parse_and_hold() {
        let object = json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}});
        assert!(holds(&parse_condition("condition=Ready").unwrap(), &object));
        assert!(holds(&parse_condition("condition=ready=true").unwrap(), &object));
        assert!(!holds(&parse_condition("condition=Ready=False").unwrap(), &object));
        assert!(holds(&parse_condition("jsonpath={.status.phase}=Running").unwrap(), &object));
        assert!(!holds(&parse_condition("jsonpath='{.status.phase}'=Pending").unwrap(), &object));
        assert!(parse_condition("ready").is_err());
    }
}
