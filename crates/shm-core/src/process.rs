//! Process identity that survives pid reuse: a pid plus the process's start time.

use crate::sys;

/// A process, named so that a later process reusing its pid is not mistaken for it.
///
/// ```
/// let me = shm_core::ProcessIdentity::current();
/// assert!(me.is_alive());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProcessIdentity {
    /// The process id.
    pub pid: u32,
    /// Start time in clock ticks since boot (`/proc/PID/stat` field 22); 0 when unknown.
    pub start_time: u64,
}

impl ProcessIdentity {
    /// The calling process. Call it again after `fork`: a child has its own identity.
    pub fn current() -> ProcessIdentity {
        let pid = std::process::id();
        ProcessIdentity { pid, start_time: sys::process_start_time(pid as i32).unwrap_or(0) }
    }

    /// The process with this pid now, if one runs (a zombie does not count).
    pub fn of(pid: u32) -> Option<ProcessIdentity> {
        let p = i32::try_from(pid).ok().filter(|p| *p > 0)?;
        sys::process_start_time(p).map(|start_time| ProcessIdentity { pid, start_time })
    }

    /// Whether this process still runs. A zombie (exited, not yet reaped) counts as dead, and so
    /// does a live process whose start time differs (its pid was reused).
    pub fn is_alive(&self) -> bool {
        let Ok(pid) = i32::try_from(self.pid) else { return false };
        if pid <= 0 {
            return false;
        }
        match sys::process_start_time(pid) {
            Some(t) => self.start_time == 0 || t == self.start_time,
            // No /proc entry, or a zombie. Without /proc at all, fall back to kill(pid, 0).
            None => !std::path::Path::new("/proc/self/stat").exists() && sys::pid_exists(pid),
        }
    }
}
