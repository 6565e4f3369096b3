//! `delete`: by manifest, by kind and names, or by label selector.

use anyhow::Result;
use client::ListParams;
use proto::meta::v1::DeleteOptions;
use proto::{DynamicObject, KindInfo, Reason};

use super::wait::wait_deleted;
use super::{kind, namespace_for, parse_duration, server_error};
use crate::cli::DeleteArgs;
use crate::connection::Connection;
use crate::manifest::read_all;

pub async fn delete(connection: &Connection, args: &DeleteArgs) -> Result<()> {
    let explicit_namespace = connection.explicit_namespace;
    let propagation = match args.cascade.as_str() {
        "background" | "true" => "Background",
        "foreground" => "Foreground",
        "orphan" | "false" => "Orphan",
        other => {
            anyhow::bail!("invalid --cascade \"{other}\": use background, foreground or orphan")
        }
    };
    let grace = if args.now {
        Some(1)
    } else if args.force && args.grace_period.is_none() {
        Some(0)
    } else {
        args.grace_period.filter(|g| *g >= 0)
    };
    if grace == Some(0) && !args.force {
        anyhow::bail!("--grace-period=0 removes the object at once only with --force (the process may keep running)");
    }
    if args.force {
        eprintln!(
            "Warning: Immediate deletion does not wait for confirmation that the running resource has been terminated. The resource may continue to run on the cluster indefinitely."
        );
    }
    let wait_for_removal = match args.wait.as_str() {
        "true" => true,
        "false" => false,
        other => anyhow::bail!("invalid --wait \"{other}\": use true or false"),
    };
    let timeout = match &args.timeout {
        Some(t) => Some(parse_duration(t)?),
        None => None,
    };
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
                targets.push((info, connection.scoped(info), name.to_string()));
            }
        } else {
            let info = kind(first)?;
            let ns = connection.scoped(info);
            if args.args.len() == 1 {
                if args.selector.is_empty() && !args.all {
                    anyhow::bail!(
                        "resource(s) were provided, but no name was specified: give names, -l SELECTOR, --all, or -f FILE"
                    );
                }
                let list_ns = connection.list_namespace(info);
                let list = connection.client.list(info, &list_ns, &ListParams::labels(&args.selector)).await?;
                for bytes in list.items {
                    let meta = DynamicObject::new(info, bytes).metadata();
                    targets.push((info, meta.namespace, meta.name));
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
    let mut pending = Vec::new();
    for (info, namespace, name) in targets {
        match connection.client.delete(info, &namespace, &name, options.clone()).await {
            Ok((bytes, removed)) => {
                println!("{} \"{name}\" deleted", info.qualified_singular());
                if !removed {
                    pending.push((info, namespace, name, DynamicObject::new(info, bytes).metadata().uid));
                }
            }
            Err(e) if e.is(Reason::NotFound) && args.ignore_not_found => {}
            Err(e) => {
                failures += 1;
                eprintln!("{}", server_error(&e));
            }
        }
    }
    if wait_for_removal {
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        for (info, namespace, name, uid) in pending {
            if !wait_deleted(connection, info, &namespace, &name, &uid, deadline).await? {
                failures += 1;
                eprintln!("error: timed out waiting for {} \"{name}\" to be removed", info.qualified_singular());
            }
        }
    }
    if failures > 0 {
        anyhow::bail!("{failures} object(s) could not be deleted");
    }
    Ok(())
}
