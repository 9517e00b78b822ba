//! Every system call of shm-core lives here (mmap, msync, madvise, mlock, open, fstat,
//! posix_fallocate, ftruncate, fcntl seals and OFD locks, shm_open, memfd_create, SCM_RIGHTS,
//! kill, futex, and the `/proc` reads behind process identity).
//!
//! Functions take and return plain Rust types and `nix::Result`; callers turn errors into the
//! operation's own error type, naming what was being opened or mapped. The futex calls go
//! through `rustix` (nix has none); their errors are converted to nix's `Errno` here.

use std::ffi::CStr;
use std::io::{IoSlice, IoSliceMut};
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag, SealFlag};
use nix::sys::memfd::MFdFlags;
use nix::sys::mman::{MapFlags, MmapAdvise, MsFlags, ProtFlags};
use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags};
use nix::sys::stat::{FileStat, Mode, SFlag};

pub(crate) type Result<T> = nix::Result<T>;

/// The system page size (`sysconf(_SC_PAGESIZE)`), read once.
pub(crate) fn page_size() -> usize {
    use std::sync::OnceLock;
    static PAGE: OnceLock<usize> = OnceLock::new();
    *PAGE.get_or_init(|| {
        nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .and_then(|v| usize::try_from(v).ok())
            .filter(|v| v.is_power_of_two())
            .unwrap_or(4096)
    })
}

/// How a mapping shares its writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sharing {
    /// `MAP_SHARED`: writes reach the object and every other mapping of it.
    Shared,
    /// `MAP_PRIVATE`: copy-on-write, writes stay in this process.
    Private,
}

fn map_flags(sharing: Sharing) -> MapFlags {
    match sharing {
        Sharing::Shared => MapFlags::MAP_SHARED,
        Sharing::Private => MapFlags::MAP_PRIVATE,
    }
}

fn prot(writable: bool) -> ProtFlags {
    if writable {
        ProtFlags::PROT_READ | ProtFlags::PROT_WRITE
    } else {
        ProtFlags::PROT_READ
    }
}

/// `mmap(NULL, len, prot, MAP_SHARED|MAP_ANONYMOUS, -1, 0)`.
pub(crate) fn mmap_anonymous(len: NonZeroUsize) -> Result<NonNull<u8>> {
    // SAFETY: a fresh anonymous mapping at an address the kernel chooses aliases no Rust object.
    let p = unsafe { nix::sys::mman::mmap_anonymous(None, len, prot(true), MapFlags::MAP_SHARED) }?;
    Ok(p.cast())
}

/// `mmap(NULL, len, prot, MAP_SHARED or MAP_PRIVATE, fd, offset)`.
pub(crate) fn mmap_fd(
    fd: BorrowedFd<'_>,
    len: NonZeroUsize,
    offset: u64,
    writable: bool,
    sharing: Sharing,
) -> Result<NonNull<u8>> {
    let offset = libc::off_t::try_from(offset).map_err(|_| Errno::EOVERFLOW)?;
    // SAFETY: the kernel chooses the address (no MAP_FIXED), so no existing Rust object is
    // aliased; the caller owns the returned mapping and unmaps it exactly once.
    let p = unsafe { nix::sys::mman::mmap(None, len, prot(writable), map_flags(sharing), fd, offset) }?;
    Ok(p.cast())
}

/// `munmap(ptr, len)`.
///
/// # Safety
/// `ptr..ptr+len` must be a mapping returned by this module that is not used afterwards.
pub(crate) unsafe fn munmap(ptr: NonNull<u8>, len: usize) -> Result<()> {
    // SAFETY: forwarded from the caller's contract.
    unsafe { nix::sys::mman::munmap(ptr.cast(), len) }
}

/// `msync(ptr, len, MS_SYNC or MS_ASYNC)`; `ptr` must be page-aligned (callers round down).
pub(crate) fn msync(ptr: NonNull<u8>, len: usize, sync: bool) -> Result<()> {
    let flags = if sync { MsFlags::MS_SYNC } else { MsFlags::MS_ASYNC };
    // SAFETY: msync does not change the contents of the mapping; a range outside any mapping
    // fails with ENOMEM rather than touching memory.
    unsafe { nix::sys::mman::msync(ptr.cast(), len, flags) }
}

