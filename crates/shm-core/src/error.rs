//! One error type per operation: [`MapError`] (mapping memory), [`CreateError`] (creating a
//! backing object), [`OpenError`] (opening an existing one), plus [`NameError`] for POSIX shm
//! names and [`AccessError`] for out-of-range reads and writes. Every variant names the object
//! and the sizes involved, and each converts into [`std::io::Error`] with a fitting kind.

use std::fmt;
use std::io;
use std::path::PathBuf;

use nix::errno::Errno;

/// What a region maps: used in errors and `Debug` output so a message always names its object.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backing {
    /// `MAP_SHARED | MAP_ANONYMOUS`, shared with children created by `fork`.
    Anonymous,
    /// A file on a filesystem.
    File(PathBuf),
    /// A POSIX shared-memory object (its name, with the leading `/`).
    Shm(String),
    /// A `memfd_create` object (the name given at creation, for diagnostics only).
    Memfd(String),
    /// A descriptor received from elsewhere (for example over a Unix socket).
    Fd(i32),
}

impl fmt::Display for Backing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Backing::Anonymous => f.write_str("anonymous shared mapping"),
            Backing::File(p) => write!(f, "file {}", p.display()),
            Backing::Shm(n) => write!(f, "POSIX shm object {n}"),
            Backing::Memfd(n) => write!(f, "memfd {n:?}"),
            Backing::Fd(fd) => write!(f, "descriptor {fd}"),
        }
    }
}

/// A POSIX shared-memory name was rejected before any system call.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty (or only `/`).
    #[error("shared memory name {name:?} is empty: expected one leading '/' then 1 to {max} bytes")]
    Empty {
        /// The name as given.
        name: String,
        /// The longest name accepted (without the leading `/`).
        max: usize,
    },
    /// A `/` other than the single leading one.
    #[error("shared memory name {name:?} has a '/' at byte {position}: only one leading '/' is allowed")]
    Slash {
        /// The name as given.
        name: String,
        /// Byte offset of the offending `/`.
        position: usize,
    },
    /// Longer than `NAME_MAX` without the leading `/`.
    #[error(
        "shared memory name {name:?} is {len} bytes long: at most {max} are allowed after the leading '/'"
    )]
    TooLong {
        /// The name as given.
        name: String,
        /// Its length without the leading `/`.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A NUL byte, or the reserved names `.` / `..`.
    #[error("shared memory name {name:?} is not allowed: no NUL byte, and not '.' or '..'")]
    Invalid {
        /// The name as given.
        name: String,
    },
}

/// Mapping memory failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MapError {
    /// A length of zero was asked for.
    #[error("cannot map {backing}: length is 0, expected at least 1 byte")]
    ZeroLength {
        /// What was to be mapped.
        backing: Backing,
    },
    /// The length or offset does not fit this platform's `usize` / `off_t`.
    #[error("cannot map {backing}: {len} bytes at offset {offset} does not fit in the address space")]
    TooLarge {
        /// What was to be mapped.
        backing: Backing,
        /// The length asked for.
        len: u64,
        /// The offset asked for.
        offset: u64,
    },
    /// `mmap` itself failed.
    #[error("mmap of {len} bytes at offset {offset} of {backing} failed: {source}")]
    Mmap {
        /// What was to be mapped.
        backing: Backing,
        /// The length asked for.
        len: usize,
        /// The offset asked for.
        offset: u64,
        /// The system error.
        source: io::Error,
    },
}

