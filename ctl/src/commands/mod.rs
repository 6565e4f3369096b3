//! One module per verb (or family of verbs); `run` dispatches. Helpers every verb
//! shares (kind names, targets, dry-run, durations, error lines) live here.

mod apply;
mod completion;
mod config;
mod delete;
mod describe;
mod discovery;
mod edit;
mod generate;
mod get;
mod metadata;
mod node;
mod patch;
mod rollout;
pub mod streaming;
mod wait;

use std::time::Duration;

use anyhow::Result;
use proto::codec::decode_object;
use proto::{ApiError, DynamicObject, KindInfo, Reason};
use serde_json::Value as Json;

use crate::cli::{Cli, Command};
use crate::connection::{Connection, connect};

pub async fn run(cli: Cli) -> Result<()> {
    let global = &cli.global;
    match cli.command {
        // These never need a server.
        Command::Config(command) => return config::run(global, command),
        Command::Completion(args) => return completion::completion(&args.shell),
        Command::Version(args) if args.client => return discovery::version(None, &args).await,
        _ => {}
    }
    let connection = match connect(global) {
        Ok(connection) => connection,
        // Generating a manifest needs no cluster.
        Err(_) if client_dry_run_generator(&cli.command) => crate::connection::offline(global)?,
        Err(e) => return Err(e),
    };
    let c = &connection;
    match cli.command {
        Command::Version(args) => discovery::version(Some(c), &args).await,
        Command::ApiResources => discovery::api_resources(c).await,
        Command::ClusterInfo => discovery::cluster_info(c).await,
        Command::Apply(args) => apply::apply(c, &args, apply::Mode::Apply).await,
        Command::Create(args) => generate::create(c, args).await,
        Command::Expose(args) => generate::expose(c, &args).await,
        Command::Run(args) => generate::run(c, &args).await,
        Command::Get(args) => get::get(c, &args).await,
        Command::Describe(args) => describe::describe(c, &args).await,
        Command::Delete(args) => delete::delete(c, &args).await,
        Command::Edit(args) => edit::edit(c, &args).await,
        Command::Patch(args) => patch::patch(c, &args).await,
        Command::Label(args) => metadata::label_or_annotate(c, &args, metadata::Field::Labels).await,
        Command::Annotate(args) => metadata::label_or_annotate(c, &args, metadata::Field::Annotations).await,
        Command::Scale(args) => patch::scale(c, &args).await,
        Command::Set(command) => patch::set(c, command).await,
        Command::Cordon(args) => node::cordon(c, &args, true).await,
        Command::Uncordon(args) => node::cordon(c, &args, false).await,
        Command::Drain(args) => node::drain(c, &args).await,
        Command::Taint(args) => node::taint(c, &args).await,
        Command::Wait(args) => wait::wait(c, &args).await,
        Command::Rollout(command) => rollout::run(c, command).await,
        Command::Logs(args) => streaming::logs(c, &args).await,
        Command::Exec(args) => streaming::exec(c, &args).await,
        Command::Config(_) | Command::Completion(_) => Ok(()),
    }
}

/// A failure the command has already reported on standard error (as kubectl prints
/// `Error from server (NotFound): ...` and nothing more); main only sets the exit code.
#[derive(Debug)]
pub struct Reported;

impl std::fmt::Display for Reported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the errors above")
    }
}

impl std::error::Error for Reported {}

fn client_dry_run_generator(command: &Command) -> bool {
    let dry_run = match command {
        Command::Create(args) if args.generator.is_some() => &args.dry_run,
        Command::Run(args) => &args.dry_run,
        _ => return false,
    };
    DryRun::parse(dry_run).is_ok_and(|d| d == DryRun::Client)
}

/// Resolves a kind name as kubectl accepts it ("po", "pods", "deployment.apps").
pub fn kind(name: &str) -> Result<&'static KindInfo> {
    proto::resource::by_name(name)
        .ok_or_else(|| anyhow::anyhow!("the server doesn't have a resource type \"{name}\" (see `ctl api-resources`)"))
}

/// The namespace an object from a manifest goes to: its own, else -n's or the
/// context's. A manifest namespace that contradicts an explicit -n is an error.
pub fn namespace_for(info: &KindInfo, own: &str, connection_namespace: &str, explicit: bool) -> Result<String> {
    if !info.namespaced {
        return Ok(String::new());
    }
    if own.is_empty() {
        return Ok(connection_namespace.to_string());
    }
    if explicit && own != connection_namespace {
        anyhow::bail!(
            "the namespace from the provided object \"{own}\" does not match the namespace \"{connection_namespace}\". You must pass '--namespace={own}' to perform this operation."
        );
    }
    Ok(own.to_string())
}

