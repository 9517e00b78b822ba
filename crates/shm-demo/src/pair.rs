//! Run two sides of a measurement as two processes pinned to different cores.

use std::io;

use nix::sched::{sched_setaffinity, CpuSet};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

/// Online CPUs of the machine (not of this process's affinity mask, which pinning narrows).
pub fn online_cpus() -> usize {
    nix::unistd::sysconf(nix::unistd::SysconfVar::_NPROCESSORS_ONLN)
        .ok()
        .flatten()
        .and_then(|n| usize::try_from(n).ok())
        .filter(|n| *n > 0)
        .unwrap_or(1)
}

/// Pin the calling process to `cpu` (ignored on a single-CPU machine).
pub fn pin_to(cpu: usize) {
    let cores = online_cpus();
    if cores < 2 {
        return;
    }
    let mut set = CpuSet::new();
    if set.set(cpu % cores).is_ok() {
        let _ = sched_setaffinity(Pid::from_raw(0), &set);
    }
}

/// A child process started by [`spawn_child`].
#[derive(Debug)]
pub struct Child {
    pid: Pid,
}

impl Child {
    /// Wait for it; an error unless it exited with 0.
    pub fn join(self) -> io::Result<()> {
        let status = loop {
            match waitpid(self.pid, None) {
                Err(nix::errno::Errno::EINTR) => continue,
                other => break other.map_err(io::Error::from)?,
            }
        };
        match status {
            WaitStatus::Exited(_, 0) => Ok(()),
            other => Err(io::Error::other(format!("child process failed: {other:?}"))),
        }
    }
}

/// Fork a child pinned to `cpu` that runs `f` and exits with its code.
pub fn spawn_child(cpu: usize, f: impl FnOnce() -> i32) -> io::Result<Child> {
    // SAFETY: the child runs `f` and leaves with _exit; it never returns into the caller.
    match unsafe { fork() }.map_err(io::Error::from)? {
        ForkResult::Child => {
            // SAFETY: prctl(PR_SET_PDEATHSIG) only sets a flag of this process.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
            pin_to(cpu);
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(101);
            // SAFETY: leave without running the parent's destructors or atexit handlers.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => Ok(Child { pid: child }),
    }
}

/// Fork: the child runs `child` pinned to core 0 and exits with its code; the parent runs
/// `parent` pinned to core 1, then reaps the child. An error if the child failed.
pub fn run_pair<R>(child: impl FnOnce() -> i32, parent: impl FnOnce() -> R) -> io::Result<R> {
    let c = spawn_child(0, child)?;
    pin_to(1);
    let r = parent();
    c.join()?;
    Ok(r)
}