/// Creating a new backing object (file, POSIX shm object, memfd) failed. Nothing is left behind:
/// an object created before the failure is removed again.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CreateError {
    /// A length of zero was asked for.
    #[error("cannot create {backing}: length is 0, expected at least 1 byte")]
    ZeroLength {
        /// What was to be created.
        backing: Backing,
    },
    /// The shm name is invalid.
    #[error(transparent)]
    InvalidName(#[from] NameError),
    /// Something already exists at that path or name (create never opens or overwrites).
    #[error(
        "cannot create {backing}: it already exists (create never overwrites; open it, or remove it first)"
    )]
    AlreadyExists {
        /// What was to be created.
        backing: Backing,
    },
    /// The parent directory does not exist.
    #[error("cannot create {backing}: its parent directory does not exist")]
    ParentNotFound {
        /// What was to be created.
        backing: Backing,
    },
    /// The caller may not create it.
    #[error("cannot create {backing}: permission denied")]
    PermissionDenied {
        /// What was to be created.
        backing: Backing,
    },
    /// There is no room for it: the space is reserved up front so this shows now, not as SIGBUS.
    #[error("cannot create {backing}: no space to reserve {len} bytes ({source})")]
    NoSpace {
        /// What was to be created.
        backing: Backing,
        /// The size asked for.
        len: u64,
        /// ENOSPC, EFBIG or EDQUOT.
        source: io::Error,
    },
    /// Any other system error; `op` names the call.
    #[error("cannot create {backing}: {op} failed: {source}")]
    Io {
        /// What was to be created.
        backing: Backing,
        /// The failing call.
        op: &'static str,
        /// The system error.
        source: io::Error,
    },
    /// The object was created but mapping it failed.
    #[error(transparent)]
    Map(#[from] MapError),
}

/// Opening an existing backing object failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// A length of zero was asked for, or the object is empty.
    #[error("cannot open {backing}: length to map is 0, expected at least 1 byte")]
    ZeroLength {
        /// What was to be opened.
        backing: Backing,
    },
    /// The shm name is invalid.
    #[error(transparent)]
    InvalidName(#[from] NameError),
    /// Nothing exists at that path or name.
    #[error("cannot open {backing}: not found")]
    NotFound {
        /// What was to be opened.
        backing: Backing,
    },
    /// The path is a symbolic link; links are never followed.
    #[error("cannot open {backing}: it is a symbolic link (links are never followed)")]
    Symlink {
        /// What was to be opened.
        backing: Backing,
    },
    /// Not a regular file (a directory, socket, device, ...).
    #[error("cannot open {backing}: it is a {found}, expected a regular file")]
    NotRegularFile {
        /// What was to be opened.
        backing: Backing,
        /// What it is instead.
        found: &'static str,
    },
    /// The caller may not open it with the asked access.
    #[error("cannot open {backing} {}: permission denied", if *.writable { "read-write" } else { "read-only" })]
    PermissionDenied {
        /// What was to be opened.
        backing: Backing,
        /// Whether write access was asked for.
        writable: bool,
    },
    /// The object is smaller than what is to be mapped.
    #[error("cannot open {backing}: it is {have} bytes, expected at least {need}")]
    TooSmall {
        /// What was to be opened.
        backing: Backing,
        /// Offset plus length asked for.
        need: u64,
        /// Its actual size.
        have: u64,
    },
    /// The offset is not a multiple of the page size.
    #[error(
        "cannot map {backing} at offset {offset}: the offset must be a multiple of the page size {page_size}"
    )]
    UnalignedOffset {
        /// What was to be opened.
        backing: Backing,
        /// The offset asked for.
        offset: u64,
        /// The page size.
        page_size: usize,
    },
    /// A memfd lacks the seals that stop a peer from resizing it.
    #[error("cannot map {backing}: seals are {found:#x}, expected at least {expected:#x} (F_SEAL_SHRINK|F_SEAL_GROW|F_SEAL_SEAL)")]
    MissingSeals {
        /// What was to be opened.
        backing: Backing,
        /// The seals it has.
        found: i32,
        /// The seals required.
        expected: i32,
    },
    /// Any other system error; `op` names the call.
    #[error("cannot open {backing}: {op} failed: {source}")]
    Io {
        /// What was to be opened.
        backing: Backing,
        /// The failing call.
        op: &'static str,
        /// The system error.
        source: io::Error,
    },
    /// The object was opened but mapping it failed.
    #[error(transparent)]
    Map(#[from] MapError),
}

