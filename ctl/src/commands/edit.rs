//! `edit`: the object as YAML in $KUBE_EDITOR / $EDITOR; what is saved is decoded
//! and written back as a compare-and-swap update. A file that does not decode, or
//! that the server refuses, is reopened with the errors as comments on top; saving
//! it unchanged gives up.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use proto::codec::{decode_object, parse_documents, to_json_pretty, to_yaml};
use proto::{DynamicObject, Reason};

use super::{server_error, single_target};
use crate::cli::EditArgs;
use crate::connection::Connection;
use crate::output::name_of;

const HEADER: &str = "# Please edit the object below. Lines beginning with a '#' will be ignored,
# and an empty file will abort the edit. If an error occurs while saving this file will be
# reopened with the relevant failures.
#
";

/// Removes a file when dropped, so an interrupted edit leaves nothing behind.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn editor() -> String {
    for var in ["KUBE_EDITOR", "EDITOR"] {
        if let Ok(editor) = std::env::var(var)
            && !editor.trim().is_empty()
        {
            return editor;
        }
    }
    "vi".to_string()
}

/// Runs the editor on `path` through the shell, so `EDITOR="code --wait"` works.
fn run_editor(path: &Path) -> Result<()> {
    let editor = editor();
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(path)
        .status()
        .with_context(|| format!("starting the editor \"{editor}\""))?;
    if !status.success() {
        anyhow::bail!("the editor \"{editor}\" failed ({status}); nothing was changed");
    }
    Ok(())
}

/// The file without comment lines, for comparing what the user changed.
fn without_comments(text: &str) -> String {
    text.lines().filter(|l| !l.trim_start().starts_with('#')).collect::<Vec<_>>().join("\n").trim().to_string()
}

pub async fn edit(connection: &Connection, args: &EditArgs) -> Result<()> {
    let (info, name) = single_target(&args.args)?;
    let json = match args.output.as_deref() {
        None | Some("yaml") => false,
        Some("json") => true,
        Some(other) => anyhow::bail!("--output for edit must be yaml or json, not \"{other}\""),
    };
    let namespace = connection.scoped(info);
    let live = DynamicObject::new(info, connection.client.get(info, &namespace, &name).await?);
    let value = live.to_json();
    let body = if json { format!("{}\n", to_json_pretty(&value)) } else { to_yaml(&value) };
    let original = without_comments(&body);
    let extension = if json { "json" } else { "yaml" };
    let path = std::env::temp_dir().join(format!("ctl-edit-{}-{name}.{extension}", std::process::id()));
    let guard = TempFile(path.clone());
    let mut contents = format!("{HEADER}{body}");
    let mut last_failed: Option<String> = None;
    loop {
        std::fs::write(&path, &contents).with_context(|| format!("writing {}", path.display()))?;
        run_editor(&path)?;
        let edited = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let stripped = without_comments(&edited);
        if stripped.is_empty() {
            println!("Edit cancelled, saved file was empty.");
            return Ok(());
        }
        if stripped == original {
            println!("Edit cancelled, no changes made.");
            return Ok(());
        }
        if last_failed.as_deref() == Some(stripped.as_str()) {
            let kept = std::env::temp_dir().join(format!("ctl-edit-{}-{name}-failed.{extension}", std::process::id()));
            let _ = std::fs::write(&kept, &edited);
            drop(guard);
            anyhow::bail!(
                "Edit cancelled, no valid changes were saved.\nA copy of your changes has been stored to \"{}\"",
                kept.display()
            );
        }
        let errors = match save(connection, info, &namespace, &name, &stripped).await {
            Ok(()) => {
                println!("{} edited", name_of(info, &name));
                return Ok(());
            }
            Err(errors) => errors,
        };
        eprintln!("error: {} \"{name}\" could not be saved; reopening", info.qualified_singular());
        let mut top = String::from(HEADER);
        top.push_str(&format!("# {} \"{name}\" was not valid:\n", info.qualified_plural()));
        for error in errors.lines() {
            top.push_str(&format!("# * {error}\n"));
        }
        top.push_str("#\n");
        contents = format!("{top}{stripped}\n");
        last_failed = Some(stripped);
    }
}

/// Decodes and writes the edited text; the error lines to show the user otherwise.
async fn save(
    connection: &Connection,
    info: &'static proto::KindInfo,
    namespace: &str,
    name: &str,
    text: &str,
) -> std::result::Result<(), String> {
    let mut documents = parse_documents(text).map_err(|e| e.to_string())?;
    if documents.len() != 1 {
        return Err("the file must hold exactly one object".to_string());
    }
    let object = decode_object(&documents.remove(0)).map_err(|e| e.to_string())?;
    if object.info != info {
        return Err(format!("the kind cannot be changed (it was {}, now {})", info.kind, object.info.kind));
    }
    let meta = object.metadata();
    if meta.name != name {
        return Err(format!("metadata.name cannot be changed (it was \"{name}\", now \"{}\")", meta.name));
    }
    match connection.client.update(info, namespace, object.bytes, false, false).await {
        Ok(_) => Ok(()),
        Err(e) if e.is(Reason::Invalid) && !e.causes().is_empty() => {
            Err(e.causes().iter().map(|c| format!("{}: {}", c.field, c.message)).collect::<Vec<_>>().join("\n"))
        }
        Err(e) => Err(server_error(&e)),
    }
}
