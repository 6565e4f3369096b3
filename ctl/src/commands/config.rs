//! `config view|use-context|current-context|get-contexts|set-context`: reading and
//! changing the kubeconfig file. No server is contacted.

use anyhow::{Context as _, Result};
use client::kubeconfig::{Context, Kubeconfig, NamedContext};

use crate::cli::{ConfigCommand, ConfigViewArgs, Global, SetContextArgs};
use crate::connection::{kubeconfig_path, load_kubeconfig};
use crate::output::align;

pub fn run(global: &Global, command: ConfigCommand) -> Result<()> {
    match command {
        ConfigCommand::View(args) => view(global, &args),
        ConfigCommand::UseContext { name } => {
            let (path, mut config) = load_kubeconfig(global)?;
            if !config.contexts.iter().any(|c| c.name == name) {
                anyhow::bail!("no context exists with the name: \"{name}\" (`ctl config get-contexts` lists them)");
            }
            config.current_context = name.clone();
            config.save(&path)?;
            println!("Switched to context \"{name}\".");
            Ok(())
        }
        ConfigCommand::CurrentContext => {
            let (_, config) = load_kubeconfig(global)?;
            if config.current_context.is_empty() {
                anyhow::bail!("current-context is not set");
            }
            println!("{}", config.current_context);
            Ok(())
        }
        ConfigCommand::GetContexts => {
            let (_, config) = load_kubeconfig(global)?;
            let mut rows = vec![["CURRENT", "NAME", "CLUSTER", "AUTHINFO", "NAMESPACE"].map(String::from).to_vec()];
            for c in &config.contexts {
                let current = if c.name == config.current_context { "*" } else { "" };
                rows.push(vec![
                    current.to_string(),
                    c.name.clone(),
                    c.context.cluster.clone(),
                    c.context.user.clone(),
                    c.context.namespace.clone(),
                ]);
            }
            print!("{}", align(&rows));
            Ok(())
        }
        ConfigCommand::SetContext(args) => set_context(global, &args),
    }
}

fn view(global: &Global, args: &ConfigViewArgs) -> Result<()> {
    let path = kubeconfig_path(global)?;
    // kubectl prints an empty config when the file does not exist.
    let mut config = if path.exists() { Kubeconfig::load(&path)? } else { Kubeconfig::default() };
    if config.api_version.is_empty() {
        config.api_version = "v1".into();
        config.kind = "Config".into();
    }
    if args.minify {
        let current = global.context.clone().unwrap_or_else(|| config.current_context.clone());
        let context = config
            .contexts
            .iter()
            .find(|c| c.name == current)
            .cloned()
            .with_context(|| format!("cannot minify: context \"{current}\" is not in the kubeconfig"))?;
        config.clusters.retain(|c| c.name == context.context.cluster);
        config.users.retain(|u| u.name == context.context.user);
        config.contexts = vec![context];
        config.current_context = current;
    }
    if !args.raw {
        for cluster in &mut config.clusters {
            if cluster.cluster.certificate_authority_data.is_some() {
                cluster.cluster.certificate_authority_data = Some("DATA+OMITTED".into());
            }
        }
        for user in &mut config.users {
            let u = &mut user.user;
            for data in [&mut u.client_certificate_data, &mut u.client_key_data] {
                if data.is_some() {
                    *data = Some("DATA+OMITTED".into());
                }
            }
            if u.token.is_some() {
                u.token = Some("REDACTED".into());
            }
        }
    }
    let value = serde_json::to_value(&config).context("encoding the kubeconfig")?;
    match args.output.as_deref() {
        None | Some("yaml") => print!("{}", proto::codec::to_yaml(&value)),
        Some("json") => println!("{}", proto::codec::to_json_pretty(&value)),
        Some(other) => anyhow::bail!("unable to match a printer for \"{other}\": use yaml or json"),
    }
    Ok(())
}

fn set_context(global: &Global, args: &SetContextArgs) -> Result<()> {
    let path = kubeconfig_path(global)?;
    let mut config = if path.exists() { Kubeconfig::load(&path)? } else { Kubeconfig::default() };
    let name = match (&args.name, args.current) {
        (Some(_), true) => anyhow::bail!("give either a context name or --current, not both"),
        (Some(name), false) => name.clone(),
        (None, true) => {
            if config.current_context.is_empty() {
                anyhow::bail!("no current context is set: give a context name");
            }
            config.current_context.clone()
        }
        (None, false) => anyhow::bail!("give a context name, or --current for the current context"),
    };
    let existed = config.contexts.iter().any(|c| c.name == name);
    if !existed {
        config.contexts.push(NamedContext { name: name.clone(), context: Context::default() });
    }
    if let Some(context) = config.contexts.iter_mut().find(|c| c.name == name) {
        if let Some(namespace) = &global.namespace {
            context.context.namespace = namespace.clone();
        }
        if let Some(cluster) = &args.cluster {
            context.context.cluster = cluster.clone();
        }
        if let Some(user) = &args.user {
            context.context.user = user.clone();
        }
    }
    if config.api_version.is_empty() {
        config.api_version = "v1".into();
        config.kind = "Config".into();
    }
    config.save(&path)?;
    println!("Context \"{name}\" {}.", if existed { "modified" } else { "created" });
    Ok(())
}