/// A read or write through [`Region::read_at`](crate::Region::read_at) /
/// [`Region::write_at`](crate::Region::write_at) was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AccessError {
    /// The range does not lie inside the region.
    #[error("range {offset}..{offset}+{len} is outside the region of {region_len} bytes")]
    OutOfBounds {
        /// Start of the range.
        offset: usize,
        /// Its length.
        len: usize,
        /// The region's length.
        region_len: usize,
    },
    /// The region is mapped read-only.
    #[error("the region is mapped read-only")]
    ReadOnly,
}

pub(crate) fn errno_io(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

impl MapError {
    /// The matching [`io::ErrorKind`].
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            MapError::ZeroLength { .. } | MapError::TooLarge { .. } => io::ErrorKind::InvalidInput,
            MapError::Mmap { source, .. } => source.kind(),
        }
    }
}

impl CreateError {
    /// The matching [`io::ErrorKind`].
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            CreateError::ZeroLength { .. } | CreateError::InvalidName(_) => io::ErrorKind::InvalidInput,
            CreateError::AlreadyExists { .. } => io::ErrorKind::AlreadyExists,
            CreateError::ParentNotFound { .. } => io::ErrorKind::NotFound,
            CreateError::PermissionDenied { .. } => io::ErrorKind::PermissionDenied,
            CreateError::NoSpace { .. } => io::ErrorKind::StorageFull,
            CreateError::Io { source, .. } => source.kind(),
            CreateError::Map(m) => m.kind(),
        }
    }

    /// Classify an errno from creating `backing`.
    pub(crate) fn from_errno(backing: &Backing, op: &'static str, len: u64, e: Errno) -> Self {
        let backing = backing.clone();
        match e {
            Errno::EEXIST => CreateError::AlreadyExists { backing },
            Errno::ENOENT => CreateError::ParentNotFound { backing },
            Errno::EACCES | Errno::EPERM => CreateError::PermissionDenied { backing },
            Errno::ENOSPC | Errno::EFBIG | Errno::EDQUOT => {
                CreateError::NoSpace { backing, len, source: errno_io(e) }
            }
            _ => CreateError::Io { backing, op, source: errno_io(e) },
        }
    }
}

impl OpenError {
    /// The matching [`io::ErrorKind`].
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            OpenError::ZeroLength { .. }
            | OpenError::InvalidName(_)
            | OpenError::UnalignedOffset { .. }
            | OpenError::NotRegularFile { .. }
            | OpenError::Symlink { .. } => io::ErrorKind::InvalidInput,
            OpenError::NotFound { .. } => io::ErrorKind::NotFound,
            OpenError::PermissionDenied { .. } => io::ErrorKind::PermissionDenied,
            OpenError::TooSmall { .. } | OpenError::MissingSeals { .. } => io::ErrorKind::InvalidData,
            OpenError::Io { source, .. } => source.kind(),
            OpenError::Map(m) => m.kind(),
        }
    }

    /// Classify an errno from opening `backing`.
    pub(crate) fn from_errno(backing: &Backing, op: &'static str, writable: bool, e: Errno) -> Self {
        let backing = backing.clone();
        match e {
            Errno::ENOENT => OpenError::NotFound { backing },
            // O_NOFOLLOW on a symlink gives ELOOP.
            Errno::ELOOP => OpenError::Symlink { backing },
            Errno::EISDIR => OpenError::NotRegularFile { backing, found: "directory" },
            Errno::EACCES | Errno::EPERM => OpenError::PermissionDenied { backing, writable },
            _ => OpenError::Io { backing, op, source: errno_io(e) },
        }
    }
}

macro_rules! into_io_error {
    ($($t:ty),*) => {$(
        impl From<$t> for io::Error {
            fn from(e: $t) -> io::Error {
                io::Error::new(e.kind(), e)
            }
        }
    )*};
}
into_io_error!(MapError, CreateError, OpenError);

impl From<NameError> for io::Error {
    fn from(e: NameError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidInput, e)
    }
}

impl From<AccessError> for io::Error {
    fn from(e: AccessError) -> io::Error {
        let kind = match e {
            AccessError::OutOfBounds { .. } => io::ErrorKind::InvalidInput,
            AccessError::ReadOnly => io::ErrorKind::PermissionDenied,
        };
        io::Error::new(kind, e)
    }
}
