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
    spawn_peer_via(&[], test_name, role, env)
}

/// [`spawn_peer`], started through `wrapper`: a command and its arguments that run the rest of
/// the command line, e.g. `["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]` to
/// run the peer in a new PID namespace. An empty `wrapper` runs the test binary directly.
pub fn spawn_peer_via(
    wrapper: &[&str],
    test_name: &str,
    role: &str,
    env: &[(&str, String)],
) -> std::process::Child {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = match wrapper.split_first() {
        Some((program, args)) => {
            let mut cmd = Command::new(program);
            cmd.args(args).arg(exe);
            cmd
        }
        None => Command::new(exe),
    };
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

/// A small deterministic random generator for corruption tests (SplitMix64 steps).
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    /// The next value.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 = pattern::mix(self.0);
        self.0
    }

    /// A value below `n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A value a hostile peer might write where a position or length of a ring of `capacity`
    /// bytes belongs: small, around the capacity, aligned, huge, zero, or random.
    pub fn evil_value(&mut self, capacity: u64) -> u64 {
        match self.below(7) {
            0 => self.below(capacity * 4),
            1 => capacity + self.below(16),
            2 => u64::MAX - self.below(16),
            3 => u32::MAX as u64 + self.below(16),
            4 => self.below(64) * 8,
            5 => 0,
            _ => self.next(),
        }
    }
}

/// Deterministic test messages: message `seq` of a stream has a length and content derived
/// from `(stream, seq)`, so a receiver that knows which message it expects next detects any
/// loss, duplicate, reordering or torn write by regenerating it.
pub mod pattern {
    /// SplitMix64: a fast, well-mixed step.
    #[inline]
    pub fn mix(mut x: u64) -> u64 {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^ (x >> 31)
    }

    /// The length of message `seq` of `stream`: uniform in `min..=max`.
    pub fn len(stream: u64, seq: u64, min: usize, max: usize) -> usize {
        min + (mix(stream << 48 ^ seq) % (max - min + 1) as u64) as usize
    }

    /// Fill `out` with message `seq` of `stream`: the sequence number (little-endian, as far as
    /// it fits), the stream id, then bytes from a generator seeded by both.
    pub fn fill(stream: u64, seq: u64, out: &mut [u8]) {
        let mut state = mix(seq ^ stream.rotate_left(32));
        let head = seq.to_le_bytes();
        let n = out.len().min(8);
        out[..n].copy_from_slice(&head[..n]);
        if out.len() >= 16 {
            out[8..16].copy_from_slice(&stream.to_le_bytes());
        }
        let start = out.len().min(16);
        for chunk in out[start..].chunks_mut(8) {
            state = mix(state);
            chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
        }
    }

    /// Message `seq` of `stream` with a length in `min..=max`.
    pub fn message(stream: u64, seq: u64, min: usize, max: usize) -> Vec<u8> {
        let mut v = vec![0u8; len(stream, seq, min, max)];
        fill(stream, seq, &mut v);
        v
    }

    /// Check that `got` is message `seq` of `stream`; the error says what differs.
    pub fn check(stream: u64, seq: u64, min: usize, max: usize, got: &[u8]) -> Result<(), String> {
        let want_len = len(stream, seq, min, max);
        if got.len() != want_len {
            let got_seq = (got.len() >= 8).then(|| u64::from_le_bytes(got[..8].try_into().unwrap()));
            return Err(format!(
                "stream {stream} message {seq}: length {} instead of {want_len} (its first 8 bytes say seq {got_seq:?})",
                got.len()
            ));
        }
        let mut want = vec![0u8; want_len];
        fill(stream, seq, &mut want);
        match want.iter().zip(got).position(|(a, b)| a != b) {
            None => Ok(()),
            Some(at) => {
                Err(format!("stream {stream} message {seq}: byte {at} differs (torn or foreign data)"))
            }
        }
    }
}

