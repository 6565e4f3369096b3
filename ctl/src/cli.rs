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
    /// Every namespace (get, describe, delete, wait).
    #[arg(long, short = 'A', global = true)]
    pub all_namespaces: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Prints the client and server versions.
    Version(VersionArgs),
    /// Lists the kinds the server serves.
    ApiResources,
    /// Shows where the control plane runs.
    ClusterInfo,
    /// Reads and changes kubeconfig files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Creates or updates objects from manifests (three-way merge against the last apply).
    Apply(FileArgs),
    /// Creates objects from manifests, or generates common ones.
    Create(CreateArgs),
    /// Exposes a deployment (or replica set, pod, service) as a new Service.
    Expose(ExposeArgs),
    /// Creates and runs a pod from an image.
    Run(RunArgs),
    /// Shows objects.
    Get(GetArgs),
    /// Shows an object in detail, with its events.
    Describe(DescribeArgs),
    /// Deletes objects by file, by name or by label selector.
    Delete(DeleteArgs),
    /// Edits an object in $EDITOR and updates it.
    Edit(EditArgs),
    /// Patches an object with a JSON merge patch or a JSON patch.
    Patch(PatchArgs),
    /// Sets or removes labels (`key=value`, `key-`).
    Label(MetaArgs),
    /// Sets or removes annotations (`key=value`, `key-`).
    Annotate(MetaArgs),
    /// Sets the replica count of a deployment, replica set, replication controller or stateful set.
    Scale(ScaleArgs),
    /// Changes fields of objects.
    #[command(subcommand)]
    Set(SetCommand),
    /// Marks nodes unschedulable.
    Cordon(NodeArgs),
    /// Marks nodes schedulable.
    Uncordon(NodeArgs),
    /// Cordons a node and evicts its pods.
    Drain(DrainArgs),
    /// Adds or removes node taints (`key=value:Effect`, `key:Effect-`, `key-`).
    Taint(TaintArgs),
    /// Waits for a condition on objects, or for their deletion.
    Wait(WaitArgs),
    /// Manages the rollout of deployments, stateful sets and daemon sets.
    #[command(subcommand)]
    Rollout(RolloutCommand),
    /// Prints a container's logs.
    Logs(LogsArgs),
    /// Runs a command in a container.
    Exec(ExecArgs),
    /// Prints a shell completion script (bash or zsh).
    Completion(CompletionArgs),
}

#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Only the client's version; no server is contacted.
    #[arg(long)]
    pub client: bool,
    /// yaml or json.
    #[arg(long, short = 'o')]
    pub output: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Prints the kubeconfig (credentials redacted unless --raw).
    View(ConfigViewArgs),
    /// Makes a context the current one.
    UseContext { name: String },
    /// Prints the current context's name.
    CurrentContext,
    /// Lists the contexts.
    GetContexts,
    /// Creates or changes a context (`--namespace` sets its namespace).
    SetContext(SetContextArgs),
}

#[derive(Debug, Args)]
pub struct ConfigViewArgs {
    /// Only what the current context uses.
    #[arg(long)]
    pub minify: bool,
    /// Show credentials.
    #[arg(long)]
    pub raw: bool,
    /// yaml (default) or json.
    #[arg(long, short = 'o')]
    pub output: Option<String>,
}

#[derive(Debug, Args)]
pub struct SetContextArgs {
    /// The context to change; with --current, the current one.
    pub name: Option<String>,
    #[arg(long)]
    pub current: bool,
    #[arg(long)]
    pub cluster: Option<String>,
    #[arg(long)]
    pub user: Option<String>,
}

