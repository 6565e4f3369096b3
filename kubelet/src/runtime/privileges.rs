//! What a container's processes may do beyond their user id: the capabilities they
//! can hold (the bounding set: containerd's default set, changed by
//! `securityContext.capabilities` add and drop, every one when `privileged`),
//! no_new_privs (`allowPrivilegeEscalation: false`), a read-only root filesystem
//! (`readOnlyRootFilesystem`) and the system calls it may make (`seccompProfile`
//! RuntimeDefault, see `seccomp`; Unconfined, the default, filters nothing). The kubelet computes them from the pod; the helper
//! applies them in the container's process (and in each exec'd one) before it execs.
//!
//! Root in a container gets the bounding set as its capabilities; another user gets
//! none but what a file's capabilities grant within that set, as with containerd.

use serde::{Deserialize, Serialize};

use proto::core::v1::{SeccompProfile, SecurityContext};

/// The kernel's capability names and numbers (linux/capability.h).
const NAMES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// containerd's (and Docker's) default capabilities.
const DEFAULT: [&str; 14] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

const SYS_ADMIN: u32 = 21;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Privileges {
    /// The capabilities kept, by number, ascending; None: all of them (privileged).
    pub capabilities: Option<Vec<u32>>,
    pub no_new_privs: bool,
    pub read_only_root: bool,
    /// The RuntimeDefault seccomp filter.
    #[serde(default)]
    pub seccomp: bool,
}

fn number(name: &str) -> Result<u32, String> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    NAMES.iter().position(|n| *n == bare).map(|i| i as u32).ok_or_else(|| {
        format!("securityContext.capabilities: {name:?} is not a Linux capability (write NET_ADMIN or CAP_NET_ADMIN, or ALL)")
    })
}

fn is_all(name: &str) -> bool {
    name.trim().eq_ignore_ascii_case("ALL")
}

impl Privileges {
    /// A container's privileges from its securityContext (and the pod's seccomp
    /// profile, which the container's overrides), checked as the apiserver in
    /// Kubernetes checks them.
    pub fn for_container(
        context: Option<&SecurityContext>,
        pod_seccomp: Option<&SeccompProfile>,
    ) -> Result<Privileges, String> {
        let default = SecurityContext::default();
        let context = context.unwrap_or(&default);
        let privileged = context.privileged == Some(true);
        let no_new_privs = context.allow_privilege_escalation == Some(false);
        let read_only_root = context.read_only_root_filesystem == Some(true);
        let seccomp = match context.seccomp_profile.as_ref().or(pod_seccomp).map(|p| p.r#type.as_str()) {
            None | Some("Unconfined") => false,
            // A privileged container runs unconfined, as in Kubernetes.
            Some("RuntimeDefault") => !privileged,
            Some("Localhost") => {
                return Err("seccompProfile: Localhost profiles are not supported by this kubelet; use RuntimeDefault or Unconfined".into());
            }
            Some(other) => {
                return Err(format!("seccompProfile.type {other:?} is not RuntimeDefault, Unconfined or Localhost"));
            }
        };
        if privileged {
            if no_new_privs {
                return Err("securityContext: allowPrivilegeEscalation cannot be false when privileged is true".into());
            }
            return Ok(Privileges { capabilities: None, no_new_privs, read_only_root, seccomp });
        }
        let mut kept: Vec<u32> = DEFAULT.iter().map(|n| number(n)).collect::<Result<_, _>>()?;
        let (add, drop) = context.capabilities.as_ref().map_or((&[][..], &[][..]), |c| (&c.add[..], &c.drop[..]));
        // Drops first, then adds, so `drop: [ALL], add: [NET_BIND_SERVICE]` keeps one.
        for name in drop {
            if is_all(name) {
                kept.clear();
            } else {
                let cap = number(name)?;
                kept.retain(|c| *c != cap);
            }
        }
        for name in add {
            if is_all(name) {
                kept = (0..NAMES.len() as u32).collect();
            } else {
                kept.push(number(name)?);
            }
        }
        kept.sort_unstable();
        kept.dedup();
        if no_new_privs && kept.contains(&SYS_ADMIN) {
            return Err(
                "securityContext: allowPrivilegeEscalation cannot be false when capabilities.add has SYS_ADMIN".into(),
            );
        }
        Ok(Privileges { capabilities: Some(kept), no_new_privs, read_only_root, seccomp })
    }

