//! `delete`: by manifest, by kind and names, or by label selector.

use anyhow::Result;
use client::ListParams;
use proto::meta::v1::DeleteOptions;
use proto::{DynamicObject, KindInfo, Reason};

use super::{kind, namespace_for};
use crate::cli::DeleteArgs;
use crate::connection::Connection;
use crate::manifest::read_all;

pub async fn delete(connection: &Connection, explicit_namespace: bool, args: &DeleteArgs) -> Result<()> {
    let propagation = match args.cascade.as_str() {
        "background" | "true" => "Background",
        "foreground" => "Foreground",
        "orphan" | "false" => "Orphan",
        other => {
            anyhow::bail!("invalid --cascade \"{other}\": use background, foreground or orphan")
        }
    };
    let grace = if args.now { Some(1) } else { args.grace_period.filter(|g| *g >= 0) };
    let options = DeleteOptions {
        grace_period_seconds: grace,
        propagation_policy: propagation.to_string(),
        ..Default::default()
    };

    let mut targets: Vec<(&'static KindInfo, String, String)> = Vec::new();
    if !args.filename.is_empty() {
        if !args.args.is_empty() {
            anyhow::bail!("give either -f or KIND NAME, not both");
        }
        for manifest in read_all(&args.filename, args.recursive)? {
            let meta = manifest.object.metadata();
            let info = manifest.object.info;
            let ns = namespace_for(info, &meta.namespace, &connection.namespace, explicit_namespace)?;
            targets.push((info, ns, meta.name));
        }
    } else if let Some(first) = args.args.first() {
        if first.contains('/') {
            for arg in &args.args {
                let Some((kind_name, name)) = arg.split_once('/') else {
                    anyhow::bail!("\"{arg}\": give every object as KIND/NAME once one is");
                };
                let info = kind(kind_name)?;
                targets.push((info, scoped(info, &connection.namespace), name.to_string()));
            }
        } else {
            let info = kind(first)?;
            let ns = scoped(info, &connection.namespace);
            if args.args.len() == 1 {
                if args.selector.is_empty() {
                    anyhow::bail!(
                        "resource(s) were provided, but no name was specified: give names, -l SELECTOR, or -f FILE"
                    );
                }
                let list = connection.client.list(info, &ns, &ListParams::labels(&args.selector)).await?;
                for bytes in list.items {
                    targets.push((info, ns.clone(), DynamicObject::new(info, bytes).metadata().name));
                }
                if targets.is_empty() {
                    eprintln!("No resources found");
                }
            }
            for name in &args.args[1..] {
                targets.push((info, ns.clone(), name.clone()));
            }
        }
    } else {
        anyhow::bail!(
            "you must provide one or more resources by argument or filename (ctl delete KIND NAME, ctl delete -f FILE)"
        );
    }

    let mut failures = 0;
    for (info, namespace, name) in targets {
        match connection.client.delete(info, &namespace, &name, options.clone()).await {
            Ok(_) => println!("{} \"{name}\" deleted", info.qualified_singular()),
            Err(e) if e.is(Reason::NotFound) && args.ignore_not_found => {}
            Err(e) => {
                failures += 1;
                eprintln!("Error from server ({}): {}", e.reason().as_str(), e.message());
            }
        }
    }
    if failures > 0 {
        anyhow::bail!("{failures} object(s) could not be deleted");
    }
    Ok(())
}

fn scoped(info: &KindInfo, namespace: &str) -> String {
    if info.namespaced { namespace.to_string() } else { String::new() }
}
