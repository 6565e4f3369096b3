//! The RuntimeDefault seccomp profile: a classic-BPF filter, installed in the
//! container's process before it execs, that fails with EPERM the system calls
//! containerd's default profile keeps from unprivileged containers (module
//! loading, mounts and namespaces, kexec and reboot, clock setting, keyrings,
//! bpf, perf, reading other processes' memory...). A call a capability the container holds
//! would allow (SYS_ADMIN for mount, SYS_TIME for settimeofday, ...) is let
//! through, as containerd does. Calls of another architecture's ABI (i386 or x32
//! on x86_64) are refused outright: their numbers mean other calls.

use nix::libc;

/// System calls refused unless the container holds the capability beside them.
fn refused() -> Vec<(libc::c_long, Option<u32>)> {
    const SYS_ADMIN: Option<u32> = Some(21);
    const SYS_MODULE: Option<u32> = Some(16);
    const SYS_BOOT: Option<u32> = Some(22);
    const SYS_TIME: Option<u32> = Some(25);
    const SYS_PTRACE: Option<u32> = Some(19);
    const SYS_PACCT: Option<u32> = Some(20);
    const SYS_NICE: Option<u32> = Some(23);
    const DAC_READ_SEARCH: Option<u32> = Some(2);
    const SYSLOG: Option<u32> = Some(34);
    let mut calls = vec![
        (libc::SYS_mount, SYS_ADMIN),
        (libc::SYS_umount2, SYS_ADMIN),
        (libc::SYS_pivot_root, SYS_ADMIN),
        (libc::SYS_setns, SYS_ADMIN),
        (libc::SYS_unshare, SYS_ADMIN),
        (libc::SYS_quotactl, SYS_ADMIN),
        (libc::SYS_bpf, SYS_ADMIN),
        (libc::SYS_perf_event_open, SYS_ADMIN),
        (libc::SYS_fanotify_init, SYS_ADMIN),
        (libc::SYS_lookup_dcookie, SYS_ADMIN),
        (libc::SYS_swapon, SYS_ADMIN),
        (libc::SYS_swapoff, SYS_ADMIN),
        (libc::SYS_open_by_handle_at, DAC_READ_SEARCH),
        (libc::SYS_name_to_handle_at, SYS_ADMIN),
        (libc::SYS_init_module, SYS_MODULE),
        (libc::SYS_finit_module, SYS_MODULE),
        (libc::SYS_delete_module, SYS_MODULE),
        (libc::SYS_kexec_load, SYS_BOOT),
        (libc::SYS_kexec_file_load, SYS_BOOT),
        (libc::SYS_reboot, SYS_BOOT),
        (libc::SYS_settimeofday, SYS_TIME),
        (libc::SYS_clock_settime, SYS_TIME),
        (libc::SYS_clock_adjtime, SYS_TIME),
        (libc::SYS_adjtimex, SYS_TIME),
        (libc::SYS_process_vm_readv, SYS_PTRACE),
        (libc::SYS_process_vm_writev, SYS_PTRACE),
        (libc::SYS_kcmp, SYS_PTRACE),
        (libc::SYS_acct, SYS_PACCT),
        (libc::SYS_mbind, SYS_NICE),
        (libc::SYS_set_mempolicy, SYS_NICE),
        (libc::SYS_move_pages, SYS_NICE),
        (libc::SYS_syslog, SYSLOG),
        (libc::SYS_add_key, None),
        (libc::SYS_request_key, None),
        (libc::SYS_keyctl, None),
        (libc::SYS_userfaultfd, None),
    ];
    #[cfg(target_arch = "x86_64")]
    calls.extend([
        (libc::SYS_iopl, Some(17)),
        (libc::SYS_ioperm, Some(17)),
        (libc::SYS_uselib, None),
        (libc::SYS_ustat, None),
        (libc::SYS_sysfs, None),
        (libc::SYS__sysctl, None),
        (libc::SYS_nfsservctl, None),
    ]);
    calls
}

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;
/// x32 system calls are x86_64's with this bit set.
const X32_BIT: u32 = 0x4000_0000;

const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
// Offsets in struct seccomp_data.
const NR: u32 = 0;
const ARCH: u32 = 4;

fn statement(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter { code: code as u16, jt: 0, jf: 0, k }
}

