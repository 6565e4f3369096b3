//! Reading manifests: files, directories (optionally recursive) and standard input,
//! each holding one or more YAML or JSON documents.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use proto::DynamicObject;
use proto::codec::{decode_object, parse_documents};

/// One decoded document and where it came from, for messages.
pub struct Manifest {
    pub source: String,
    pub object: DynamicObject,
}

/// Reads and decodes every document of every file; any error stops before anything is
/// sent, so a bad file never leaves half its objects applied.
pub fn read_all(paths: &[PathBuf], recursive: bool) -> Result<Vec<Manifest>> {
    let mut files = Vec::new();
    for path in paths {
        collect(path, recursive, true, &mut files)?;
    }
    let mut manifests = Vec::new();
    let mut errors = Vec::new();
    for file in files {
        let (source, text) = if file.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).context("reading standard input")?;
            ("<stdin>".to_string(), text)
        } else {
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            (file.display().to_string(), text)
        };
        let documents = match parse_documents(&text) {
            Ok(documents) => documents,
            Err(e) => {
                errors.push(format!("{source}: {e}"));
                continue;
            }
        };
        for (index, document) in documents.iter().enumerate() {
            match decode_object(document) {
                Ok(object) => manifests.push(Manifest { source: source.clone(), object }),
                Err(e) => {
                    let name = document.pointer("/metadata/name").and_then(|n| n.as_str()).unwrap_or("");
                    let what = if name.is_empty() { format!("document {}", index + 1) } else { format!("\"{name}\"") };
                    errors.push(format!("{source}: {what}: {e}"));
                }
            }
        }
    }
    if !errors.is_empty() {
        bail!("{}\nnothing was sent to the server", errors.join("\n"));
    }
    if manifests.is_empty() {
        bail!("no objects passed to the command (are the files empty?)");
    }
    Ok(manifests)
}

fn collect(path: &Path, recursive: bool, top: bool, files: &mut Vec<PathBuf>) -> Result<()> {
    if path.as_os_str() == "-" {
        files.push(path.to_path_buf());
        return Ok(());
    }
    let metadata =
        std::fs::metadata(path).with_context(|| format!("the path \"{}\" does not exist", path.display()))?;
    if metadata.is_dir() {
        if !top && !recursive {
            return Ok(());
        }
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("reading directory {}", path.display()))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for entry in entries {
            let is_manifest =
                entry.is_dir() || matches!(entry.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json"));
            if is_manifest {
                collect(&entry, recursive, false, files)?;
            }
        }
    } else {
        files.push(path.to_path_buf());
    }
    Ok(())
}
