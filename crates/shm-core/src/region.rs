//! [`Region`]: one mapping, its constructors and its operations.

use std::fmt;
use std::io;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::ptr::NonNull;

use nix::sys::mman::MmapAdvise;

use crate::atomic_copy;
use crate::error::{errno_io, AccessError, Backing, CreateError, MapError, OpenError};
use crate::name::ShmName;
use crate::sys::{self, Sharing};

/// The default mode of created files and shm objects: read-write for the owner only.
pub const DEFAULT_MODE: u32 = 0o600;

/// The seals a memfd must carry before [`OpenOptions::sealed`] maps it.
pub const REQUIRED_SEALS: i32 = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;

/// The system page size.
pub fn page_size() -> usize {
    sys::page_size()
}

/// One memory mapping, unmapped on drop.
///
/// Another process may write the memory at any time, so a `Region` hands out raw pointers only
/// ([`as_ptr`](Region::as_ptr), [`as_mut_ptr`](Region::as_mut_ptr)) and never `&[u8]`: build
/// atomics on them, or copy with [`read_at`](Region::read_at) / [`write_at`](Region::write_at)
/// or the [`atomic_copy`](crate::atomic_copy) functions.
///
/// # Safety of file-backed regions
/// If another process truncates a mapped file, touching the lost pages raises `SIGBUS`. Creation
/// reserves the space up front and opening checks the size, but a plain file can still be
/// truncated later by anyone allowed to write it. Use a sealed memfd
/// ([`Region::create_memfd`]) when the peer is not trusted.
pub struct Region {
    ptr: NonNull<u8>,
    len: usize,
    offset: u64,
    writable: bool,
    sharing: Sharing,
    backing: Backing,
    fd: Option<OwnedFd>,
}

// SAFETY: a Region is a pointer to memory that stays mapped until drop; it exposes that memory
// only through raw pointers and bounds-checked copies, so sharing or sending it between threads
// is as safe as sharing it between processes.
unsafe impl Send for Region {}
// SAFETY: see `Send`; no method takes a reference into the mapped memory.
unsafe impl Sync for Region {}

impl fmt::Debug for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Region")
            .field("backing", &self.backing)
            .field("ptr", &self.ptr)
            .field("len", &self.len)
            .field("offset", &self.offset)
            .field("writable", &self.writable)
            .field("shared", &(self.sharing == Sharing::Shared))
            .finish()
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: ptr/len is the mapping made at construction, and this is its last use.
        let _ = unsafe { sys::munmap(self.ptr, self.len) };
    }
}

/// Advice for [`Region::advise`] (`madvise`). Only kinds that never discard data are offered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Advice {
    /// No special treatment.
    Normal,
    /// Expect sequential access: read ahead aggressively.
    Sequential,
    /// Expect random access: no read-ahead.
    Random,
    /// The pages will be needed soon: start reading them in.
    WillNeed,
    /// Back with transparent huge pages where the kernel supports it for this kind of memory.
    HugePage,
    /// Do not use transparent huge pages.
    NoHugePage,
}

impl Advice {
    fn to_nix(self) -> MmapAdvise {
        match self {
            Advice::Normal => MmapAdvise::MADV_NORMAL,
            Advice::Sequential => MmapAdvise::MADV_SEQUENTIAL,
            Advice::Random => MmapAdvise::MADV_RANDOM,
            Advice::WillNeed => MmapAdvise::MADV_WILLNEED,
            Advice::HugePage => MmapAdvise::MADV_HUGEPAGE,
            Advice::NoHugePage => MmapAdvise::MADV_NOHUGEPAGE,
        }
    }
}

fn nonzero_len(len: u64, offset: u64, backing: &Backing) -> Result<NonZeroUsize, MapError> {
    let too_large = || MapError::TooLarge { backing: backing.clone(), len, offset };
    let n = usize::try_from(len).map_err(|_| too_large())?;
    if offset.checked_add(len).and_then(|end| i64::try_from(end).ok()).is_none() {
        return Err(too_large());
    }
    NonZeroUsize::new(n).ok_or_else(|| MapError::ZeroLength { backing: backing.clone() })
}

