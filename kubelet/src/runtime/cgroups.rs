//! cgroups for pods and containers, on cgroup v1 (one hierarchy per controller under
//! /sys/fs/cgroup/<controller>) and v2 (one unified tree), detected at start. A cgroup
//! is named by a relative path ("rudder/pod<uid>/<container-id>") that maps onto every
//! hierarchy used.

use std::path::{Path, PathBuf};

const ROOT: &str = "/sys/fs/cgroup";
const V1_CONTROLLERS: [&str; 3] = ["memory", "cpu", "pids"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// Limits written into one cgroup; None leaves the kernel's default (unlimited).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    /// Requested CPU in millicores -> cpu.shares / cpu.weight.
    pub cpu_request_milli: Option<i64>,
    /// CPU limit in millicores -> CFS quota per 100 ms period.
    pub cpu_limit_milli: Option<i64>,
    pub memory_bytes: Option<i64>,
    pub pids: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cgroup {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("no usable cgroup hierarchy under {ROOT}: neither cgroup v2 nor the v1 memory, cpu and pids controllers")]
    Unsupported,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io { path: path.display().to_string(), source }
}

#[derive(Debug, Clone)]
pub struct Cgroups {
    version: Version,
    root: PathBuf,
}

/// cpu.shares from millicores, as Kubernetes computes it (minimum 2).
pub fn shares(milli: i64) -> i64 {
    (milli * 1024 / 1000).max(2)
}

/// cgroup v2 cpu.weight from cpu.shares (the OCI conversion).
pub fn weight(shares: i64) -> i64 {
    1 + ((shares.clamp(2, 262_144) - 2) * 9999) / 262_142
}

const CFS_PERIOD_US: i64 = 100_000;

impl Cgroups {
    pub fn detect() -> Result<Cgroups, CgroupError> {
        Self::detect_at(Path::new(ROOT))
    }

    pub fn detect_at(root: &Path) -> Result<Cgroups, CgroupError> {
        if root.join("cgroup.controllers").is_file() {
            return Ok(Cgroups { version: Version::V2, root: root.to_path_buf() });
        }
        if V1_CONTROLLERS.iter().all(|c| root.join(c).join("cgroup.procs").is_file()) {
            return Ok(Cgroups { version: Version::V1, root: root.to_path_buf() });
        }
        Err(CgroupError::Unsupported)
    }

    pub fn version(&self) -> Version {
        self.version
    }

    /// Every directory that makes up the cgroup `name`.
    fn dirs(&self, name: &str) -> Vec<PathBuf> {
        match self.version {
            Version::V2 => vec![self.root.join(name)],
            Version::V1 => V1_CONTROLLERS.iter().map(|c| self.root.join(c).join(name)).collect(),
        }
    }

    /// The cgroup.procs files a process is written into to join `name`.
    pub fn procs_files(&self, name: &str) -> Vec<PathBuf> {
        self.dirs(name).into_iter().map(|d| d.join("cgroup.procs")).collect()
    }

    /// Creates `name` (and its parents) and writes its limits.
    pub fn create(&self, name: &str, limits: &Limits) -> Result<(), CgroupError> {
        if self.version == Version::V2 {
            self.enable_controllers(name)?;
        }
        for dir in self.dirs(name) {
            std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        }
        self.apply(name, limits)
    }

    /// v2 hands controllers down level by level through cgroup.subtree_control.
    fn enable_controllers(&self, name: &str) -> Result<(), CgroupError> {
        let mut dir = self.root.clone();
        for part in Path::new(name).components() {
            let control = dir.join("cgroup.subtree_control");
            for controller in ["+cpu", "+memory", "+pids"] {
                // A controller the kernel lacks (or one already on) is not fatal here;
                // writing its limit below reports what is missing.
                let _ = std::fs::write(&control, controller);
            }
            dir = dir.join(part);
            std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        }
        Ok(())
    }

    fn write(&self, dir: &Path, file: &str, value: &str) -> Result<(), CgroupError> {
        let path = dir.join(file);
        std::fs::write(&path, value).map_err(io(&path))
    }

