//! Unpacking one layer (a tar, maybe gzipped) into its own directory for use as an
//! overlayfs lower dir. OCI whiteouts become overlayfs ones: `.wh.<name>` a 0/0 character
//! device named `<name>`, `.wh..wh..opq` the `trusted.overlay.opaque` xattr on its
//! directory. The uncompressed stream is hashed on the way so the config's diff_id is
//! verified without a second read.

use std::ffi::{CString, OsStr};
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use flate2::read::GzDecoder;

use super::digest::{Digest, HashingReader};
use super::oci::Compression;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("layer entry {path:?}: {message}")]
    Entry { path: String, message: String },
    #[error("the uncompressed layer has digest {actual}, but the image config says {expected}")]
    DiffIdMismatch { expected: Digest, actual: Digest },
}

/// Unpacks the layer blob at `blob` into `dest` (which must not exist yet) and checks the
/// uncompressed stream against `diff_id`. On error `dest` may be left half-written: the
/// caller unpacks into a temporary directory and renames it when this succeeds.
pub fn unpack_layer(blob: &Path, compression: Compression, diff_id: &Digest, dest: &Path) -> Result<(), UnpackError> {
    fs::create_dir(dest)?;
    let file = BufReader::with_capacity(1 << 16, File::open(blob)?);
    let stream: Box<dyn Read> = match compression {
        Compression::None => Box::new(file),
        Compression::Gzip => Box::new(GzDecoder::new(file)),
    };
    let mut hashing = HashingReader::new(stream);
    unpack_tar(&mut hashing, dest)?;
    let (actual, _) = hashing.finish()?;
    if &actual != diff_id {
        return Err(UnpackError::DiffIdMismatch { expected: diff_id.clone(), actual });
    }
    Ok(())
}

fn unpack_tar(stream: &mut dyn Read, dest: &Path) -> Result<(), UnpackError> {
    let mut archive = tar::Archive::new(stream);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(true);
    archive.set_overwrite(true);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        let shown = path.display().to_string();
        let entry_error = |message: String| UnpackError::Entry { path: shown.clone(), message };
        let relative = clean_relative(&path).map_err(entry_error)?;
        let Some(file_name) = relative.file_name().map(OsStr::to_owned) else {
            continue; // the archive's root directory itself
        };
        let file_name = file_name.to_string_lossy();
        if let Some(target) = file_name.strip_prefix(WHITEOUT_PREFIX) {
            let parent = real_dir_in(dest, relative.parent().unwrap_or(Path::new(""))).map_err(entry_error)?;
            if file_name == OPAQUE_MARKER {
                set_opaque(&parent).map_err(|e| entry_error(format!("marking {} opaque: {e}", parent.display())))?;
            } else if target.is_empty() || target.starts_with(WHITEOUT_PREFIX) {
                return Err(entry_error("is a malformed whiteout".into()));
            } else {
                make_whiteout(&parent.join(target))
                    .map_err(|e| entry_error(format!("creating the whiteout device: {e}")))?;
            }
            continue;
        }
        // unpack_in refuses paths that escape `dest` (.., absolute symlink parents).
        entry.unpack_in(dest).map_err(|e| entry_error(e.to_string()))?;
    }
    Ok(())
}

/// `dest/relative` as a directory, created as needed, refusing any symlink on the way:
/// a symlink earlier in the layer must not steer a whiteout out of the layer.
fn real_dir_in(dest: &Path, relative: &Path) -> Result<PathBuf, String> {
    let mut dir = dest.to_path_buf();
    for part in relative.components() {
        dir.push(part);
        match fs::symlink_metadata(&dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Err(format!("{} is not a directory (a symlink or a file)", dir.display())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir(&dir).map_err(|e| e.to_string())?,
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(dir)
}

/// The entry's path relative to the layer root; `..` is refused.
fn clean_relative(path: &Path) -> Result<PathBuf, String> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir => return Err("has a '..' component".into()),
            Component::Prefix(_) => return Err("has a path prefix".into()),
        }
    }
    Ok(out)
}

/// overlayfs's whiteout: a character device with device number 0/0.
fn make_whiteout(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path)?,
        Ok(_) => fs::remove_file(path)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    nix::sys::stat::mknod(
        path,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::empty(),
        nix::sys::stat::makedev(0, 0),
    )
    .map_err(io::Error::from)
}

/// overlayfs's opaque directory: lower layers' entries under it are hidden.
fn set_opaque(dir: &Path) -> io::Result<()> {
    let path = CString::new(dir.as_os_str().as_bytes()).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let name = c"trusted.overlay.opaque";
    let value = b"y";
    // SAFETY: both strings are NUL-terminated and live across the call; value's length
    // is passed with it.
    let rc = unsafe { libc::lsetxattr(path.as_ptr(), name.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// Whether `path` is an overlayfs whiteout (used by tests and by image inspection).
pub fn is_whiteout(path: &Path) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_char_device() && m.rdev() == 0)
}

/// Whether `dir` carries the overlayfs opaque xattr.
pub fn is_opaque(dir: &Path) -> bool {
    let Ok(path) = CString::new(dir.as_os_str().as_bytes()) else { return false };
    let mut value = [0u8; 4];
    // SAFETY: NUL-terminated strings and a buffer whose length is passed with it.
    let n = unsafe {
        libc::lgetxattr(path.as_ptr(), c"trusted.overlay.opaque".as_ptr(), value.as_mut_ptr().cast(), value.len())
    };
    n == 1 && value[0] == b'y'
}