/// Objects named on a command line: `KIND NAME...` or `KIND/NAME...`. Returns the
/// targets and the words after them that were not part of them (`rest`), which
/// label, annotate, taint and set image read. An empty name list means "by selector".
pub struct Targets {
    pub kind: Option<&'static KindInfo>,
    pub objects: Vec<(&'static KindInfo, String)>,
    pub rest: Vec<String>,
}

/// `is_rest` tells a word that ends the list of names (`key=value`, `key-`).
pub fn targets(args: &[String], is_rest: impl Fn(&str) -> bool) -> Result<Targets> {
    let mut objects = Vec::new();
    let mut rest = Vec::new();
    let mut kind_of_names = None;
    let Some(first) = args.first() else {
        anyhow::bail!("you must specify the type of resource and a name (KIND NAME or KIND/NAME)");
    };
    if first.contains('/') {
        for arg in args {
            if !rest.is_empty() || is_rest(arg) {
                rest.push(arg.clone());
                continue;
            }
            let Some((kind_name, name)) = arg.split_once('/') else {
                anyhow::bail!("\"{arg}\": give every object as KIND/NAME once one is");
            };
            objects.push((kind(kind_name)?, name.to_string()));
        }
    } else {
        let info = kind(first)?;
        kind_of_names = Some(info);
        for arg in &args[1..] {
            if !rest.is_empty() || is_rest(arg) {
                rest.push(arg.clone());
            } else {
                objects.push((info, arg.clone()));
            }
        }
    }
    Ok(Targets { kind: kind_of_names, objects, rest })
}

/// The one object a verb such as edit or rollout acts on.
pub fn single_target(args: &[String]) -> Result<(&'static KindInfo, String)> {
    let targets = targets(args, |_| false)?;
    match targets.objects.as_slice() {
        [one] => Ok(one.clone()),
        [] => anyhow::bail!("give the object's name: KIND NAME or KIND/NAME"),
        _ => anyhow::bail!("give exactly one object (KIND NAME or KIND/NAME)"),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DryRun {
    None,
    Client,
    Server,
}

impl DryRun {
    pub fn parse(value: &str) -> Result<DryRun> {
        Ok(match value {
            "none" | "" | "false" => DryRun::None,
            "client" | "true" => DryRun::Client,
            "server" => DryRun::Server,
            other => anyhow::bail!("invalid --dry-run \"{other}\": use none, client or server"),
        })
    }

    /// What kubectl appends to "created" and the like.
    pub fn suffix(self) -> &'static str {
        match self {
            DryRun::None => "",
            DryRun::Client => " (dry run)",
            DryRun::Server => " (server dry run)",
        }
    }
}

/// `30s`, `5m`, `1h30m`, `250ms`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration> {
    let bad = || anyhow::anyhow!("invalid duration \"{text}\": use a number with a unit, like 30s, 5m or 1h");
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    let mut total = Duration::ZERO;
    let mut number = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let mut unit = c.to_string();
        if c == 'm' && chars.peek() == Some(&'s') {
            unit.push('s');
            chars.next();
        }
        let value: f64 = number.parse().map_err(|_| bad())?;
        number.clear();
        let seconds = match unit.as_str() {
            "ms" => value / 1000.0,
            "s" => value,
            "m" => value * 60.0,
            "h" => value * 3600.0,
            _ => return Err(bad()),
        };
        total += Duration::from_secs_f64(seconds);
    }
    if !number.is_empty() {
        return Err(bad());
    }
    Ok(total)
}

/// Reads an object, changes its JSON form with `change`, and writes it back as a
/// compare-and-swap update, rereading and retrying when someone else wrote in
/// between. `change` returns false when there is nothing to do; then nothing is
/// written and None is returned.
pub async fn modify(
    connection: &Connection,
    info: &'static KindInfo,
    namespace: &str,
    name: &str,
    dry_run: DryRun,
    mut change: impl FnMut(&mut Json) -> Result<bool>,
) -> Result<Option<DynamicObject>> {
    const ATTEMPTS: usize = 5;
    for attempt in 1..=ATTEMPTS {
        let live = connection.client.get(info, namespace, name).await?;
        let mut value = DynamicObject::new(info, live).to_json();
        if !change(&mut value)? {
            return Ok(None);
        }
        let object = decode_object(&value).map_err(|e| anyhow::anyhow!("{} \"{name}\": {e}", info.kind))?;
        if dry_run == DryRun::Client {
            return Ok(Some(object));
        }
        match connection.client.update(info, namespace, object.bytes, dry_run == DryRun::Server, false).await {
            Ok(bytes) => return Ok(Some(DynamicObject::new(info, bytes))),
            Err(e) if e.is(Reason::Conflict) && attempt < ATTEMPTS => continue,
            Err(e) => return Err(e.into()),
        }
    }
    unreachable!("the last attempt returns")
}

/// kubectl's line for an API error: `Error from server (NotFound): pods "x" not found`.
pub fn server_error(error: &ApiError) -> String {
    // A server that was never reached did not answer anything.
    if error.is(Reason::ServiceUnavailable) && error.message().starts_with("cannot reach") {
        return format!("error: {}", error.message());
    }
    let mut line = format!("Error from server ({}): {}", error.reason().as_str(), error.message());
    // An Invalid error lists each field on its own line as well, so long lists stay readable.
    if error.causes().len() > 1 {
        for cause in error.causes() {
            line.push_str(&format!("\n  * {}: {}", cause.field, cause.message));
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_as_kubectl_writes_them() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5x").is_err());
    }

    #[test]
    fn targets_split_names_from_the_rest() {
        let args: Vec<String> = ["pods", "a", "b", "x=y", "z-"].iter().map(|s| s.to_string()).collect();
        let t = targets(&args, |a| a.contains('=') || a.ends_with('-')).unwrap();
        assert_eq!(t.objects.iter().map(|(_, n)| n.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(t.rest, ["x=y", "z-"]);
        let args: Vec<String> = ["deploy/web", "svc/web"].iter().map(|s| s.to_string()).collect();
        let t = targets(&args, |_| false).unwrap();
        assert_eq!(t.objects[1].0.kind, "Service");
        assert!(t.kind.is_none());
    }
}
