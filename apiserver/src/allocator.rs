//! The process's memory allocator: mimalloc instead of the system's.
//!
//! A create makes about 125 allocations, almost all inside hyper, h2 and tonic (header
//! maps, frames, buffers, boxed futures). glibc's malloc and free were over a fifth of
//! the apiserver's instructions per create; with mimalloc's thread-local heaps the
//! instructions per create fell by 15% (callgrind, the creates benchmark). Declared
//! here because the apiserver binary is this library's only user.
//!
//! Transparent huge pages are turned off for the process: mimalloc asks for them on
//! its arenas and hands idle pages back after a second, so a later allocation faults
//! in a whole 2 MiB page and the kernel zeroes it (5% of the apiserver's CPU under
//! the creates benchmark; CPU per create 103-106 -> 97-99 us without them).

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Turns transparent huge pages off for this process (see the module's doc). Call
/// first thing in main: it applies to the faults that follow.
pub fn without_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE only sets a flag of this process's memory map.
    if unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) } != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "could not turn transparent huge pages off");
    }
}
