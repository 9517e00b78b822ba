//! Process identity that survives pid reuse (a pid plus the process's start time), the PID
//! namespace it is valid in, and what can be positively known about it.

use nix::errno::Errno;

use crate::liveness::Liveness;
use crate::sys::{self, ProcStat};

/// The effective user id of this process (whose files and shm objects it trusts).
pub fn effective_uid() -> u32 {
    sys::geteuid()
}

/// A process, named so that a later process reusing its pid is not mistaken for it.
///
/// A pid names a process only inside one PID namespace: compare [`pid_namespace`]s before
/// asking about a pid recorded by another process.
///
/// ```
/// use shm_core::{Liveness, ProcessIdentity};
/// let me = ProcessIdentity::current();
/// assert_ne!(me.liveness(), Liveness::Gone);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProcessIdentity {
    /// The process id, in the process's own PID namespace.
    pub pid: u32,
    /// Start time in clock ticks since boot (`/proc/self/stat` field 22); 0 when unknown.
    pub start_time: u64,
}

impl ProcessIdentity {
    /// The calling process. Call it again after `fork`: a child has its own identity.
    pub fn current() -> ProcessIdentity {
        let pid = sys::getpid() as u32;
        // /proc/self is the caller whatever namespace /proc was mounted for.
        ProcessIdentity { pid, start_time: sys::proc_stat(None).map_or(0, |s| s.start_time) }
    }

    /// The process with this pid in the caller's PID namespace now, if one runs (a zombie does
    /// not count) and `/proc` shows this namespace.
    pub fn of(pid: u32) -> Option<ProcessIdentity> {
        let p = i32::try_from(pid).ok().filter(|p| *p > 0)?;
        if !sys::proc_shows_own_pid_namespace() {
            return None;
        }
        let st = sys::proc_stat(Some(p)).ok().filter(|s| !matches!(s.state, b'Z' | b'X'))?;
        Some(ProcessIdentity { pid, start_time: st.start_time })
    }

    /// What can be positively known about this process, taking the pid in the caller's PID
    /// namespace (the caller checks that it is the namespace the pid was recorded in).
    ///
    /// `Gone` only on positive evidence: `kill(pid, 0)` fails with `ESRCH`, or `/proc/PID/stat`
    /// is readable and shows a zombie, or a start time other than the recorded one (the pid was
    /// reused) while the process there shares the caller's time namespace (start times are
    /// shifted by time namespaces). `Alive` when the pid runs with the recorded start time.
    /// Everything else is `Unknown`: `EPERM` from `kill` with no readable `/proc` entry, no
    /// `/proc` or a `/proc` of another PID namespace, `hidepid` (`ENOENT` while `kill` says the
    /// pid exists), `EACCES`, `EMFILE`, an unknown start time.
    pub fn liveness(&self) -> Liveness {
        let Ok(pid) = i32::try_from(self.pid) else { return Liveness::Unknown };
        pid_verdict(
            self.start_time,
            sys::kill_probe(pid),
            || sys::proc_shows_own_pid_namespace().then(|| sys::proc_stat(Some(pid))),
            || same_time_namespace(pid),
        )
    }
}

/// The PID namespace of the calling process: the inode number of `/proc/self/ns/pid`, which
/// names the namespace while it exists. `None` when it cannot be read (no `/proc`) or does not
/// fit in 32 bits. Two processes of one kernel share a PID namespace iff these are equal.
pub fn pid_namespace() -> Option<u32> {
    let (_dev, ino) = sys::namespace_of(None, "pid").ok()?;
    u32::try_from(ino).ok().filter(|i| *i != 0)
}

/// Whether the process at `pid` shares the caller's time namespace (so their start times are
/// comparable). A kernel without time namespaces has no `/proc/self/ns/time`: always shared.
fn same_time_namespace(pid: i32) -> Option<bool> {
    match sys::namespace_of(None, "time") {
        Err(Errno::ENOENT) if std::path::Path::new("/proc/self/ns/pid").exists() => Some(true),
        Err(_) => None,
        Ok(mine) => sys::namespace_of(Some(pid), "time").ok().map(|theirs| theirs == mine),
    }
}