/// Read the u32 at byte `offset` of shared memory atomically (for tests that watch ring header
/// words, such as a futex waiter count, as a handshake).
///
/// # Safety
/// `base + offset` must be a live, 4-aligned u32 for the duration of the call.
pub unsafe fn load_u32(base: *const u8, offset: usize) -> u32 {
    // SAFETY: guaranteed by the caller.
    unsafe {
        (*(base.add(offset) as *const std::sync::atomic::AtomicU32)).load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Wait (bounded by `limit`) until `cond` holds; false on timeout. For handshakes on shared
/// state the test cannot be notified of, polled without sleeping.
pub fn wait_until(limit: std::time::Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + limit;
    while !cond() {
        if std::time::Instant::now() > end {
            return false;
        }
        std::thread::yield_now();
    }
    true
}

/// A one-way handshake between processes over a pipe: a forked child [`open`](Gate::open)s it
/// (once or several times), the parent [`wait`](Gate::wait)s for that many openings. Create it
/// before `fork`; both ends are inherited.
#[derive(Debug)]
pub struct Gate {
    read: std::os::fd::OwnedFd,
    write: std::os::fd::OwnedFd,
}

impl Gate {
    /// A new gate (a pipe).
    pub fn new() -> Gate {
        let (read, write) = nix::unistd::pipe().expect("pipe");
        Gate { read, write }
    }

    /// Signal the other side (async-signal-safe: one `write`).
    pub fn open(&self) {
        let _ = nix::unistd::write(&self.write, &[1u8]);
    }

    /// The raw write end, for a signal handler or a test hook that cannot hold `&Gate`.
    pub fn write_fd(&self) -> i32 {
        use std::os::fd::AsRawFd;
        self.write.as_raw_fd()
    }

    /// Signal through a raw write end obtained from [`write_fd`](Gate::write_fd).
    pub fn open_fd(fd: i32) {
        // SAFETY: write(2) of one byte from a live stack buffer; a bad fd only returns EBADF.
        unsafe { libc::write(fd, [1u8].as_ptr().cast(), 1) };
    }

    /// Wait until the gate was opened `n` times in all, at most `limit`; false on timeout.
    pub fn wait(&self, n: usize, limit: std::time::Duration) -> bool {
        use std::os::fd::AsFd;
        let end = std::time::Instant::now() + limit;
        let mut got = 0;
        while got < n {
            let left = end.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            let mut fds = [nix::poll::PollFd::new(self.read.as_fd(), nix::poll::PollFlags::POLLIN)];
            let ms = u16::try_from(left.as_millis().max(1)).unwrap_or(u16::MAX);
            match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms)) {
                Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
                Ok(_) => {
                    let mut buf = [0u8; 64];
                    match nix::unistd::read(&self.read, &mut buf[..(n - got).min(64)]) {
                        Ok(k) => got += k,
                        Err(nix::errno::Errno::EINTR) => {}
                        Err(e) => panic!("gate read: {e}"),
                    }
                }
                Err(e) => panic!("gate poll: {e}"),
            }
        }
        true
    }
}

impl Default for Gate {
    fn default() -> Self {
        Gate::new()
    }
}

/// A watchdog for tests of calls that must return: [`feed`](Watchdog::feed) it before each
/// call; if it goes unfed for `limit`, it prints what was being done and ends the whole test
/// process with exit code 99 (a hang is a failure, not a stuck CI job).
#[derive(Debug)]
pub struct Watchdog {
    state: std::sync::Arc<(std::sync::Mutex<(std::time::Instant, String)>, std::sync::atomic::AtomicBool)>,
}

impl Watchdog {
    /// Start watching.
    pub fn start(limit: std::time::Duration) -> Watchdog {
        let state = std::sync::Arc::new((
            std::sync::Mutex::new((std::time::Instant::now(), String::from("starting"))),
            std::sync::atomic::AtomicBool::new(false),
        ));
        let watched = state.clone();
        std::thread::spawn(move || loop {
            std::thread::sleep(limit / 10);
            if watched.1.load(std::sync::atomic::Ordering::Relaxed) {
                return;
            }
            let (since, what) = watched.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if since.elapsed() > limit {
                eprintln!("watchdog: no progress for {limit:?} while {what}: a call did not return");
                std::process::exit(99);
            }
        });
        Watchdog { state }
    }

    /// Note progress, and what is done next.
    pub fn feed(&self, what: impl FnOnce() -> String) {
        let mut g = self.state.0.lock().unwrap_or_else(|e| e.into_inner());
        *g = (std::time::Instant::now(), what());
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.state.1.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}