/// `madvise(ptr, len, advice)` for advice that never discards the contents of a shared mapping.
pub(crate) fn madvise(ptr: NonNull<u8>, len: usize, advice: MmapAdvise) -> Result<()> {
    // SAFETY: callers only pass advice that keeps the data (no MADV_DONTNEED / MADV_FREE /
    // MADV_REMOVE), so no memory visible to Rust code changes.
    unsafe { nix::sys::mman::madvise(ptr.cast(), len, advice) }
}

/// `mlock(ptr, len)`.
pub(crate) fn mlock(ptr: NonNull<u8>, len: usize) -> Result<()> {
    // SAFETY: mlock only pins pages; it never changes their contents.
    unsafe { nix::sys::mman::mlock(ptr.cast(), len) }
}

/// `munlock(ptr, len)`.
pub(crate) fn munlock(ptr: NonNull<u8>, len: usize) -> Result<()> {
    // SAFETY: munlock only unpins pages; it never changes their contents.
    unsafe { nix::sys::mman::munlock(ptr.cast(), len) }
}

/// `open(path, O_RDWR|O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC, mode)`: never follows a symlink and
/// never opens an existing file.
pub(crate) fn create_file(path: &Path, mode: u32) -> Result<OwnedFd> {
    let flags = OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = nix::fcntl::open(path, flags, Mode::from_bits_truncate(mode))?;
    // The umask may have removed bits the caller asked for; set exactly the mode requested.
    nix::sys::stat::fchmod(&fd, Mode::from_bits_truncate(mode))?;
    Ok(fd)
}

/// `open(path, O_RDWR or O_RDONLY | O_NOFOLLOW | O_CLOEXEC)`.
pub(crate) fn open_file(path: &Path, writable: bool) -> Result<OwnedFd> {
    let access = if writable { OFlag::O_RDWR } else { OFlag::O_RDONLY };
    nix::fcntl::open(path, access | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
}

/// What `fstat` says about an open descriptor.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FdInfo {
    pub size: u64,
    /// Device and inode: which object the descriptor refers to.
    pub dev: u64,
    pub ino: u64,
    pub is_regular: bool,
    pub is_dir: bool,
    pub mode: u32,
    pub uid: u32,
}

pub(crate) fn fstat(fd: BorrowedFd<'_>) -> Result<FdInfo> {
    let st: FileStat = nix::sys::stat::fstat(fd)?;
    let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
    Ok(FdInfo {
        size: u64::try_from(st.st_size).unwrap_or(0),
        dev: st.st_dev,
        ino: st.st_ino,
        is_regular: kind == SFlag::S_IFREG,
        is_dir: kind == SFlag::S_IFDIR,
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
    })
}

/// Reserve `len` bytes from offset 0 (`posix_fallocate`): the file grows to at least `len` and
/// its blocks are allocated now, so a full disk is `ENOSPC` here instead of SIGBUS later.
pub(crate) fn reserve(fd: BorrowedFd<'_>, len: u64) -> Result<()> {
    let len = libc::off_t::try_from(len).map_err(|_| Errno::EFBIG)?;
    nix::fcntl::posix_fallocate(fd, 0, len)
}

/// `ftruncate(fd, len)`.
pub(crate) fn truncate(fd: BorrowedFd<'_>, len: u64) -> Result<()> {
    let len = libc::off_t::try_from(len).map_err(|_| Errno::EFBIG)?;
    nix::unistd::ftruncate(fd, len)
}

/// `shm_open(name, O_RDWR|O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC, mode)`.
pub(crate) fn shm_create(name: &CStr, mode: u32) -> Result<OwnedFd> {
    let flags = OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = nix::sys::mman::shm_open(name, flags, Mode::from_bits_truncate(mode))?;
    nix::sys::stat::fchmod(&fd, Mode::from_bits_truncate(mode))?;
    Ok(fd)
}

