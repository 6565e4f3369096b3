//! NFS volumes (inline `nfs:` and PersistentVolumes with `spec.nfs`): the export is
//! mounted once per pod under the pod's volume directory, through the node's NFS
//! client (`mount.nfs`, from Debian's nfs-common), as the kubelet does in Kubernetes.
//! A node without the client gets a clear error instead of a half-made volume.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{VolumeError, invalid, io, is_mount_point};

/// Where distributions install the NFS mount helper.
pub const HELPERS: [&str; 2] = ["/sbin/mount.nfs", "/usr/sbin/mount.nfs"];

/// A mount that has not finished by then has a server that does not answer; the
/// pod worker retries the whole setup later.
const MOUNT_TIMEOUT: Duration = Duration::from_secs(60);

/// One export to mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export<'a> {
    pub server: &'a str,
    pub path: &'a str,
    pub read_only: bool,
    /// A PersistentVolume's `spec.mountOptions` ("nfsvers=4.1", "hard", ...).
    pub options: &'a [String],
}

/// The first mount helper of `candidates` that exists.
pub fn find_helper<P: AsRef<Path>>(candidates: &[P]) -> Option<PathBuf> {
    candidates.iter().map(|p| p.as_ref().to_path_buf()).find(|p| p.is_file())
}

/// The `mount` arguments that mount `export` on `target`; checks what the API
/// server does not (an absolute export path, a server without spaces).
pub fn mount_args(volume: &str, export: &Export<'_>, target: &Path) -> Result<Vec<String>, VolumeError> {
    let server = export.server.trim();
    if server.is_empty() || server.contains(char::is_whitespace) {
        return Err(invalid(volume, format!("nfs.server {:?} must be a host name or address", export.server)));
    }
    if !export.path.starts_with('/') {
        return Err(invalid(volume, format!("nfs.path {:?} must be an absolute path on the server", export.path)));
    }
    // An IPv6 server goes in brackets, as mount.nfs expects.
    let host = if server.contains(':') && !server.starts_with('[') { format!("[{server}]") } else { server.into() };
    let mut options: Vec<String> =
        export.options.iter().map(|o| o.trim().to_string()).filter(|o| !o.is_empty()).collect();
    if export.read_only {
        options.push("ro".into());
    }
    let mut args = vec!["-t".to_string(), "nfs".to_string()];
    if !options.is_empty() {
        args.push("-o".into());
        args.push(options.join(","));
    }
    args.push(format!("{host}:{}", export.path));
    args.push(target.display().to_string());
    Ok(args)
}

/// Mounts `export` on `target` unless it is mounted already (the pod worker sets
/// volumes up again on every refresh, and after a kubelet restart).
pub async fn mount(volume: &str, export: &Export<'_>, target: &Path) -> Result<(), VolumeError> {
    let args = mount_args(volume, export, target)?;
    if is_mount_point(target) {
        return Ok(());
    }
    if find_helper(&HELPERS).is_none() {
        return Err(invalid(
            volume,
            format!(
                "cannot mount NFS export {}:{}: this node has no NFS client (install Debian's nfs-common package, which provides {})",
                export.server, export.path, HELPERS[0]
            ),
        ));
    }
    std::fs::create_dir_all(target).map_err(io(volume))?;
    let child = tokio::process::Command::new("mount")
        .args(&args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = match tokio::time::timeout(MOUNT_TIMEOUT, child).await {
        Ok(result) => result.map_err(|e| invalid(volume, format!("running mount: {e}")))?,
        Err(_) => {
            return Err(invalid(
                volume,
                format!(
                    "mounting NFS export {}:{} did not finish within {}s: is the server reachable from this node?",
                    export.server,
                    export.path,
                    MOUNT_TIMEOUT.as_secs()
                ),
            ));
        }
    };
    if !output.status.success() {
        return Err(invalid(
            volume,
            format!(
                "mounting NFS export {}:{} failed ({}): {}",
                export.server,
                export.path,
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn export<'a>(server: &'a str, path: &'a str, read_only: bool, options: &'a [String]) -> Export<'a> {
        Export { server, path, read_only, options }
    }

    #[test]
    fn mount_arguments_carry_the_export_read_only_and_the_volumes_options() {
        let target = Path::new("/var/lib/kubelet/pods/u/nfs/data");
        let args = mount_args("data", &export("nfs.example", "/exports/a", false, &[]), target).unwrap();
        assert_eq!(args, ["-t", "nfs", "nfs.example:/exports/a", "/var/lib/kubelet/pods/u/nfs/data"]);
        let options = vec!["nfsvers=4.1".to_string(), " hard ".to_string()];
        let args = mount_args("data", &export("fd00::5", "/x", true, &options), target).unwrap();
        assert_eq!(
            args,
            ["-t", "nfs", "-o", "nfsvers=4.1,hard,ro", "[fd00::5]:/x", "/var/lib/kubelet/pods/u/nfs/data"]
        );
    }

    #[test]
    fn a_relative_path_or_an_empty_server_is_refused_with_the_field() {
        let target = Path::new("/t");
        let error = mount_args("data", &export("srv", "exports", false, &[]), target).unwrap_err().to_string();
        assert_eq!(error, "volume data: nfs.path \"exports\" must be an absolute path on the server");
        let error = mount_args("data", &export(" ", "/e", false, &[]), target).unwrap_err().to_string();
        assert!(error.contains("nfs.server \" \" must be a host name or address"), "{error}");
    }

    #[test]
    fn the_first_existing_helper_is_used() {
        let dir = std::env::temp_dir().join(format!("kubelet-nfs-helper-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let present = dir.join("mount.nfs");
        std::fs::write(&present, "").unwrap();
        let absent = dir.join("missing/mount.nfs");
        assert_eq!(find_helper(&[&absent, &present]), Some(present.clone()));
        assert_eq!(find_helper(&[&absent]), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