#[derive(Debug, Args, Clone)]
pub struct FileArgs {
    /// A manifest file, a directory of them, or "-" for standard input.
    #[arg(long, short = 'f', required = true)]
    pub filename: Vec<PathBuf>,
    /// Recurse into subdirectories of -f directories.
    #[arg(long, short = 'R')]
    pub recursive: bool,
    /// none (default), server (the server checks and defaults, and stores nothing) or client.
    #[arg(long, default_value = "none", num_args = 0..=1, default_missing_value = "client")]
    pub dry_run: String,
    /// Output format: yaml, json or name.
    #[arg(long, short = 'o')]
    pub output: Option<String>,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[command(subcommand)]
    pub generator: Option<CreateCommand>,
    /// A manifest file, a directory of them, or "-" for standard input.
    #[arg(long, short = 'f')]
    pub filename: Vec<PathBuf>,
    #[arg(long, short = 'R')]
    pub recursive: bool,
    /// none (default), server or client.
    #[arg(long, default_value = "none", num_args = 0..=1, default_missing_value = "client", global = true)]
    pub dry_run: String,
    /// Output format: yaml, json or name.
    #[arg(long, short = 'o', global = true)]
    pub output: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum CreateCommand {
    /// A namespace.
    #[command(alias = "ns")]
    Namespace { name: String },
    /// A deployment running one image.
    #[command(alias = "deploy")]
    Deployment {
        name: String,
        #[arg(long, required = true)]
        image: Vec<String>,
        #[arg(long, default_value_t = 1)]
        replicas: i32,
        /// The container port to expose.
        #[arg(long)]
        port: Option<i32>,
        /// The command after `--`.
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// A config map from literals and files.
    #[command(alias = "cm")]
    Configmap(DataArgs),
    /// A secret.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// A job running one image.
    Job {
        name: String,
        #[arg(long, required = true)]
        image: String,
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// A cron job running one image on a schedule.
    #[command(alias = "cj")]
    Cronjob {
        name: String,
        #[arg(long, required = true)]
        image: String,
        #[arg(long, required = true)]
        schedule: String,
        #[arg(long)]
        restart: Option<String>,
        #[arg(last = true)]
        command: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// An Opaque (or --type) secret from literals and files.
    Generic {
        #[command(flatten)]
        data: DataArgs,
        #[arg(long = "type")]
        secret_type: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct DataArgs {
    pub name: String,
    /// key=value, repeatable.
    #[arg(long)]
    pub from_literal: Vec<String>,
    /// [key=]path: a file (key: its name) or a directory (one key per file).
    #[arg(long)]
    pub from_file: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ExposeArgs {
    /// KIND NAME or KIND/NAME.
    #[arg(required = true)]
    pub args: Vec<String>,
    /// The service port.
    #[arg(long)]
    pub port: Option<String>,
    /// The container port traffic goes to (number or name) [default: --port].
    #[arg(long)]
    pub target_port: Option<String>,
    /// ClusterIP (default), NodePort or LoadBalancer.
    #[arg(long = "type")]
    pub service_type: Option<String>,
    /// The service's name [default: the object's].
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long)]
    pub protocol: Option<String>,
    #[arg(long, default_value = "none", num_args = 0..=1, default_missing_value = "client")]
    pub dry_run: String,
    #[arg(long, short = 'o')]
    pub output: Option<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    pub name: String,
    #[arg(long, required = true)]
    pub image: String,
    #[arg(long)]
    pub port: Option<i32>,
    /// key=value,key=value [default: run=NAME].
    #[arg(long, short = 'l')]
    pub labels: Option<String>,
    /// KEY=VALUE environment variables, repeatable.
    #[arg(long)]
    pub env: Vec<String>,
    /// Always, OnFailure or Never.
    #[arg(long)]
    pub restart: Option<String>,
    /// Treat the words after `--` as the command rather than the arguments.
    #[arg(long)]
    pub command: bool,
    #[arg(last = true)]
    pub args: Vec<String>,
    #[arg(long, default_value = "none", num_args = 0..=1, default_missing_value = "client")]
    pub dry_run: String,
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
    /// Output format: wide, yaml, json, name, jsonpath=TEMPLATE, custom-columns=SPEC.
    #[arg(long, short = 'o')]
    pub output: Option<String>,
    /// Adds a LABELS column.
    #[arg(long)]
    pub show_labels: bool,
    /// Leaves out the header of tables.
    #[arg(long)]
    pub no_headers: bool,
    /// After listing, prints every change as it happens.
    #[arg(long, short = 'w')]
    pub watch: bool,
    /// Prints only the changes, not the current state first.
    #[arg(long)]
    pub watch_only: bool,
    /// Objects that do not exist are not an error.
    #[arg(long)]
    pub ignore_not_found: bool,
}

#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// KIND [NAME...] or KIND/NAME.
    #[arg(required = true)]
    pub args: Vec<String>,
    #[arg(long, short = 'l', default_value = "")]
    pub selector: String,
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
    /// Delete every object of the kind.
    #[arg(long)]
    pub all: bool,
    /// Seconds a pod gets to stop; 0 with --force removes at once.
    #[arg(long)]
    pub grace_period: Option<i64>,
    /// Same as --grace-period=1.
    #[arg(long)]
    pub now: bool,
    /// With --grace-period=0: remove at once.
    #[arg(long)]
    pub force: bool,
    /// background (default), foreground or orphan.
    #[arg(long, default_value = "background")]
    pub cascade: String,
    /// Ignore objects that do not exist.
    #[arg(long)]
    pub ignore_not_found: bool,
    /// Wait until the objects are gone (default true; --wait=false returns at once).
    #[arg(long, default_value = "true", num_args = 0..=1, default_missing_value = "true")]
    pub wait: String,
    /// How long --wait waits, e.g. 30s, 2m [default: a minute per object... at most 5m].
    #[arg(long)]
    pub timeout: Option<String>,
}

#[derive(Debug, Args)]
pub struct EditArgs {
    /// KIND NAME or KIND/NAME.
    #[arg(required = true)]
    pub args: Vec<String>,
    /// yaml (default) or json.
    #[arg(long, short = 'o')]
    pub output: Option<String>,
}

#[derive(Debug, Args)]
pub struct PatchArgs {
    /// KIND NAME or KIND/NAME.
    #[arg(required = true)]
    pub args: Vec<String>,
    /// The patch, JSON or YAML.
    #[arg(long, short = 'p')]
    pub patch: Option<String>,
    /// A file holding the patch.
    #[arg(long)]
    pub patch_file: Option<PathBuf>,
    /// merge (default) or json. (strategic is kubectl's default; it is not supported here.)
    #[arg(long = "type", default_value = "merge")]
    pub patch_type: String,
    /// Patch the status subresource.
    #[arg(long)]
    pub subresource: Option<String>,
    #[arg(long, default_value = "none", num_args = 0..=1, default_missing_value = "client")]
    pub dry_run: String,
    #[arg(long, short = 'o')]
    pub output: Option<String>,
}

#[derive(Debug, Args)]
pub struct MetaArgs {
    /// KIND NAME... KEY=VALUE... KEY-..., or KIND/NAME KEY=VALUE.
    #[arg(required = true)]
    pub args: Vec<String>,
    /// Replace values that are already set.
    #[arg(long)]
    pub overwrite: bool,
    /// Every object of the kind.
    #[arg(long)]
    pub all: bool,
    #[arg(long, short = 'l', default_value = "")]
    pub selector: String,
    /// Only if the object is still at this resourceVersion.
    #[arg(long)]
    pub resource_version: Option<String>,
    #[arg(long, default_value = "none", num_args = 0..=1, default_missing_value = "client")]
    pub dry_run: String,
    #[arg(long, short = 'o')]
    pub output: Option<String>,
}

#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// KIND NAME... or KIND/NAME...
    #[arg(required = true)]
    pub args: Vec<String>,
    #[arg(long, required = true)]
    pub replicas: i32,
    /// Only if the current replica count is this.
    #[arg(long)]
    pub current_replicas: Option<i32>,
    #[arg(long, short = 'l', default_value = "")]
    pub selector: String,
}

#[derive(Debug, Subcommand)]
pub enum SetCommand {
    /// Sets container images: `set image deployment/web web=nginx:1.27`.
    Image {
        /// KIND/NAME (or KIND NAME) then CONTAINER=IMAGE..., `*=IMAGE` for every container.
        #[arg(required = true)]
        args: Vec<String>,
    },
}

#[derive(Debug, Args)]
pub struct NodeArgs {
    /// Node names.
    pub nodes: Vec<String>,
    #[arg(long, short = 'l', default_value = "")]
    pub selector: String,
    #[arg(long, default_value = "none", num_args = 0..=1, default_missing_value = "client")]
    pub dry_run: String,
}

#[derive(Debug, Args)]
pub struct DrainArgs {
    pub node: String,
    /// Leave DaemonSet-managed pods (they would come back at once anyway).
    #[arg(long)]
    pub ignore_daemonsets: bool,
    /// Also delete pods no controller manages (they are lost).
    #[arg(long)]
    pub force: bool,
    /// Also delete pods with emptyDir volumes (their data is lost).
    #[arg(long)]
    pub delete_emptydir_data: bool,
    /// Seconds each pod gets to stop [default: the pod's own].
    #[arg(long)]
    pub grace_period: Option<i64>,
    /// How long to wait for the pods to go, e.g. 90s, 5m [default: forever].
    #[arg(long)]
    pub timeout: Option<String>,
    #[arg(long, short = 'l', default_value = "")]
    pub pod_selector: String,
}

#[derive(Debug, Args)]
pub struct TaintArgs {
    /// nodes NODE... then key=value:Effect, key:Effect- or key-.
    #[arg(required = true)]
    pub args: Vec<String>,
    #[arg(long)]
    pub overwrite: bool,
    #[arg(long)]
    pub all: bool,
    #[arg(long, short = 'l', default_value = "")]
    pub selector: String,
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    /// KIND NAME..., KIND/NAME..., or KIND with -l / --all.
    #[arg(required = true)]
    pub args: Vec<String>,
    /// condition=NAME[=VALUE], delete, or jsonpath={PATH}=VALUE.
    #[arg(long = "for", required = true)]
    pub condition: String,
    /// How long to wait: 30s, 5m, 1h [default: 30s].
    #[arg(long, default_value = "30s")]
    pub timeout: String,
    #[arg(long, short = 'l', default_value = "")]
    pub selector: String,
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Waits for a rollout to finish, showing its progress.
    Status(RolloutStatusArgs),
    /// Lists the revisions of a rollout.
    History(RolloutHistoryArgs),
    /// Rolls back to the previous (or --to-revision) template.
    Undo(RolloutUndoArgs),
    /// Restarts every pod by changing the template.
    Restart(RolloutTarget),
    /// Pauses a deployment's rollout.
    Pause(RolloutTarget),
    /// Resumes a paused deployment.
    Resume(RolloutTarget),
}

#[derive(Debug, Args)]
pub struct RolloutTarget {
    /// KIND/NAME or KIND NAME.
    #[arg(required = true)]
    pub args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RolloutStatusArgs {
    #[arg(required = true)]
    pub args: Vec<String>,
    /// Keep watching until the rollout finishes (default true).
    #[arg(long, short = 'w', default_value = "true", num_args = 0..=1, default_missing_value = "true")]
    pub watch: String,
    /// How long to wait, e.g. 5m [default: forever].
    #[arg(long)]
    pub timeout: Option<String>,
    /// Only for this revision.
    #[arg(long)]
    pub revision: Option<i64>,
}

#[derive(Debug, Args)]
pub struct RolloutHistoryArgs {
    #[arg(required = true)]
    pub args: Vec<String>,
    /// Show the template of this revision.
    #[arg(long)]
    pub revision: Option<i64>,
}

#[derive(Debug, Args)]
pub struct RolloutUndoArgs {
    #[arg(required = true)]
    pub args: Vec<String>,
    /// The revision to go back to [default: the previous].
    #[arg(long, default_value_t = 0)]
    pub to_revision: i64,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// POD or KIND/NAME.
    pub target: Vec<String>,
    #[arg(long, short = 'c')]
    pub container: Option<String>,
    #[arg(long, short = 'f')]
    pub follow: bool,
    #[arg(long, short = 'p')]
    pub previous: bool,
    #[arg(long)]
    pub tail: Option<i64>,
    #[arg(long)]
    pub timestamps: bool,
    /// Only lines newer than this (10s, 5m, 1h).
    #[arg(long)]
    pub since: Option<String>,
    /// At most this many bytes of log.
    #[arg(long)]
    pub limit_bytes: Option<i64>,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    pub pod: String,
    #[arg(long, short = 'c')]
    pub container: Option<String>,
    #[arg(long, short = 'i')]
    pub stdin: bool,
    #[arg(long, short = 't')]
    pub tty: bool,
    #[arg(last = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// bash or zsh.
    pub shell: String,
}
