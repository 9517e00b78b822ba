//! Test support for shm-ipc: run code in a forked child, and re-run the current test binary as
//! an unrelated peer process.
//!
//! Cross-process tests in this workspace use one of two shapes:
//! - [`fork`]: the child inherits the parent's mappings (anonymous regions included);
//! - [`spawn_peer`]: a fresh process (the test binary again, running one `#[ignore]`d test
//!   function) that shares nothing but what it opens by path, name or received descriptor.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

use std::process::{Command, Stdio};

use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{ForkResult, Pid};

/// The environment variable that tells a re-run test binary which role to play.
pub const ROLE_VAR: &str = "SHM_TESTKIT_ROLE";

/// How a child process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Exited with this code.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

/// A forked child process. Dropping it without waiting kills and reaps it, so a failing test
/// never leaves a child behind.
#[derive(Debug)]
pub struct Forked {
    pid: Pid,
    reaped: bool,
}

impl Forked {
    /// The child's pid.
    pub fn pid(&self) -> i32 {
        self.pid.as_raw()
    }

    /// Wait for the child to end.
    pub fn wait(mut self) -> Exit {
        self.reaped = true;
        wait_pid(self.pid)
    }

    /// Wait and assert that the child exited with code 0.
    #[track_caller]
    pub fn join(self) {
        let pid = self.pid;
        match self.wait() {
            Exit::Code(0) => {}
            other => panic!("child {pid} failed: {other:?}"),
        }
    }

    /// Send a signal to the child.
    pub fn kill(&self, sig: Signal) {
        let _ = nix::sys::signal::kill(self.pid, sig);
    }
}

impl Drop for Forked {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = nix::sys::signal::kill(self.pid, Signal::SIGKILL);
            let _ = waitpid(self.pid, None);
        }
    }
}

fn wait_pid(pid: Pid) -> Exit {
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return Exit::Code(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Exit::Signal(sig as i32),
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => panic!("waitpid({pid}) failed: {e}"),
        }
    }
}

/// Run `f` in a forked child. The child exits with `f`'s return value, or 101 if it panics;
/// it never returns into the test harness. It is killed if the parent dies.
///
/// Keep `f` to simple work (memory, atomics, system calls): the child of a multithreaded test
/// process has only the forking thread.
pub fn fork<F: FnOnce() -> i32>(f: F) -> Forked {
    // SAFETY: the child runs `f` and leaves with `_exit`, never returning into code that relies
    // on the other threads of the parent; glibc keeps malloc usable in the child.
    match unsafe { nix::unistd::fork() }.expect("fork failed") {
        ForkResult::Child => {
            // SAFETY: prctl(PR_SET_PDEATHSIG) only sets a flag of this process.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(101);
            // SAFETY: _exit ends the process without running the parent's atexit handlers or
            // destructors, which belong to the parent.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => Forked { pid: child, reaped: false },
    }
}

/// Start this test binary again, running only the `#[ignore]`d test `test_name` (give its full
/// path, e.g. `"peer"` or `"module::peer"`), with `role` in [`ROLE_VAR`] and extra environment.
/// Its stdin is null; stdout is piped (read it for a handshake), stderr is inherited.
pub fn spawn_peer(test_name: &str, role: &str, env: &[(&str, String)]) -> std::process::Child {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new(exe);
    cmd.args([test_name, "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env(ROLE_VAR, role)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn peer test binary")
}

/// The role this process was started with by [`spawn_peer`], if any.
pub fn role() -> Option<String> {
    std::env::var(ROLE_VAR).ok()
}

/// Read lines from a peer's stdout until one contains `prefix`; returns the rest of it.
/// Panics if the peer's output ends first. The test harness prints its own lines too, which
/// are skipped.
pub fn expect_line(out: &mut impl std::io::BufRead, prefix: &str) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        let n = out.read_line(&mut line).expect("read peer stdout");
        assert!(n > 0, "peer exited before printing {prefix:?}");
        // The harness may have printed "test peer ... " without a newline before our line.
        if let Some(at) = line.find(prefix) {
            return line[at + prefix.len()..].trim_end().to_owned();
        }
    }
}

/// A unique name for a test object (path component or shm name): prefix, pid, counter.
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}