fn map_error(backing: &Backing, len: usize, offset: u64, e: nix::errno::Errno) -> MapError {
    MapError::Mmap { backing: backing.clone(), len, offset, source: errno_io(e) }
}

impl Region {
    /// A `MAP_SHARED | MAP_ANONYMOUS` region of `len` bytes, zero-filled. A child created with
    /// `fork` after this call shares it: each side sees the other's writes.
    pub fn anonymous(len: usize) -> Result<Region, MapError> {
        let backing = Backing::Anonymous;
        let n = nonzero_len(len as u64, 0, &backing)?;
        let ptr = sys::mmap_anonymous(n).map_err(|e| map_error(&backing, len, 0, e))?;
        Ok(Region { ptr, len, offset: 0, writable: true, sharing: Sharing::Shared, backing, fd: None })
    }

    /// Create a new file of `len` bytes (mode 0600) and map it shared. See [`CreateOptions`].
    pub fn create_file(path: impl AsRef<Path>, len: usize) -> Result<Region, CreateError> {
        CreateOptions::new().create_file(path, len)
    }

    /// Open an existing file read-write and map all of it shared. See [`OpenOptions`].
    pub fn open_file(path: impl AsRef<Path>) -> Result<Region, OpenError> {
        OpenOptions::new().open_file(path)
    }

    /// Create a new POSIX shared-memory object of `len` bytes (mode 0600) and map it.
    pub fn create_shm(name: &str, len: usize) -> Result<Region, CreateError> {
        CreateOptions::new().create_shm(name, len)
    }

    /// Open an existing POSIX shared-memory object read-write and map all of it.
    pub fn open_shm(name: &str) -> Result<Region, OpenError> {
        OpenOptions::new().open_shm(name)
    }

    /// Remove a POSIX shared-memory object's name. Existing mappings stay valid.
    pub fn unlink_shm(name: &str) -> Result<(), OpenError> {
        let name = ShmName::new(name)?;
        let backing = Backing::Shm(name.to_string());
        sys::shm_unlink(name.as_c_str()).map_err(|e| OpenError::from_errno(&backing, "shm_unlink", true, e))
    }

    /// Create a memfd of `len` bytes sealed with `F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL`,
    /// so no holder of the descriptor can ever change its size, and map it. Send
    /// [`fd`](Region::fd) to another process with [`send_fd`](crate::send_fd); it maps it with
    /// [`Region::open_memfd`].
    pub fn create_memfd(name: &str, len: usize) -> Result<Region, CreateError> {
        CreateOptions::new().create_memfd(name, len)
    }

    /// Map a received memfd after checking that it is sealed against resizing.
    pub fn open_memfd(fd: OwnedFd) -> Result<Region, OpenError> {
        OpenOptions::new().sealed().open_fd(fd)
    }

    /// The start of the mapping. Another process may write it at any time.
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    /// The start of the mapping, for writing. Writing a read-only region raises `SIGSEGV`:
    /// check [`is_writable`](Region::is_writable).
    pub fn as_mut_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The mapping's length in bytes (never 0).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always `false`: a region has at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Offset of the mapping in its file or object.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Whether the mapping may be written.
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    /// Whether writes reach the backing object and other processes (`MAP_SHARED`), as opposed
    /// to a private copy-on-write view.
    pub fn is_shared(&self) -> bool {
        self.sharing == Sharing::Shared
    }

    /// What this region maps.
    pub fn backing(&self) -> &Backing {
        &self.backing
    }

