//! The command line: global flags as kubectl has them, and one subcommand per verb.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "ctl", version, about = "Controls the cluster, as kubectl does.")]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Path to the kubeconfig file [default: $KUBECONFIG, else ~/.kube/config].
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// The apiserver's address, overriding the kubeconfig (http://127.0.0.1:6443).
    #[arg(long, short = 's', global = true)]
    pub server: Option<String>,
    /// The namespace for this request.
    #[arg(long, short = 'n', global = true)]
    pub namespace: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Prints the client and server versions.
    Version,
    /// Lists the kinds the server serves.
    ApiResources,
    /// Creates or updates objects from manifests.
    Apply(FileArgs),
    /// Creates objects from manifests.
    Create(FileArgs),
    /// Shows objects.
    Get(GetArgs),
    /// Deletes objects by file, by name or by label selector.
    Delete(DeleteArgs),
}

#[derive(Debug, Args)]
pub struct FileArgs {
    /// A manifest file, a directory of them, or "-" for standard input.
    #[arg(long, short = 'f', required = true)]
    pub filename: Vec<PathBuf>,
    /// Recurse into subdirectories of -f directories.
    #[arg(long, short = 'R')]
    pub recursive: bool,
    /// "none" (default) or "server": the server checks and defaults, and stores nothing.
    #[arg(long, default_value = "none")]
    pub dry_run: String,
    /// Output format: yaml, json or name.
    #[arg(long, short = 'o')]
    pub output: Option<String>,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// KIND[,KIND...] then optional names; or KIND/NAME pairs.
    #[arg(required = true)]
    pub args: Vec<String>,
    /// Label selector: "app=web,tier!=db", "env in (a,b)".
    #[arg(long, short = 'l', default_value = "")]
    pub selector: String,
    /// Field selector: "metadata.name=web", "spec.nodeName=node-1".
    #[arg(long, default_value = "")]
    pub field_selector: String,
    /// Output format: wide, yaml, json or name.
    #[arg(long, short = 'o')]
    pub output: Option<String>,
    /// Every namespace.
    #[arg(long, short = 'A')]
    pub all_namespaces: bool,
    /// Adds a LABELS column.
    #[arg(long)]
    pub show_labels: bool,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// KIND NAME... or KIND/NAME...
    pub args: Vec<String>,
    /// Manifests whose objects to delete.
    #[arg(long, short = 'f')]
    pub filename: Vec<PathBuf>,
    #[arg(long, short = 'R')]
    pub recursive: bool,
    /// Delete every object of the kind matching this label selector.
    #[arg(long, short = 'l', default_value = "")]
    pub selector: String,
    /// Seconds a pod gets to stop; 0 with --force removes at once.
    #[arg(long)]
    pub grace_period: Option<i64>,
    /// Same as --grace-period=1.
    #[arg(long)]
    pub now: bool,
    /// background (default), foreground or orphan.
    #[arg(long, default_value = "background")]
    pub cascade: String,
    /// Ignore objects that do not exist.
    #[arg(long)]
    pub ignore_not_found: bool,
}