/// `shm_open(name, O_RDWR or O_RDONLY | O_NOFOLLOW | O_CLOEXEC, 0)`.
pub(crate) fn shm_open(name: &CStr, writable: bool) -> Result<OwnedFd> {
    let access = if writable { OFlag::O_RDWR } else { OFlag::O_RDONLY };
    nix::sys::mman::shm_open(name, access | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
}

/// `shm_unlink(name)`.
pub(crate) fn shm_unlink(name: &CStr) -> Result<()> {
    nix::sys::mman::shm_unlink(name)
}

/// `memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING)`.
pub(crate) fn memfd_create(name: &CStr) -> Result<OwnedFd> {
    nix::sys::memfd::memfd_create(name, MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)
}

/// The seals that stop any holder of a memfd from changing its size, then sealing is itself sealed.
pub(crate) const SIZE_SEALS: i32 = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;

/// `fcntl(fd, F_ADD_SEALS, seals)`.
pub(crate) fn add_seals(fd: BorrowedFd<'_>, seals: i32) -> Result<()> {
    fcntl(fd, FcntlArg::F_ADD_SEALS(SealFlag::from_bits_truncate(seals))).map(drop)
}

/// `fcntl(fd, F_GET_SEALS)`; `EINVAL` when the object does not support seals.
pub(crate) fn get_seals(fd: BorrowedFd<'_>) -> Result<i32> {
    fcntl(fd, FcntlArg::F_GET_SEALS)
}

/// Send one descriptor over a connected Unix stream (`sendmsg` with `SCM_RIGHTS`), with a
/// one-byte payload so the message is never empty.
pub(crate) fn send_fd(sock: &UnixStream, fd: BorrowedFd<'_>) -> Result<()> {
    let fds = [fd.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let payload = [b'F'];
    let iov = [IoSlice::new(&payload)];
    loop {
        match nix::sys::socket::sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::MSG_NOSIGNAL, None) {
            Ok(1) => return Ok(()),
            Ok(_) => return Err(Errno::EIO),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Outcome of [`recv_fd`].
#[derive(Debug)]
pub(crate) enum Received {
    Fd(OwnedFd),
    /// The peer closed the stream before sending.
    Eof,
    /// A message arrived but carried no descriptor (or a truncated control message).
    NoFd,
}

/// Receive one descriptor sent by [`send_fd`]. Received descriptors are close-on-exec; any
/// extra descriptors a hostile sender packs in are closed.
pub(crate) fn recv_fd(sock: &UnixStream) -> Result<Received> {
    let mut payload = [0u8; 1];
    let mut cmsg_buf = nix::cmsg_space!([RawFd; 4]);
    loop {
        let mut iov = [IoSliceMut::new(&mut payload)];
        let msg = match nix::sys::socket::recvmsg::<()>(
            sock.as_fd().as_raw_fd(),
            &mut iov,
            Some(&mut cmsg_buf),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(m) => m,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        };
        let mut got: Option<OwnedFd> = None;
        for c in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                for raw in fds {
                    // SAFETY: the kernel just installed `raw` in our table for us; we are its
                    // only owner.
                    let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                    if got.is_none() {
                        got = Some(owned);
                    } // further descriptors drop (close) here
                }
            }
        }
        if msg.flags.contains(MsgFlags::MSG_CTRUNC) {
            return Ok(Received::NoFd);
        }
        return Ok(match (got, msg.bytes) {
            (Some(fd), _) => Received::Fd(fd),
            (None, 0) => Received::Eof,
            (None, _) => Received::NoFd,
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Open file description locks (liveness of ring ends)
// ---------------------------------------------------------------------------------------------

/// A one-byte lock request at `offset` of the file (`l_pid` 0, as OFD locks require).
fn flock_at(kind: libc::c_int, offset: u64) -> Result<libc::flock> {
    // SAFETY: `flock` is a plain C struct of integers (plus, on some targets, padding); all
    // zero is a valid value of it.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = libc::off_t::try_from(offset).map_err(|_| Errno::EOVERFLOW)?;
    fl.l_len = 1;
    Ok(fl)
}

fn retry_eintr<T>(mut f: impl FnMut() -> Result<T>) -> Result<T> {
    loop {
        match f() {
            Err(Errno::EINTR) => continue,
            r => return r,
        }
    }
}

/// `fcntl(fd, F_OFD_SETLK, {F_WRLCK or F_RDLCK, offset, 1 byte})`: lock one byte through the
/// open file description of `fd`, without waiting. `EAGAIN` (or `EACCES`) when another open
/// file description holds a conflicting lock.
pub(crate) fn ofd_lock(fd: BorrowedFd<'_>, offset: u64, write: bool) -> Result<()> {
    let fl = flock_at(if write { libc::F_WRLCK } else { libc::F_RDLCK }, offset)?;
    retry_eintr(|| fcntl(fd, FcntlArg::F_OFD_SETLK(&fl)).map(drop))
}

/// `fcntl(fd, F_OFD_SETLK, {F_UNLCK, offset, 1 byte})`.
pub(crate) fn ofd_unlock(fd: BorrowedFd<'_>, offset: u64) -> Result<()> {
    let fl = flock_at(libc::F_UNLCK, offset)?;
    retry_eintr(|| fcntl(fd, FcntlArg::F_OFD_SETLK(&fl)).map(drop))
}

/// `fcntl(fd, F_OFD_GETLK, {F_WRLCK, offset, 1 byte})`: whether some open file description other
/// than `fd`'s holds a lock (read or write) on that byte. Works on a read-only descriptor.
pub(crate) fn ofd_locked_elsewhere(fd: BorrowedFd<'_>, offset: u64) -> Result<bool> {
    retry_eintr(|| {
        let mut fl = flock_at(libc::F_WRLCK, offset)?;
        fcntl(fd, FcntlArg::F_OFD_GETLK(&mut fl))?;
        Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
    })
}

/// A new open file description of the object `fd` refers to, through `/proc/self/fd/N` (works
/// for files, POSIX shm objects and memfds alike, in any mount namespace that has a `/proc`).
/// `O_CLOEXEC`; read-write or read-only.
pub(crate) fn reopen_fd(fd: BorrowedFd<'_>, writable: bool) -> Result<OwnedFd> {
    let access = if writable { OFlag::O_RDWR } else { OFlag::O_RDONLY };
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    // No O_NOFOLLOW: /proc/self/fd/N is a magic link that must be followed to reach the object.
    retry_eintr(|| nix::fcntl::open(path.as_str(), access | OFlag::O_CLOEXEC, Mode::empty()))
}

// ---------------------------------------------------------------------------------------------
// Futexes: shared (no FUTEX_PRIVATE_FLAG), since the words live in memory other processes map
// ---------------------------------------------------------------------------------------------

/// `futex(word, FUTEX_WAIT, expected, timeout)`: sleep while `*word == expected`, for at most
/// `timeout` (relative, on the monotonic clock) if given.
pub(crate) fn futex_wait(
    word: &AtomicU32,
    expected: u32,
    timeout: Option<&rustix::thread::futex::Timespec>,
) -> Result<()> {
    use rustix::thread::futex;
    futex::wait(word, futex::Flags::empty(), expected, timeout).map_err(rustix_errno)
}

/// `futex(word, FUTEX_WAKE, n)`: wake up to `n` sleepers on `word`; returns how many woke. The
/// kernel reads `n` as an `int`, and `n == 0` still wakes one, so callers pass `1..=i32::MAX`.
pub(crate) fn futex_wake(word: &AtomicU32, n: u32) -> Result<usize> {
    use rustix::thread::futex;
    debug_assert!((1..=i32::MAX as u32).contains(&n));
    futex::wake(word, futex::Flags::empty(), n).map_err(rustix_errno)
}

/// `futex_waitv(words, n, 0, deadline, CLOCK_MONOTONIC)` (Linux >= 5.16): sleep until a
/// `FUTEX_WAKE` on any of `words` (address, expected value; shared futexes), or `timeout`
/// from now; the index of a woken word. The addresses are handed to the kernel only (never
/// dereferenced here): an address no longer mapped is `EFAULT`, not undefined behaviour.
pub(crate) fn futex_waitv(words: &[crate::futex::WaitWord], timeout: Option<Duration>) -> Result<usize> {
    use rustix::thread::futex;
    let waiters: Vec<futex::Wait> = words
        .iter()
        .map(|word| {
            let mut w = futex::Wait::new();
            w.val = u64::from(word.expected);
            w.uaddr = futex::WaitPtr::new(word.addr.cast_mut().cast());
            w.flags = futex::WaitFlags::SIZE_U32;
            w
        })
        .collect();
    // The timeout of futex_waitv is a deadline on the clock named.
    let deadline = match timeout {
        None => None,
        Some(d) => {
            let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)?;
            let at = Duration::new(now.tv_sec() as u64, now.tv_nsec() as u32).checked_add(d);
            at.map(|at| futex::Timespec {
                tv_sec: at.as_secs() as i64,
                tv_nsec: i64::from(at.subsec_nanos()),
            })
        }
    };
    futex::waitv(&waiters, futex::WaitvFlags::empty(), deadline.as_ref(), futex::ClockId::Monotonic)
        .map_err(rustix_errno)
}

fn rustix_errno(e: rustix::io::Errno) -> Errno {
    Errno::from_raw(e.raw_os_error())
}

// ---------------------------------------------------------------------------------------------
// Processes: kill(pid, 0), /proc/PID/stat, namespaces
// ---------------------------------------------------------------------------------------------

/// `kill(pid, 0)`: `Ok` or `EPERM` when a process with this pid exists in the caller's PID
/// namespace (a zombie included), `ESRCH` when none does. `pid` must be positive (0 and -1
/// name groups of processes); anything else is `EINVAL` without a call.
pub(crate) fn kill_probe(pid: i32) -> Result<()> {
    if pid <= 0 {
        return Err(Errno::EINVAL);
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
}

/// `getpid()`.
pub(crate) fn getpid() -> i32 {
    nix::unistd::getpid().as_raw()
}

/// `geteuid()`.
pub(crate) fn geteuid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// What `/proc/PID/stat` says about a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ProcStat {
    /// Field 3: `R`, `S`, `D`, `Z` (zombie), `X` (dead), ...
    pub state: u8,
    /// Field 22: start time in clock ticks since boot, as seen from the reader's time namespace.
    pub start_time: u64,
    /// Field 20: threads in the process. A process whose main thread exited while others run
    /// shows state `Z` with more than one thread: it is alive.
    pub threads: u64,
}

fn io_errno(e: std::io::Error) -> Errno {
    e.raw_os_error().map(Errno::from_raw).unwrap_or(Errno::EIO)
}

/// Parse the text of a `/proc/PID/stat` file.
pub(crate) fn parse_proc_stat(stat: &str) -> Option<ProcStat> {
    // The command name (field 2) is in parentheses and may contain spaces or ')': skip to the
    // last ')'. After it come field 3 (state) onwards; starttime is field 22.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = *fields.next()?.as_bytes().first()?;
    let threads = fields.nth(16)?.parse().ok()?;
    let start_time = fields.nth(1)?.parse().ok()?;
    Some(ProcStat { state, start_time, threads })
}

/// Read `/proc/PID/stat` (`pid` None: `/proc/self/stat`). The errno of the failing read
/// (`ENOENT` when there is no such entry, which `hidepid` also gives; `EACCES`; `EMFILE` at the
/// descriptor limit), or `EINVAL` when the text does not parse.
pub(crate) fn proc_stat(pid: Option<i32>) -> Result<ProcStat> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let text = std::fs::read_to_string(path).map_err(io_errno)?;
    parse_proc_stat(&text).ok_or(Errno::EINVAL)
}

/// Whether the `/proc` mounted here shows the caller's own PID namespace, so that `/proc/PID`
/// names the same process as `kill(PID)`: `NSpid` in `/proc/self/status` then has exactly one
/// entry (it lists the pid from the namespace of the `/proc` mount down to the caller's own).
/// False when it cannot be told (no `/proc`, a `/proc` of another namespace, a read error).
pub(crate) fn proc_shows_own_pid_namespace() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else { return false };
    match status.lines().find_map(|l| l.strip_prefix("NSpid:")) {
        Some(pids) => pids.split_ascii_whitespace().count() == 1,
        // Kernels before 4.1 have no NSpid: /proc/self must then name the caller's own pid.
        None => std::fs::read_link("/proc/self")
            .ok()
            .and_then(|p| p.to_str().and_then(|s| s.parse::<i32>().ok()))
            .is_some_and(|p| p == getpid()),
    }
}

/// The namespace of kind `kind` ("pid", "time", ...) of process `pid` (None: the caller), as
/// (device, inode) of `/proc/PID/ns/KIND`: two processes share a namespace iff these match.
pub(crate) fn namespace_of(pid: Option<i32>, kind: &str) -> Result<(u64, u64)> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/ns/{kind}"),
        None => format!("/proc/self/ns/{kind}"),
    };
    let st = nix::sys::stat::stat(path.as_str())?;
    Ok((st.st_dev, st.st_ino))
}
