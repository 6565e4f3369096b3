//! Reading manifests: files, directories (optionally recursive) and standard input,
//! each holding one or more YAML or JSON documents, decoded strictly.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use proto::codec::{decode_object, parse_documents};
use proto::{DecodeError, DynamicObject};

/// One decoded document and where it came from, for messages.
pub struct Manifest {
    pub source: String,
    pub object: DynamicObject,
}

/// One document of a file: decoded, or why it could not be.
pub type Document = std::result::Result<Manifest, String>;

/// Reads and decodes every document of every file, in order. A file that cannot be
/// read or parsed is one failed entry; so is each document that does not decode.
/// A path that does not exist is an error of the whole call.
pub fn read_documents(paths: &[PathBuf], recursive: bool) -> Result<Vec<Document>> {
    let mut files = Vec::new();
    for path in paths {
        collect(path, recursive, true, &mut files)?;
    }
    let mut documents_out = Vec::new();
    for file in files {
        let (source, text) = if file.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).context("reading standard input")?;
            ("<stdin>".to_string(), text)
        } else {
            match std::fs::read_to_string(&file) {
                Ok(text) => (file.display().to_string(), text),
                Err(e) => {
                    documents_out.push(Err(format!("reading {}: {e}", file.display())));
                    continue;
                }
            }
        };
        let documents = match parse_documents(&text) {
            Ok(documents) => documents,
            Err(e) => {
                documents_out.push(Err(format!("error parsing {source}: {e}")));
                continue;
            }
        };
        for (index, document) in documents.iter().enumerate() {
            documents_out.push(match decode_object(document) {
                Ok(object) => Ok(Manifest { source: source.clone(), object }),
                Err(e) => {
                    let name = document.pointer("/metadata/name").and_then(|n| n.as_str()).unwrap_or("");
                    let kind = document.pointer("/kind").and_then(|n| n.as_str()).unwrap_or("");
                    let what =
                        if name.is_empty() { format!("document {}", index + 1) } else { format!("{kind} \"{name}\"") };
                    let why = match e {
                        DecodeError::Fields(_) => format!("strict decoding error: {e}"),
                        _ => e.to_string(),
                    };
                    Err(format!("error decoding {source}: {what}: {why}"))
                }
            });
        }
    }
    if documents_out.is_empty() {
        bail!("no objects passed to the command (are the files empty?)");
    }
    Ok(documents_out)
}

/// Every document decoded, or an error listing each that did not: for verbs (delete)
/// that must not act on half a file.
pub fn read_all(paths: &[PathBuf], recursive: bool) -> Result<Vec<Manifest>> {
    let mut manifests = Vec::new();
    let mut errors = Vec::new();
    for document in read_documents(paths, recursive)? {
        match document {
            Ok(manifest) => manifests.push(manifest),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        bail!("{}\nnothing was sent to the server", errors.join("\n"));
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
