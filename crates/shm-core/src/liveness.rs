//! Liveness of the processes that hold the ends of a shared object, from positive evidence only:
//! [`Liveness`], and the open-file-description locks ([`EndLock`], [`Region::lock_end`],
//! [`Region::probe_end`]) that prove a holder alive across PID namespaces.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;

use crate::error::{errno_io, Backing};
use crate::name::ShmName;
use crate::region::Region;
use crate::sys;

/// What the evidence says about a process (or the holder of a lock).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Liveness {
    /// Positively alive: its lock is held, or its pid runs with the recorded start time.
    Alive,
    /// Positively gone: its lock was released by the kernel, its pid does not exist, or the pid
    /// belongs to a zombie or (by start time) to a later process.
    Gone,
    /// Nothing could be established (an error while checking, a pid not visible from here, no
    /// evidence at all). Never to be taken for dead.
    Unknown,
}

impl fmt::Display for Liveness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Liveness::Alive => "alive",
            Liveness::Gone => "gone",
            Liveness::Unknown => "unknown",
        })
    }
}

/// A lock on one byte of a region's backing object, held through an open file description of
/// its own. Unlocked and closed on drop; the kernel releases it by itself when the process dies.
///
/// # Why locks
/// A pid means something only inside one PID namespace, and `/proc` may be missing, mounted
/// for another namespace, or hiding other users' processes (`hidepid`). A lock, in contrast, is
/// kept by the kernel on the object itself (the inode) and released when the last descriptor of
/// the open file description that took it is closed: when its process exits or is killed,
/// whatever namespace it runs in. So each end of a ring takes an OFD lock (`F_OFD_SETLK`) on one
/// byte of the backing object specific to its slot, and any process that maps the same object
/// probes that byte (`F_OFD_GETLK`, [`Region::probe_end`]): a lock there proves the holder alive,
/// no lock proves it gone, and a failed probe proves nothing.
///
/// OFD locks of one open file description never conflict with each other, so
/// [`Region::lock_end`] takes the lock through an open file description of its own (the object
/// reopened through `/proc/self/fd/N`, or by path or shm name where there is no `/proc`,
/// checking that device and inode match), and probes go through the region's own descriptor,
/// which never holds a lock. That way two ends in one process, even on one [`Region`], see each
/// other's locks.
///
/// A child forked after the lock was taken inherits its open file description: the lock (and
/// so the end) then only looks gone once the child has exited too. That errs on the safe side:
/// a late verdict, never a false death. Dropping the `EndLock` unlocks explicitly, so a clean
/// close is seen at once even then. The descriptor is close-on-exec: a child that `exec`s drops
/// it.
///
/// Locks live where the file's locks live: on one kernel. A file shared between kernels
/// (network filesystems, virtual machines) is outside what this evidence covers.
pub struct EndLock {
    fd: OwnedFd,
    /// Offset of the locked byte in the backing object.
    offset: u64,
    /// The process that took the lock: a child forked from it shares the open file description,
    /// and dropping the child's copy must not unlock the parent's lock.
    pid: u32,
}

impl EndLock {
    /// Offset of the locked byte in the backing object (the region's offset plus the offset
    /// given to [`Region::lock_end`]).
    pub fn offset(&self) -> u64 {
        self.offset
    }
}

impl fmt::Debug for EndLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndLock").field("fd", &self.fd).field("offset", &self.offset).finish()
    }
}

impl Drop for EndLock {
    fn drop(&mut self) {
        // Unlock explicitly before closing: a child forked meanwhile shares this open file
        // description, and only an unlock releases the lock while the child keeps it open. In
        // such a child (a copy of the end dropped after fork) only close our descriptor: the
        // lock is the parent's.
        if std::process::id() == self.pid {
            let _ = sys::ofd_unlock(self.fd.as_fd(), self.offset);
        }
    }
}

impl Region {
    /// Take a write lock (a read lock on a read-only region) on byte `offset` of this region,
    /// through a new open file description of the backing object, to prove to other processes
    /// that the caller lives for as long as the returned [`EndLock`] does.
    ///
    /// - `Ok(Some(lock))`: locked.
    /// - `Ok(None)`: no lock can be had here: an anonymous or private region, or no new open
    ///   file description of the object could be made (no `/proc` and no path or name to reopen,
    ///   the descriptor limit, ...). Nothing was learned about other holders.
    /// - `Err` of kind [`io::ErrorKind::WouldBlock`]: another open file description holds a lock
    ///   on that byte: its holder is alive.
    /// - any other `Err`: the lock call failed (`ENOLCK`, ...); nothing was learned.
    pub fn lock_end(&self, offset: usize) -> io::Result<Option<EndLock>> {
        let Some(fd) = self.fd() else { return Ok(None) };
        if !self.is_shared() {
            return Ok(None);
        }
        let at = self.lock_offset(offset)?;
        let Some(own) = self.reopen(fd) else { return Ok(None) };
        match sys::ofd_lock(own.as_fd(), at, self.is_writable()) {
            Ok(()) => Ok(Some(EndLock { fd: own, offset: at, pid: std::process::id() })),
            Err(Errno::EAGAIN | Errno::EACCES) => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "cannot lock byte {at} of {}: expected it unlocked, but another open file description holds a lock on it",
                    self.backing()
                ),
            )),
            Err(e) => Err(io::Error::new(
                errno_io(e).kind(),
                format!("fcntl(F_OFD_SETLK) on byte {at} of {} failed: {e}", self.backing()),
            )),
        }
    }

    /// Whether some open file description holds a lock on byte `offset` of this region
    /// (`F_OFD_GETLK` through the region's own descriptor, which never holds one): `Alive` if
    /// one does, `Gone` if none does, `Unknown` when the region has no descriptor (anonymous)
    /// or the probe fails. Needs no new descriptor, so it works at the descriptor limit.
    pub fn probe_end(&self, offset: usize) -> Liveness {
        let Some(fd) = self.fd() else { return Liveness::Unknown };
        let Ok(at) = self.lock_offset(offset) else { return Liveness::Unknown };
        match sys::ofd_locked_elsewhere(fd, at) {
            Ok(true) => Liveness::Alive,
            Ok(false) => Liveness::Gone,
            Err(_) => Liveness::Unknown,
        }
    }

    /// The offset in the backing object of byte `offset` of the mapping.
    fn lock_offset(&self, offset: usize) -> io::Result<u64> {
        if offset >= self.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "cannot lock byte {offset} of {}: expected an offset below the region length {}",
                    self.backing(),
                    self.len()
                ),
            ));
        }
        Ok(self.offset() + offset as u64)
    }

    /// A new open file description of the backing object: through `/proc/self/fd/N`, else by
    /// path (files) or name (POSIX shm); only accepted if it is the same object (device and
    /// inode).
    fn reopen(&self, fd: BorrowedFd<'_>) -> Option<OwnedFd> {
        let want = sys::fstat(fd).ok()?;
        let same =
            |new: &OwnedFd| sys::fstat(new.as_fd()).is_ok_and(|i| (i.dev, i.ino) == (want.dev, want.ino));
        let writable = self.is_writable();
        if let Ok(new) = sys::reopen_fd(fd, writable) {
            if same(&new) {
                return Some(new);
            }
        }
        let new = match self.backing() {
            Backing::File(path) => sys::open_file(path, writable).ok()?,
            Backing::Shm(name) => sys::shm_open(ShmName::new(name).ok()?.as_c_str(), writable).ok()?,
            _ => return None,
        };
        same(&new).then_some(new)
    }
}
