//! Whether a pid recorded in a sandbox or container record still names the helper that
//! was recorded, after a kubelet restart and whatever pids the host reused since: a
//! process is its pid with its start time (clock ticks after boot, /proc/PID/stat),
//! which no later process with that pid can share. Records of older kubelets carry no
//! start time; their exec'd helpers are recognised by their command line.

/// The start time of `pid` (clock ticks after boot), None when it does not exist.
pub fn start_time(pid: i32) -> Option<u64> {
    stat(pid).map(|(_, start)| start)
}

/// Whether `pid` is the process recorded with `start` (a start time; 0 in older
/// records, which then need `needle` among the process's arguments), alive and not a
/// zombie.
pub fn is_recorded(pid: i32, start: u64, needle: &str) -> bool {
    let Some((state, started)) = stat(pid) else { return false };
    let same = if start != 0 { started == start } else { has_argument(pid, needle) };
    same && state != 'Z'
}

/// A process's state letter (field 3 of /proc/PID/stat) and start time (field 22), in
/// one read.
fn stat(pid: i32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The name before them (field 2, in parentheses) may hold spaces.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    let state = fields.next()?.chars().next()?;
    Some((state, fields.nth(18)?.parse().ok()?))
}

/// Whether `pid` runs with `needle` among its arguments.
fn has_argument(pid: i32, needle: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| raw.split(|b| *b == 0).any(|arg| arg == needle.as_bytes()))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_is_its_pid_and_start_time() {
        let me = std::process::id() as i32;
        let start = start_time(me).expect("this process's start time");
        assert!(is_recorded(me, start, "no such argument"));
        assert!(!is_recorded(me, start + 1, "no such argument"), "a reused pid starts later");
        let own = std::env::args().next().expect("argv[0]");
        assert!(is_recorded(me, 0, &own), "older records: by argument");
        assert!(!is_recorded(me, 0, "no such argument"));
        assert_eq!(start_time(-1), None);
    }
}
