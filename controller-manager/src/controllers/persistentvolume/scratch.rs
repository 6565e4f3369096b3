//! The data side of reclaiming a hostPath volume. Like Kubernetes' hostPath
//! deleter, this is for development and tests only: the controller-manager
//! touches a directory only when it lies beneath /tmp (and so is scratch space by
//! definition), and only on the host it runs on, which in a one-host cluster is
//! the node's. Anything else is left alone.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

const SCRATCH_ROOT: &str = "/tmp";

#[derive(Debug)]
pub enum ScratchError {
    /// The path is not a directory beneath /tmp, so it may hold real data.
    NotScratch {
        path: String,
        why: &'static str,
    },
    Io {
        path: PathBuf,
        error: io::Error,
    },
}

impl fmt::Display for ScratchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScratchError::NotScratch { path, why } => {
                write!(
                    f,
                    "hostPath {path:?} is not scratch space ({why}); only directories beneath /tmp/ are reclaimed"
                )
            }
            ScratchError::Io { path, error } => write!(f, "{}: {error}", path.display()),
        }
    }
}

impl std::error::Error for ScratchError {}

/// The path, checked to be a directory strictly beneath /tmp: absolute, without
/// `.` or `..`, and — should it exist — still beneath /tmp once symlinks are
/// resolved, so a link cannot lead the wipe elsewhere.
pub fn scratch_dir(path: &str) -> Result<PathBuf, ScratchError> {
    let not = |why| ScratchError::NotScratch { path: path.to_string(), why };
    let candidate = Path::new(path);
    if !candidate.is_absolute() {
        return Err(not("not an absolute path"));
    }
    // By segment of the text: Path::components quietly drops interior `.`.
    if path.split('/').any(|segment| segment == "." || segment == "..") {
        return Err(not("it contains . or .."));
    }
    let beneath = |p: &Path| p.strip_prefix(SCRATCH_ROOT).is_ok_and(|rest| rest.components().next().is_some());
    if !beneath(candidate) {
        return Err(not("not beneath /tmp/"));
    }
    match candidate.canonicalize() {
        Ok(real) if beneath(&real) => Ok(real),
        Ok(_) => Err(not("a symlink leads outside /tmp/")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(candidate.to_path_buf()),
        Err(error) => Err(ScratchError::Io { path: candidate.to_path_buf(), error }),
    }
}

/// Removes the directory and everything in it (the Delete policy). A directory
/// that is already gone is fine.
pub fn remove(path: &str) -> Result<(), ScratchError> {
    let dir = scratch_dir(path)?;
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(ScratchError::Io { path: dir, error }),
    }
}

/// Empties the directory but keeps it (the Recycle policy: `rm -rf dir/*`, dot
/// files included). Symlinks inside are removed, never followed.
pub fn wipe(path: &str) -> Result<(), ScratchError> {
    let dir = scratch_dir(path)?;
    let io_error = |path: &Path, error| ScratchError::Io { path: path.to_path_buf(), error };
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error(&dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io_error(&dir, e))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| io_error(&path, e))?;
        let removed = if kind.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        match removed {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(&path, e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> tempfile::TempDir {
        tempfile::Builder::new().prefix("pv-scratch-").tempdir_in(SCRATCH_ROOT).unwrap()
    }

    #[test]
    fn only_directories_beneath_tmp_are_scratch() {
        for path in ["/tmp", "/tmp/", "/var/lib/data", "tmp/x", "/tmp/../etc", "/tmp/./x", "/tmpfoo/x"] {
            assert!(matches!(scratch_dir(path), Err(ScratchError::NotScratch { .. })), "{path} must be refused");
        }
        assert!(scratch_dir("/tmp/does-not-exist-pv-scratch").is_ok(), "a missing directory is nothing to fear");
        let dir = scratch();
        let link = dir.path().join("escape");
        std::os::unix::fs::symlink("/etc", &link).unwrap();
        let error = scratch_dir(link.to_str().unwrap()).unwrap_err();
        assert!(error.to_string().contains("symlink"), "{error}");
    }

    #[test]
    fn wipe_empties_and_remove_deletes() {
        let outside = scratch();
        std::fs::write(outside.path().join("keep"), "x").unwrap();
        let dir = scratch();
        std::fs::create_dir_all(dir.path().join("sub/deeper")).unwrap();
        std::fs::write(dir.path().join("sub/deeper/file"), "data").unwrap();
        std::fs::write(dir.path().join(".hidden"), "data").unwrap();
        // A link to data elsewhere goes; the data it points at stays.
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();
        let path = dir.path().to_str().unwrap().to_string();
        wipe(&path).unwrap();
        assert!(dir.path().is_dir(), "recycling keeps the directory");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert!(outside.path().join("keep").exists());
        remove(&path).unwrap();
        assert!(!dir.path().exists());
        remove(&path).unwrap();
        wipe(&path).unwrap();
    }
}
