//! cgroups for pods and containers, on cgroup v1 (one hierarchy per controller under
//! /sys/fs/cgroup/<controller>) and v2 (one unified tree), detected at start. A cgroup
//! is named by a relative path ("rudder/pod<uid>/<container-id>") that maps onto every
//! hierarchy used.
//!
//! On v2 two kernel rules shape the tree: a cgroup only gets a controller's files
//! (memory.max, ...) when its parent lists the controller in cgroup.subtree_control,
//! and a non-root cgroup that hands controllers down may hold no processes itself (the
//! "no internal processes" rule). A pod's cgroup holds its pause process *and* hands
//! controllers to its containers' cgroups, so on v2 the processes of every cgroup
//! `name` live in its leaf child `name/leaf` (not a container name: those always
//! carry an `_<attempt>` suffix). Limits are written on `name`, so they cover the leaf.

use std::path::{Path, PathBuf};

const ROOT: &str = "/sys/fs/cgroup";
const V1_CONTROLLERS: [&str; 3] = ["memory", "cpu", "pids"];
/// The v2 controllers the kubelet needs (the root's cgroup.controllers must list them).
const V2_CONTROLLERS: [&str; 3] = ["cpu", "memory", "pids"];
/// On v2, the child of a cgroup that holds its processes.
const V2_LEAF: &str = "leaf";

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
    #[error(
        "cgroup v2 at {root} lacks the {missing} controller(s) (its cgroup.controllers lists {available:?}); enable them in the kernel or boot with cgroup v1"
    )]
    MissingControllers { root: String, missing: String, available: String },
    #[error(
        "cgroup {path}: enabling {controllers}: {source} (cgroup v2 lets a cgroup hand controllers down only while it holds no processes: choose a --cgroup-parent no process runs in)"
    )]
    EnableControllers { path: String, controllers: String, source: std::io::Error },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io { path: path.display().to_string(), source }
}

#[derive(Debug, Clone)]
pub struct Cgroups {
    version: Version,
    root: PathBuf,
}

const MIN_SHARES: i64 = 2;
const MAX_SHARES: i64 = 262_144;

/// cpu.shares from millicores, as Kubernetes computes it (MilliCPUToShares: 2 to 262144).
pub fn shares(milli: i64) -> i64 {
    (milli.saturating_mul(1024) / 1000).clamp(MIN_SHARES, MAX_SHARES)
}

/// cgroup v2 cpu.weight (1 to 10000) from cpu.shares, as Kubernetes and the OCI
/// runtimes convert: 1 + ((shares - 2) * 9999) / 262142.
pub fn weight(shares: i64) -> i64 {
    1 + ((shares.clamp(MIN_SHARES, MAX_SHARES) - MIN_SHARES) * 9999) / (MAX_SHARES - MIN_SHARES)
}

const CFS_PERIOD_US: i64 = 100_000;
/// The smallest quota the kernel accepts (1 ms), as Kubernetes' MinQuotaPeriod.
const MIN_QUOTA_US: i64 = 1000;

/// The CFS quota per 100 ms period for a CPU limit in millicores (MilliCPUToQuota).
pub fn quota(milli: i64) -> i64 {
    (milli.saturating_mul(CFS_PERIOD_US) / 1000).max(MIN_QUOTA_US)
}

/// The v2 cpu.max line: "<quota> <period>" in microseconds.
pub fn cpu_max(milli: i64) -> String {
    format!("{} {CFS_PERIOD_US}", quota(milli))
}

impl Cgroups {
    pub fn detect() -> Result<Cgroups, CgroupError> {
        Self::detect_at(Path::new(ROOT))
    }