/// The verdict of pid evidence, from the checks in the order [`ProcessIdentity::liveness`]
/// makes them: `kill(pid, 0)`, then (if `/proc` shows the caller's namespace: `stat` returns
/// `Some`) `/proc/PID/stat`, then the time-namespace comparison.
pub(crate) fn pid_verdict(
    recorded_start: u64,
    kill: nix::Result<()>,
    stat: impl FnOnce() -> Option<nix::Result<ProcStat>>,
    same_time_ns: impl FnOnce() -> Option<bool>,
) -> Liveness {
    match kill {
        Err(Errno::ESRCH) => return Liveness::Gone,
        Ok(()) | Err(Errno::EPERM) => {}
        Err(_) => return Liveness::Unknown,
    }
    // A process has this pid. Whether it is the recorded one only /proc can tell.
    let Some(Ok(st)) = stat() else { return Liveness::Unknown };
    if matches!(st.state, b'Z' | b'X') {
        // Exited (whether it was ours or a later one, ours is gone) — unless only its main
        // thread did and other threads still run: the leader then shows `Z` too.
        return if st.threads <= 1 { Liveness::Gone } else { Liveness::Unknown };
    }
    if recorded_start == 0 {
        return Liveness::Unknown;
    }
    if st.start_time == recorded_start {
        return Liveness::Alive;
    }
    match same_time_ns() {
        Some(true) => Liveness::Gone,
        _ => Liveness::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(state: u8, start_time: u64) -> Option<nix::Result<ProcStat>> {
        Some(Ok(ProcStat { state, start_time, threads: 1 }))
    }

    #[test]
    fn only_positive_evidence_is_death() {
        let v = |kill, st: Option<nix::Result<ProcStat>>, time: Option<bool>| {
            pid_verdict(500, kill, || st, || time)
        };
        // No process with that pid: gone, whatever /proc would say.
        assert_eq!(v(Err(Errno::ESRCH), None, None), Liveness::Gone);
        // The pid exists, same start time: alive; a zombie: gone; another start time: reused.
        assert_eq!(v(Ok(()), stat(b'S', 500), Some(true)), Liveness::Alive);
        assert_eq!(v(Err(Errno::EPERM), stat(b'R', 500), Some(true)), Liveness::Alive);
        assert_eq!(v(Ok(()), stat(b'Z', 500), None), Liveness::Gone);
        assert_eq!(v(Ok(()), stat(b'S', 900), Some(true)), Liveness::Gone);
        // ... but not when start times are not comparable (another time namespace, unknown).
        assert_eq!(v(Ok(()), stat(b'S', 900), Some(false)), Liveness::Unknown);
        assert_eq!(v(Ok(()), stat(b'S', 900), None), Liveness::Unknown);
        assert_eq!(pid_verdict(0, Ok(()), || stat(b'S', 900), || Some(true)), Liveness::Unknown);
    }

    #[test]
    fn an_unreadable_or_foreign_proc_is_unknown() {
        let v = |kill, st: Option<nix::Result<ProcStat>>| pid_verdict(500, kill, || st, || Some(true));
        for kill in [Ok(()), Err(Errno::EPERM)] {
            // hidepid: the entry is hidden (ENOENT) while kill says the pid exists.
            assert_eq!(v(kill, Some(Err(Errno::ENOENT))), Liveness::Unknown);
            assert_eq!(v(kill, Some(Err(Errno::EACCES))), Liveness::Unknown);
            // Descriptor limit.
            assert_eq!(v(kill, Some(Err(Errno::EMFILE))), Liveness::Unknown);
            // No /proc, or a /proc of another PID namespace.
            assert_eq!(v(kill, None), Liveness::Unknown);
        }
        // kill itself failing otherwise says nothing.
        assert_eq!(v(Err(Errno::EINVAL), stat(b'Z', 1)), Liveness::Unknown);
        // A leader that exited while its other threads run shows `Z`: not dead.
        let leader_gone = Some(Ok(ProcStat { state: b'Z', start_time: 500, threads: 2 }));
        assert_eq!(v(Ok(()), leader_gone), Liveness::Unknown);
    }

    #[test]
    fn stat_lines_parse_with_odd_command_names() {
        let line = "42 (a b) c)) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 3 0 123456 1000 10";
        assert_eq!(
            sys::parse_proc_stat(line),
            Some(ProcStat { state: b'S', start_time: 123456, threads: 3 })
        );
        assert_eq!(sys::parse_proc_stat("42 (x) Z"), None);
    }

    #[test]
    fn the_caller_is_alive_and_has_a_namespace() {
        let me = ProcessIdentity::current();
        assert_ne!(me.start_time, 0);
        assert_eq!(me.liveness(), Liveness::Alive);
        assert!(pid_namespace().is_some());
        assert!(sys::proc_shows_own_pid_namespace());
    }
}
