//! Running the `nft` tool: one `nft -f -` per transaction, so the kernel applies the
//! whole text or none of it.

use std::process::Stdio;

use tokio::io::AsyncWriteExt as _;
use tokio::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("cannot run nft: {0} (install Debian's nftables package, and run kube-proxy as root)")]
    Spawn(std::io::Error),
    #[error("nft refused the transaction ({status}): {stderr}")]
    Refused { status: std::process::ExitStatus, stderr: String },
}

/// Applies `text` as one transaction.
pub async fn apply(text: &str) -> Result<(), NftError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(NftError::Spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(text.as_bytes()).await.map_err(NftError::Spawn)?;
        // Dropping stdin closes it, which ends nft's input.
    }
    let output = child.wait_with_output().await.map_err(NftError::Spawn)?;
    if output.status.success() {
        return Ok(());
    }
    let mut stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    // A refused 10,000-service transaction quotes much of itself; keep the start.
    if stderr.len() > 4000 {
        let cut = (0..=4000).rev().find(|i| stderr.is_char_boundary(*i)).unwrap_or(0);
        stderr.truncate(cut);
        stderr.push_str("...");
    }
    Err(NftError::Refused { status: output.status, stderr })
}

/// Whether the `ip` table `name` exists.
pub async fn table_exists(name: &str) -> Result<bool, NftError> {
    let output = Command::new("nft").args(["list", "tables", "ip"]).output().await.map_err(NftError::Spawn)?;
    if !output.status.success() {
        return Err(NftError::Refused {
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    let wanted = format!("table ip {name}");
    Ok(String::from_utf8_lossy(&output.stdout).lines().any(|line| line.trim() == wanted))
}