    /// In the container's process, while it is still root: leaves only the kept
    /// capabilities in the bounding set and none outside it inheritable or ambient,
    /// so nothing it execs can regain another.
    pub fn restrict_capabilities(&self) -> Result<(), String> {
        let Some(kept) = &self.capabilities else { return Ok(()) };
        let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok())
            .unwrap_or(NAMES.len() as u32 - 1);
        use nix::libc;
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) } < 0 {
            let error = std::io::Error::last_os_error();
            // Kernels before 4.3 have no ambient capabilities, so none to clear.
            if error.raw_os_error() != Some(libc::EINVAL) {
                return Err(format!("clearing ambient capabilities: {error}"));
            }
        }
        let mut mask = [0u32; 2];
        for cap in kept {
            mask[(*cap / 32) as usize] |= 1 << (cap % 32);
        }
        let header = CapHeader { version: CAPABILITY_VERSION_3, pid: 0 };
        let mut data = [CapData::default(); 2];
        // SAFETY: capget fills two v3 data structs, as the header's version says.
        if unsafe { libc::syscall(libc::SYS_capget, &header, data.as_mut_ptr()) } < 0 {
            return Err(format!("reading capabilities: {}", std::io::Error::last_os_error()));
        }
        for (d, m) in data.iter_mut().zip(mask) {
            d.inheritable &= m;
        }
        // SAFETY: as capget.
        if unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) } < 0 {
            return Err(format!("setting inheritable capabilities: {}", std::io::Error::last_os_error()));
        }
        for cap in 0..=last {
            if kept.contains(&cap) {
                continue;
            }
            // SAFETY: prctl with integer arguments only.
            if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } < 0 {
                let error = std::io::Error::last_os_error();
                // A number this kernel does not know is not held either.
                if error.raw_os_error() != Some(libc::EINVAL) {
                    let name = NAMES.get(cap as usize).copied().unwrap_or("?");
                    return Err(format!("dropping capability {name} ({cap}): {error}"));
                }
            }
        }
        Ok(())
    }

    /// Once the root is in place and every path the container needs exists:
    /// makes the root read-only when asked (its volumes and /dev, /proc stay as
    /// mounted).
    pub fn seal_root(&self) -> Result<(), String> {
        if !self.read_only_root {
            return Ok(());
        }
        use nix::mount::{MsFlags, mount};
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .map_err(|e| format!("making the root filesystem read-only: {e}"))
    }

    /// While still root (installing a filter without no_new_privs takes SYS_ADMIN):
    /// the RuntimeDefault seccomp filter, when asked. Nothing the helper calls after
    /// it (setuid, chdir, prctl, execve) is refused.
    pub fn filter_system_calls(&self) -> Result<(), String> {
        if !self.seccomp {
            return Ok(());
        }
        super::seccomp::install(&super::seccomp::runtime_default(self.capabilities.as_deref().unwrap_or(&[])))
    }

    /// Last before exec: no_new_privs, which setuid binaries and file capabilities
    /// then cannot get around.
    pub fn seal_process(&self) -> Result<(), String> {
        if !self.no_new_privs {
            return Ok(());
        }
        use nix::libc;
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } < 0 {
            return Err(format!("setting no_new_privs: {}", std::io::Error::last_os_error()));
        }
        Ok(())
    }
}

const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

#[cfg(test)]
mod tests {
    use proto::core::v1::Capabilities;

    use super::*;

    fn names(p: &Privileges) -> Vec<&'static str> {
        p.capabilities.as_ref().unwrap().iter().map(|c| NAMES[*c as usize]).collect()
    }

    fn context(add: &[&str], drop: &[&str]) -> SecurityContext {
        SecurityContext {
            capabilities: Some(Capabilities {
                add: add.iter().map(|s| s.to_string()).collect(),
                drop: drop.iter().map(|s| s.to_string()).collect(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn containers_get_containerds_default_capabilities_unless_they_change_them() {
        let default = Privileges::for_container(None, None).unwrap();
        assert_eq!(names(&default).len(), 14);
        assert!(!names(&default).contains(&"SYS_ADMIN") && names(&default).contains(&"NET_BIND_SERVICE"));
        assert!(!default.no_new_privs && !default.read_only_root);

        let minimal = Privileges::for_container(Some(&context(&["NET_BIND_SERVICE"], &["ALL"])), None).unwrap();
        assert_eq!(names(&minimal), ["NET_BIND_SERVICE"]);
        let more = Privileges::for_container(Some(&context(&["cap_net_admin"], &["MKNOD", "NET_RAW"])), None).unwrap();
        assert!(names(&more).contains(&"NET_ADMIN"));
        assert!(!names(&more).contains(&"MKNOD") && !names(&more).contains(&"NET_RAW"));
        assert_eq!(names(&more).len(), 13);
    }

    #[test]
    fn privileged_keeps_everything_and_bad_combinations_are_refused() {
        let privileged = SecurityContext { privileged: Some(true), ..Default::default() };
        assert_eq!(Privileges::for_container(Some(&privileged), None).unwrap().capabilities, None);
        let contradiction = SecurityContext { allow_privilege_escalation: Some(false), ..privileged };
        let error = Privileges::for_container(Some(&contradiction), None).unwrap_err();
        assert!(error.contains("allowPrivilegeEscalation cannot be false when privileged"), "{error}");
        let admin = SecurityContext { allow_privilege_escalation: Some(false), ..context(&["SYS_ADMIN"], &[]) };
        assert!(Privileges::for_container(Some(&admin), None).unwrap_err().contains("SYS_ADMIN"));
        let typo = Privileges::for_container(Some(&context(&["NET_ADMN"], &[])), None).unwrap_err();
        assert!(typo.contains("\"NET_ADMN\" is not a Linux capability"), "{typo}");
        let sealed = SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            ..Default::default()
        };
        let sealed = Privileges::for_container(Some(&sealed), None).unwrap();
        assert!(sealed.no_new_privs && sealed.read_only_root);
    }

    #[test]
    fn the_containers_seccomp_profile_overrides_the_pods() {
        let profile = |t: &str| SeccompProfile { r#type: t.into(), localhost_profile: None };
        let pod_default = profile("RuntimeDefault");
        assert!(Privileges::for_container(None, Some(&pod_default)).unwrap().seccomp);
        assert!(!Privileges::for_container(None, None).unwrap().seccomp, "Unconfined unless asked");
        let unconfined = SecurityContext { seccomp_profile: Some(profile("Unconfined")), ..Default::default() };
        assert!(!Privileges::for_container(Some(&unconfined), Some(&pod_default)).unwrap().seccomp);
        let privileged = SecurityContext { privileged: Some(true), ..Default::default() };
        assert!(!Privileges::for_container(Some(&privileged), Some(&pod_default)).unwrap().seccomp);
        let local = profile("Localhost");
        let error = Privileges::for_container(None, Some(&local)).unwrap_err();
        assert!(error.contains("Localhost profiles are not supported"), "{error}");
    }
}