    pub fn detect_at(root: &Path) -> Result<Cgroups, CgroupError> {
        let controllers = root.join("cgroup.controllers");
        if controllers.is_file() {
            let available = std::fs::read_to_string(&controllers).map_err(io(&controllers))?;
            let listed: Vec<&str> = available.split_whitespace().collect();
            let missing: Vec<&str> = V2_CONTROLLERS.iter().copied().filter(|c| !listed.contains(c)).collect();
            if !missing.is_empty() {
                return Err(CgroupError::MissingControllers {
                    root: root.display().to_string(),
                    missing: missing.join(", "),
                    available: available.trim().to_string(),
                });
            }
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

    /// The directories whose cgroup.procs a process is written into to join `name`
    /// (on v2 its leaf: see the module's comment).
    fn member_dirs(&self, name: &str) -> Vec<PathBuf> {
        match self.version {
            Version::V2 => vec![self.root.join(name).join(V2_LEAF)],
            Version::V1 => self.dirs(name),
        }
    }

    /// The cgroup.procs files a process is written into to join `name`.
    pub fn procs_files(&self, name: &str) -> Vec<PathBuf> {
        self.member_dirs(name).into_iter().map(|d| d.join("cgroup.procs")).collect()
    }

    /// Creates `name` (and its parents) and writes its limits.
    pub fn create(&self, name: &str, limits: &Limits) -> Result<(), CgroupError> {
        if self.version == Version::V2 {
            self.enable_controllers(name)?;
        }
        for dir in self.member_dirs(name) {
            std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        }
        self.apply(name, limits)
    }

    /// v2 hands controllers down level by level: every ancestor of `name` (the root
    /// included) lists them in its cgroup.subtree_control, so that `name` gets their
    /// files. `name`'s own subtree_control is left alone: its leaf needs none.
    fn enable_controllers(&self, name: &str) -> Result<(), CgroupError> {
        let wanted: Vec<String> = V2_CONTROLLERS.iter().map(|c| format!("+{c}")).collect();
        let line = wanted.join(" ");
        let mut dir = self.root.clone();
        for part in Path::new(name).components() {
            let control = dir.join("cgroup.subtree_control");
            // Already on (the usual case after the first pod): no write. One write for
            // all of them: the kernel applies a line all or nothing.
            let enabled = std::fs::read_to_string(&control).unwrap_or_default();
            let on: Vec<&str> = enabled.split_whitespace().collect();
            if !V2_CONTROLLERS.iter().all(|c| on.contains(c)) {
                std::fs::write(&control, &line).map_err(|source| CgroupError::EnableControllers {
                    path: control.display().to_string(),
                    controllers: line.clone(),
                    source,
                })?;
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
                    self.write(&cpu, "cpu.cfs_quota_us", &quota(milli).to_string())?;
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
                    self.write(&dir, "cpu.max", &cpu_max(milli))?;
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

    /// How many processes the kernel's OOM killer has killed in `name` (on v2,
    /// memory.events counts its whole subtree, the leaf included).
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
            // v2 (Linux 5.14+) kills a whole subtree at once, racing no fork; the walk
            // below covers older kernels and v1.
            let kill = dir.join("cgroup.kill");
            if self.version == Version::V2 && kill.is_file() {
                let _ = std::fs::write(&kill, "1");
            }
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
        assert_eq!(shares(0), 2);
        assert_eq!(shares(1000), 1024);
        assert_eq!(shares(256_000), 262_144);
        assert_eq!(shares(1_000_000), 262_144, "capped at the kernel's maximum");
        assert_eq!(weight(2), 1);
        assert_eq!(weight(1024), 39);
        assert_eq!(weight(262_144), 10_000);
        // 1 + ((102 - 2) * 9999) / 262142, integer division.
        assert_eq!(weight(102), 4);
        assert_eq!(weight(shares(250)), 1 + (254 * 9999) / 262_142);
        assert_eq!(weight(0), 1, "below the minimum share counts as the minimum");
        assert_eq!(quota(500), 50_000);
        assert_eq!(quota(1), 1000, "at least the kernel's 1 ms");
        assert_eq!(quota(2500), 250_000);
        assert_eq!(cpu_max(500), "50000 100000");
    }

    /// A fake cgroup2 root: a directory with the root's cgroup.controllers.
    fn fake_v2(controllers: &str) -> (tempfile::TempDir, Cgroups) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cgroup.controllers"), controllers).unwrap();
        let cgroups = Cgroups::detect_at(dir.path()).unwrap();
        (dir, cgroups)
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn v2_limits_go_into_the_unified_files() {
        let (dir, cgroups) = fake_v2("cpuset cpu io memory hugetlb pids rdma misc\n");
        assert_eq!(cgroups.version(), Version::V2);
        let limits = Limits {
            cpu_request_milli: Some(250),
            cpu_limit_milli: Some(1500),
            memory_bytes: Some(64 << 20),
            pids: Some(100),
        };
        cgroups.create("rudder/podX", &limits).unwrap();
        let pod = dir.path().join("rudder/podX");
        assert_eq!(read(&pod.join("cpu.weight")), weight(shares(250)).to_string());
        assert_eq!(read(&pod.join("cpu.max")), "150000 100000");
        assert_eq!(read(&pod.join("memory.max")), (64u64 << 20).to_string());
        assert_eq!(read(&pod.join("memory.swap.max")), "0");
        assert_eq!(read(&pod.join("pids.max")), "100");
        // No limit, no file: the kernel's default ("max") stays.
        cgroups.create("rudder/podY", &Limits::default()).unwrap();
        for file in ["cpu.weight", "cpu.max", "memory.max", "pids.max"] {
            assert!(!dir.path().join("rudder/podY").join(file).exists(), "{file} written without a limit");
        }
    }

    #[test]
    fn v2_hands_controllers_down_to_every_level_and_keeps_processes_in_leaves() {
        let (dir, cgroups) = fake_v2("cpu memory pids");
        cgroups.create("rudder/podX", &Limits::default()).unwrap();
        cgroups.create("rudder/podX/main_0", &Limits { memory_bytes: Some(1 << 20), ..Default::default() }).unwrap();
        let root = dir.path();
        for parent in [root.to_path_buf(), root.join("rudder"), root.join("rudder/podX")] {
            assert_eq!(read(&parent.join("cgroup.subtree_control")), "+cpu +memory +pids", "{}", parent.display());
        }
        // The cgroup a process joins hands nothing down: the leaf.
        assert!(!root.join("rudder/podX/main_0/cgroup.subtree_control").exists());
        assert_eq!(cgroups.procs_files("rudder/podX"), vec![root.join("rudder/podX/leaf/cgroup.procs")]);
        assert_eq!(cgroups.procs_files("rudder/podX/main_0"), vec![root.join("rudder/podX/main_0/leaf/cgroup.procs")]);
        assert!(root.join("rudder/podX/leaf").is_dir() && root.join("rudder/podX/main_0/leaf").is_dir());
        // Limits sit on the cgroup itself, above its leaf.
        assert_eq!(read(&root.join("rudder/podX/main_0/memory.max")), "1048576");
        assert!(!root.join("rudder/podX/main_0/leaf/memory.max").exists());
    }

    #[test]
    fn v2_leaves_enabled_controllers_alone() {
        let (dir, cgroups) = fake_v2("cpu memory pids");
        // As the kernel shows them once on: without "+".
        std::fs::write(dir.path().join("cgroup.subtree_control"), "cpu io memory pids\n").unwrap();
        cgroups.create("rudder", &Limits::default()).unwrap();
        assert_eq!(read(&dir.path().join("cgroup.subtree_control")), "cpu io memory pids\n");
    }

    #[test]
    fn v2_without_a_needed_controller_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cgroup.controllers"), "cpuset io pids\n").unwrap();
        let e = Cgroups::detect_at(dir.path()).unwrap_err().to_string();
        assert!(e.contains("cpu, memory") && e.contains("cpuset io pids"), "{e}");
    }

    #[test]
    fn oom_kills_are_read_from_memory_events_on_v2_and_oom_control_on_v1() {
        let (dir, cgroups) = fake_v2("cpu memory pids");
        cgroups.create("rudder/podX/main_0", &Limits::default()).unwrap();
        let events = "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 0\n";
        std::fs::write(dir.path().join("rudder/podX/main_0/memory.events"), events).unwrap();
        assert_eq!(cgroups.oom_kills("rudder/podX/main_0"), 2);
        assert_eq!(cgroups.oom_kills("rudder/podX/gone_1"), 0, "no file, no kills");

        let v1 = tempfile::tempdir().unwrap();
        for c in V1_CONTROLLERS {
            std::fs::create_dir_all(v1.path().join(c)).unwrap();
            std::fs::write(v1.path().join(c).join("cgroup.procs"), "").unwrap();
        }
        let cgroups = Cgroups::detect_at(v1.path()).unwrap();
        assert_eq!(cgroups.version(), Version::V1);
        let limits = Limits {
            cpu_request_milli: Some(100),
            cpu_limit_milli: Some(200),
            memory_bytes: Some(32 << 20),
            pids: Some(10),
        };
        cgroups.create("rudder/podX/main_0", &limits).unwrap();
        let at = |c: &str, f: &str| read(&v1.path().join(c).join("rudder/podX/main_0").join(f));
        assert_eq!(at("cpu", "cpu.shares"), "102");
        assert_eq!(at("cpu", "cpu.cfs_period_us"), "100000");
        assert_eq!(at("cpu", "cpu.cfs_quota_us"), "20000");
        assert_eq!(at("memory", "memory.limit_in_bytes"), (32u64 << 20).to_string());
        assert_eq!(at("pids", "pids.max"), "10");
        // v1 has no leaf: a process joins the cgroup itself, in every hierarchy.
        assert_eq!(cgroups.procs_files("rudder/podX").len(), 3);
        assert!(cgroups.procs_files("rudder/podX").iter().all(|p| p.ends_with("rudder/podX/cgroup.procs")));
        let control = v1.path().join("memory/rudder/podX/main_0/memory.oom_control");
        std::fs::write(control, "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n").unwrap();
        assert_eq!(cgroups.oom_kills("rudder/podX/main_0"), 1);
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