fn jump(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code: code as u16, jt, jf, k }
}

/// The filter for a container keeping `capabilities` (numbers).
pub fn runtime_default(capabilities: &[u32]) -> Vec<libc::sock_filter> {
    use libc::{BPF_ABS, BPF_JEQ, BPF_JGE, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W};
    let errno = SECCOMP_RET_ERRNO | libc::EPERM as u32;
    let calls: Vec<u32> = refused()
        .into_iter()
        .filter(|(_, cap)| cap.is_none_or(|c| !capabilities.contains(&c)))
        .map(|(nr, _)| nr as u32)
        .collect();
    let mut program = vec![
        statement(BPF_LD | BPF_W | BPF_ABS, ARCH),
        jump(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH, 1, 0),
        statement(BPF_RET | BPF_K, errno),
        statement(BPF_LD | BPF_W | BPF_ABS, NR),
        jump(BPF_JMP | BPF_JGE | BPF_K, X32_BIT, 0, 1),
        statement(BPF_RET | BPF_K, errno),
    ];
    // Each refused call: equal -> jump to the final EPERM (counted from the next one).
    let count = calls.len();
    for (i, nr) in calls.into_iter().enumerate() {
        let to_errno = (count - i) as u8;
        program.push(jump(BPF_JMP | BPF_JEQ | BPF_K, nr, to_errno, 0));
    }
    program.push(statement(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
    program.push(statement(BPF_RET | BPF_K, errno));
    program
}

/// Installs `program` for this process and what it execs.
pub fn install(program: &[libc::sock_filter]) -> Result<(), String> {
    let prog = libc::sock_fprog { len: program.len() as u16, filter: program.as_ptr() as *mut libc::sock_filter };
    // SAFETY: `prog` points at `program`, which outlives the call; the kernel copies it.
    let rc = unsafe { libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog as *const libc::sock_fprog) };
    if rc < 0 {
        return Err(format!("installing the RuntimeDefault seccomp filter: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the filter as the kernel would, for one call of this architecture.
    fn verdict(program: &[libc::sock_filter], arch: u32, nr: u32) -> u32 {
        let mut acc = 0u32;
        let mut pc = 0usize;
        loop {
            let s = program[pc];
            let code = u32::from(s.code);
            if code == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS {
                acc = if s.k == ARCH { arch } else { nr };
                pc += 1;
            } else if code == libc::BPF_RET | libc::BPF_K {
                return s.k;
            } else {
                let taken = if code == libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K { acc == s.k } else { acc >= s.k };
                pc += 1 + usize::from(if taken { s.jt } else { s.jf });
            }
        }
    }

    #[test]
    fn refused_calls_fail_with_eperm_unless_a_held_capability_allows_them() {
        let errno = SECCOMP_RET_ERRNO | libc::EPERM as u32;
        let plain = runtime_default(&[]);
        assert_eq!(verdict(&plain, AUDIT_ARCH, libc::SYS_mount as u32), errno);
        assert_eq!(verdict(&plain, AUDIT_ARCH, libc::SYS_keyctl as u32), errno);
        assert_eq!(verdict(&plain, AUDIT_ARCH, libc::SYS_read as u32), SECCOMP_RET_ALLOW);
        assert_eq!(verdict(&plain, AUDIT_ARCH, libc::SYS_execve as u32), SECCOMP_RET_ALLOW);
        assert_eq!(verdict(&plain, AUDIT_ARCH, libc::SYS_clone as u32), SECCOMP_RET_ALLOW);
        assert_eq!(verdict(&plain, AUDIT_ARCH, X32_BIT | libc::SYS_read as u32), errno, "x32 calls");
        assert_eq!(verdict(&plain, 0x4000_0003, 3), errno, "i386 calls");
        let admin = runtime_default(&[21]);
        assert_eq!(verdict(&admin, AUDIT_ARCH, libc::SYS_mount as u32), SECCOMP_RET_ALLOW);
        assert_eq!(verdict(&admin, AUDIT_ARCH, libc::SYS_init_module as u32), errno);
        // The last refused call jumps exactly onto the final EPERM.
        let last = refused().last().unwrap().0 as u32;
        assert_eq!(verdict(&plain, AUDIT_ARCH, last), errno);
    }
}