    pub fn apply(&self, name: &str, limits: &Limits) -> Result<(), CgroupError> {
        match self.version {
            Version::V1 => {
                let cpu = self.root.join("cpu").join(name);
                if let Some(milli) = limits.cpu_request_milli {
                    self.write(&cpu, "cpu.shares", &shares(milli).to_string())?;
                }
                if let Some(milli) = limits.cpu_limit_milli {
                    self.write(&cpu, "cpu.cfs_period_us", &CFS_PERIOD_US.to_string())?;
                    let quota = (milli * CFS_PERIOD_US / 1000).max(1000);
                    self.write(&cpu, "cpu.cfs_quota_us", &quota.to_string())?;
                }
                if let Some(bytes) = limits.memory_bytes {
                    self.write(&self.root.join("memory").join(name), "memory.limit_in_bytes", &bytes.to_string())?;
                }
                if let Some(pids) = limits.pids {
                    self.write(&self.root.join("pids").join(name), "pids.max", &pids.to_string())?;
                }
            }
            Version::V2 => {
                let dir = self.root.join(name);
                if let Some(milli) = limits.cpu_request_milli {
                    self.write(&dir, "cpu.weight", &weight(shares(milli)).to_string())?;
                }
                if let Some(milli) = limits.cpu_limit_milli {
                    let quota = (milli * CFS_PERIOD_US / 1000).max(1000);
                    self.write(&dir, "cpu.max", &format!("{quota} {CFS_PERIOD_US}"))?;
                }
                if let Some(bytes) = limits.memory_bytes {
                    self.write(&dir, "memory.max", &bytes.to_string())?;
                    // Swap would let a container run past its limit instead of being killed.
                    let _ = self.write(&dir, "memory.swap.max", "0");
                }
                if let Some(pids) = limits.pids {
                    self.write(&dir, "pids.max", &pids.to_string())?;
                }
            }
        }
        Ok(())
    }

    /// How many processes the kernel's OOM killer has killed in `name`.
    pub fn oom_kills(&self, name: &str) -> u64 {
        let (path, key) = match self.version {
            Version::V1 => (self.root.join("memory").join(name).join("memory.oom_control"), "oom_kill"),
            Version::V2 => (self.root.join(name).join("memory.events"), "oom_kill"),
        };
        std::fs::read_to_string(path)
            .ok()
            .and_then(|text| text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok()))
            .unwrap_or(0)
    }

    /// The processes in `name` (and, on v1, its memory hierarchy's view of them).
    pub fn pids(&self, name: &str) -> Vec<i32> {
        let mut pids: Vec<i32> = self
            .procs_files(name)
            .iter()
            .filter_map(|f| std::fs::read_to_string(f).ok())
            .flat_map(|text| text.lines().filter_map(|l| l.trim().parse().ok()).collect::<Vec<i32>>())
            .collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// SIGKILLs everything in `name` and below.
    pub fn kill_all(&self, name: &str) {
        for dir in self.dirs(name) {
            kill_tree(&dir);
        }
    }

    /// Removes `name` and everything below it (deepest first). Fails while processes remain.
    pub fn remove(&self, name: &str) -> Result<(), CgroupError> {
        for dir in self.dirs(name) {
            remove_tree(&dir)?;
        }
        Ok(())
    }
}

fn kill_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                kill_tree(&entry.path());
            }
        }
    }
    if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        for pid in text.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

fn remove_tree(dir: &Path) -> Result<(), CgroupError> {
    if !dir.exists() {
        return Ok(());
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_tree(&entry.path())?;
            }
        }
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CgroupError::Io { path: dir.display().to_string(), source: e }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_conversions_match_kubernetes() {
        assert_eq!(shares(100), 102);
        assert_eq!(shares(1), 2);
        assert_eq!(shares(1000), 1024);
        assert_eq!(weight(2), 1);
        assert_eq!(weight(1024), 39);
        assert_eq!(weight(262_144), 10_000);
    }

    #[test]
    fn a_cgroup_is_made_limited_and_removed() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let cgroups = Cgroups::detect().unwrap();
        let name = format!("rudder-unit-{}/c1", std::process::id());
        let limits = Limits {
            cpu_request_milli: Some(250),
            cpu_limit_milli: Some(500),
            memory_bytes: Some(64 << 20),
            pids: Some(50),
        };
        cgroups.create(&name, &limits).unwrap();
        assert!(cgroups.pids(&name).is_empty());
        assert_eq!(cgroups.oom_kills(&name), 0);
        cgroups.remove(&format!("rudder-unit-{}", std::process::id())).unwrap();
        assert!(cgroups.procs_files(&name).iter().all(|f| !f.exists()));
    }
}