    /// The descriptor of the backing object, kept open for memfd regions (to pass it on) and for
    /// file and shm regions; `None` for anonymous regions.
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.fd.as_ref().map(|fd| fd.as_fd())
    }

    /// Permission bits of the backing object (`st_mode & 0o7777`); `None` when anonymous.
    pub fn mode(&self) -> Option<u32> {
        self.fd.as_ref().and_then(|fd| sys::fstat(fd.as_fd()).ok()).map(|i| i.mode)
    }

    /// Owner uid of the backing object; `None` when anonymous.
    pub fn owner_uid(&self) -> Option<u32> {
        self.fd.as_ref().and_then(|fd| sys::fstat(fd.as_fd()).ok()).map(|i| i.uid)
    }

    fn check_range(&self, offset: usize, len: usize) -> Result<(), AccessError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(AccessError::OutOfBounds { offset, len, region_len: self.len }),
        }
    }

    /// Copy `buf.len()` bytes from `offset` into `buf`, with atomic loads
    /// ([`atomic_copy::load`](crate::atomic_copy::load)), so a process writing the bytes
    /// meanwhile cannot cause undefined behaviour; it can make the copy see a mix of old and new
    /// bytes: synchronise with atomics for anything structured.
    pub fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<(), AccessError> {
        self.check_range(offset, buf.len())?;
        // SAFETY: the range is inside the mapping (checked above), which stays mapped while
        // `self` lives; `buf` is ordinary memory that cannot overlap a mapping we own; the
        // mapping is only ever accessed through atomics and these atomic copies in this process.
        unsafe { atomic_copy::load(self.ptr.as_ptr().add(offset), buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    /// Copy `data` into the region at `offset`, with atomic stores (see
    /// [`read_at`](Region::read_at)).
    pub fn write_at(&self, offset: usize, data: &[u8]) -> Result<(), AccessError> {
        if !self.writable {
            return Err(AccessError::ReadOnly);
        }
        self.check_range(offset, data.len())?;
        // SAFETY: the range is inside a writable mapping (checked above); `data` is ordinary
        // memory and cannot overlap it; accesses as in `read_at`.
        unsafe { atomic_copy::store(data.as_ptr(), self.ptr.as_ptr().add(offset), data.len()) };
        Ok(())
    }

    /// The page-aligned span covering `offset..offset+len`, for msync / madvise / mlock.
    fn page_span(&self, offset: usize, len: usize) -> io::Result<(NonNull<u8>, usize)> {
        self.check_range(offset, len)?;
        let page = page_size();
        let start = self.ptr.as_ptr() as usize + offset;
        let aligned = start & !(page - 1);
        let span = len + (start - aligned);
        // Mapping addresses are page-aligned, so `aligned` is never below the mapping start.
        let ptr = NonNull::new(aligned as *mut u8).expect("non-null: inside a mapping");
        Ok((ptr, span))
    }

    /// Write dirty pages back to the file and wait (`msync(MS_SYNC)`). A no-op for anonymous,
    /// shm and private mappings as far as durability goes, but always safe to call.
    pub fn flush(&self) -> io::Result<()> {
        self.flush_range(0, self.len)
    }

    /// Start writing dirty pages back without waiting (`msync(MS_ASYNC)`).
    pub fn flush_async(&self) -> io::Result<()> {
        self.flush_async_range(0, self.len)
    }

    /// [`flush`](Region::flush) for `offset..offset+len` (widened to whole pages).
    pub fn flush_range(&self, offset: usize, len: usize) -> io::Result<()> {
        let (p, n) = self.page_span(offset, len)?;
        sys::msync(p, n, true).map_err(errno_io)
    }

    /// [`flush_async`](Region::flush_async) for `offset..offset+len` (widened to whole pages).
    pub fn flush_async_range(&self, offset: usize, len: usize) -> io::Result<()> {
        let (p, n) = self.page_span(offset, len)?;
        sys::msync(p, n, false).map_err(errno_io)
    }

    /// Give the kernel a hint about the whole region (`madvise`).
    pub fn advise(&self, advice: Advice) -> io::Result<()> {
        self.advise_range(advice, 0, self.len)
    }

    /// [`advise`](Region::advise) for `offset..offset+len` (widened to whole pages).
    /// `HugePage` fails with `EINVAL` where the kernel does not support it for this memory.
    pub fn advise_range(&self, advice: Advice, offset: usize, len: usize) -> io::Result<()> {
        let (p, n) = self.page_span(offset, len)?;
        sys::madvise(p, n, advice.to_nix()).map_err(errno_io)
    }

    /// Fault every page in now so the first message does not pay for page faults
    /// (`MADV_POPULATE_WRITE`/`READ` where the kernel has them, otherwise a read of each page).
    pub fn prefault(&self) -> io::Result<()> {
        let advice = if self.writable && self.sharing == Sharing::Shared {
            MmapAdvise::MADV_POPULATE_WRITE
        } else {
            MmapAdvise::MADV_POPULATE_READ
        };
        if sys::madvise(self.ptr, self.len, advice).is_ok() {
            return Ok(());
        }
        let page = page_size();
        for off in (0..self.len).step_by(page) {
            // SAFETY: `off < len`, inside the mapping; a Relaxed 1-byte atomic load is sound
            // whatever another process writes, and on read-only mappings. black_box keeps it.
            let byte = unsafe { &*(self.ptr.as_ptr().add(off) as *const std::sync::atomic::AtomicU8) };
            std::hint::black_box(byte.load(std::sync::atomic::Ordering::Relaxed));
        }
        Ok(())
    }

    /// Lock the region's pages in RAM (`mlock`); may fail with `ENOMEM`/`EPERM` under
    /// `RLIMIT_MEMLOCK`.
    pub fn lock(&self) -> io::Result<()> {
        sys::mlock(self.ptr, self.len).map_err(errno_io)
    }

    /// Undo [`lock`](Region::lock).
    pub fn unlock(&self) -> io::Result<()> {
        sys::munlock(self.ptr, self.len).map_err(errno_io)
    }
}

/// Options for creating a backing object: the mode of new files and shm objects.
///
/// ```no_run
/// let region = shm_core::CreateOptions::new().mode(0o640).create_file("/tmp/ring", 1 << 20)?;
/// # Ok::<(), shm_core::CreateError>(())
/// ```
#[derive(Clone, Debug)]
pub struct CreateOptions {
    mode: u32,
}

impl Default for CreateOptions {
    fn default() -> Self {
        CreateOptions::new()
    }
}

impl CreateOptions {
    /// Mode 0600.
    pub fn new() -> CreateOptions {
        CreateOptions { mode: DEFAULT_MODE }
    }

    /// Permission bits of the new object (set exactly, whatever the umask).
    pub fn mode(mut self, mode: u32) -> CreateOptions {
        self.mode = mode & 0o7777;
        self
    }

    /// Create `path` (`O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC`), reserve `len` bytes with
    /// `posix_fallocate`, and map it shared. The file is removed again if anything fails.
    pub fn create_file(&self, path: impl AsRef<Path>, len: usize) -> Result<Region, CreateError> {
        let path = path.as_ref();
        let backing = Backing::File(path.to_path_buf());
        if len == 0 {
            return Err(CreateError::ZeroLength { backing });
        }
        let fd = sys::create_file(path, self.mode)
            .map_err(|e| CreateError::from_errno(&backing, "open(O_CREAT|O_EXCL)", len as u64, e))?;
        finish_create(fd, len, backing).inspect_err(|_| {
            let _ = std::fs::remove_file(path);
        })
    }

    /// Create the POSIX shm object `name`, reserve `len` bytes and map it. The name is unlinked
    /// again if anything fails.
    pub fn create_shm(&self, name: &str, len: usize) -> Result<Region, CreateError> {
        let name = ShmName::new(name)?;
        let backing = Backing::Shm(name.to_string());
        if len == 0 {
            return Err(CreateError::ZeroLength { backing });
        }
        let fd = sys::shm_create(name.as_c_str(), self.mode)
            .map_err(|e| CreateError::from_errno(&backing, "shm_open(O_CREAT|O_EXCL)", len as u64, e))?;
        finish_create(fd, len, backing).inspect_err(|_| {
            let _ = sys::shm_unlink(name.as_c_str());
        })
    }

    /// Create a memfd of `len` bytes, seal its size (`F_SEAL_SHRINK|F_SEAL_GROW`, then
    /// `F_SEAL_SEAL`) and map it. The mode does not apply: a memfd has no name in any directory.
    pub fn create_memfd(&self, name: &str, len: usize) -> Result<Region, CreateError> {
        let backing = Backing::Memfd(name.to_owned());
        if len == 0 {
            return Err(CreateError::ZeroLength { backing });
        }
        let cname = std::ffi::CString::new(name).map_err(|_| CreateError::Io {
            backing: backing.clone(),
            op: "memfd_create",
            source: io::Error::new(io::ErrorKind::InvalidInput, "memfd name contains a NUL byte"),
        })?;
        let fd = sys::memfd_create(&cname)
            .map_err(|e| CreateError::from_errno(&backing, "memfd_create", len as u64, e))?;
        let region = finish_create(fd, len, backing.clone())?;
        let fd = region.fd().expect("created regions keep their descriptor");
        sys::add_seals(fd, sys::SIZE_SEALS)
            .and_then(|()| sys::add_seals(fd, libc::F_SEAL_SEAL))
            .map_err(|e| CreateError::from_errno(&backing, "fcntl(F_ADD_SEALS)", len as u64, e))?;
        Ok(region)
    }
}

/// Reserve `len` bytes in a freshly created object and map it shared.
fn finish_create(fd: OwnedFd, len: usize, backing: Backing) -> Result<Region, CreateError> {
    let n = nonzero_len(len as u64, 0, &backing)?;
    // tmpfs and most filesystems allocate for real; where posix_fallocate is not supported at
    // all (EOPNOTSUPP, e.g. some FUSE filesystems), fall back to ftruncate and say nothing.
    match sys::reserve(fd.as_fd(), len as u64) {
        Ok(()) => {}
        Err(nix::errno::Errno::EOPNOTSUPP) => sys::truncate(fd.as_fd(), len as u64)
            .map_err(|e| CreateError::from_errno(&backing, "ftruncate", len as u64, e))?,
        Err(e) => return Err(CreateError::from_errno(&backing, "posix_fallocate", len as u64, e)),
    }
    let ptr =
        sys::mmap_fd(fd.as_fd(), n, 0, true, Sharing::Shared).map_err(|e| map_error(&backing, len, 0, e))?;
    Ok(Region { ptr, len, offset: 0, writable: true, sharing: Sharing::Shared, backing, fd: Some(fd) })
}

/// Options for opening and mapping an existing object.
///
/// ```no_run
/// use shm_core::OpenOptions;
/// // Map 64 KiB at offset 1 MiB of a large file, read-only.
/// let region = OpenOptions::new().read_only().offset(1 << 20).len(64 << 10).open_file("/tmp/big")?;
/// # Ok::<(), shm_core::OpenError>(())
/// ```
#[derive(Clone, Debug)]
pub struct OpenOptions {
    writable: bool,
    sharing: Sharing,
    offset: u64,
    len: Option<usize>,
    sealed: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions::new()
    }
}

impl OpenOptions {
    /// Read-write, shared, the whole object.
    pub fn new() -> OpenOptions {
        OpenOptions { writable: true, sharing: Sharing::Shared, offset: 0, len: None, sealed: false }
    }

    /// Open and map read-only (`O_RDONLY`, `PROT_READ`).
    pub fn read_only(mut self) -> OpenOptions {
        self.writable = false;
        self.sharing = Sharing::Shared;
        self
    }

    /// A private copy-on-write view (`MAP_PRIVATE`): the object is opened read-only, the
    /// mapping is writable, and writes stay in this process.
    pub fn private(mut self) -> OpenOptions {
        self.writable = true;
        self.sharing = Sharing::Private;
        self
    }

    /// Map from this offset (a multiple of [`page_size`]).
    pub fn offset(mut self, offset: u64) -> OpenOptions {
        self.offset = offset;
        self
    }

    /// Map exactly this many bytes; the object must hold `offset + len` bytes. Without it the
    /// mapping runs from the offset to the end of the object.
    pub fn len(mut self, len: usize) -> OpenOptions {
        self.len = Some(len);
        self
    }

    /// Require the memfd seals [`REQUIRED_SEALS`] before mapping.
    pub fn sealed(mut self) -> OpenOptions {
        self.sealed = true;
        self
    }

    /// Whether the descriptor must be opened for writing.
    fn fd_writable(&self) -> bool {
        self.writable && self.sharing == Sharing::Shared
    }

    /// Open the regular file `path` (never following a symlink) and map it.
    pub fn open_file(&self, path: impl AsRef<Path>) -> Result<Region, OpenError> {
        let path = path.as_ref();
        let backing = Backing::File(path.to_path_buf());
        self.precheck(&backing)?;
        let fd = sys::open_file(path, self.fd_writable())
            .map_err(|e| OpenError::from_errno(&backing, "open", self.fd_writable(), e))?;
        self.map(fd, backing)
    }

    /// Open the POSIX shm object `name` and map it.
    pub fn open_shm(&self, name: &str) -> Result<Region, OpenError> {
        let name = ShmName::new(name)?;
        let backing = Backing::Shm(name.to_string());
        self.precheck(&backing)?;
        let fd = sys::shm_open(name.as_c_str(), self.fd_writable())
            .map_err(|e| OpenError::from_errno(&backing, "shm_open", self.fd_writable(), e))?;
        self.map(fd, backing)
    }

    /// Map a descriptor (a file, shm object or memfd received from another process). With
    /// [`sealed`](OpenOptions::sealed) its seals are checked first.
    pub fn open_fd(&self, fd: OwnedFd) -> Result<Region, OpenError> {
        use std::os::fd::AsRawFd;
        let backing = Backing::Fd(fd.as_raw_fd());
        self.precheck(&backing)?;
        self.map(fd, backing)
    }

    fn precheck(&self, backing: &Backing) -> Result<(), OpenError> {
        if self.len == Some(0) {
            return Err(OpenError::ZeroLength { backing: backing.clone() });
        }
        let page = page_size();
        if self.offset % page as u64 != 0 {
            return Err(OpenError::UnalignedOffset {
                backing: backing.clone(),
                offset: self.offset,
                page_size: page,
            });
        }
        Ok(())
    }

    fn map(&self, fd: OwnedFd, backing: Backing) -> Result<Region, OpenError> {
        let info = sys::fstat(fd.as_fd()).map_err(|e| OpenError::Io {
            backing: backing.clone(),
            op: "fstat",
            source: errno_io(e),
        })?;
        if !info.is_regular {
            let found = if info.is_dir { "directory" } else { "special file (not a regular file)" };
            return Err(OpenError::NotRegularFile { backing, found });
        }
        if self.sealed {
            let found = sys::get_seals(fd.as_fd()).unwrap_or(0);
            if found & REQUIRED_SEALS != REQUIRED_SEALS {
                return Err(OpenError::MissingSeals { backing, found, expected: REQUIRED_SEALS });
            }
        }
        let len = match self.len {
            Some(len) => len as u64,
            None => info.size.saturating_sub(self.offset),
        };
        if len == 0 {
            return Err(OpenError::TooSmall {
                backing,
                need: self.offset.saturating_add(1),
                have: info.size,
            });
        }
        let need = self.offset.saturating_add(len);
        if info.size < need {
            return Err(OpenError::TooSmall { backing, need, have: info.size });
        }
        let n = nonzero_len(len, self.offset, &backing)?;
        let ptr = sys::mmap_fd(fd.as_fd(), n, self.offset, self.writable, self.sharing)
            .map_err(|e| map_error(&backing, n.get(), self.offset, e))?;
        Ok(Region {
            ptr,
            len: n.get(),
            offset: self.offset,
            writable: self.writable,
            sharing: self.sharing,
            backing,
            fd: Some(fd),
        })
    }
}
