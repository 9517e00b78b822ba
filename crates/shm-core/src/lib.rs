//! Shared-memory regions for inter-process communication.
//!
//! A [`Region`] owns one `mmap` mapping and unmaps it on drop. Two or more processes that map the
//! same object see each other's writes. Regions come from:
//!
//! | constructor | backing | shared with |
//! |---|---|---|
//! | [`Region::anonymous`] | `MAP_SHARED \| MAP_ANONYMOUS` | children created by `fork` afterwards |
//! | [`Region::create_file`] / [`Region::open_file`] | a file (`O_NOFOLLOW`, space reserved) | any process that can open the path |
//! | [`Region::create_shm`] / [`Region::open_shm`] | POSIX shm (`shm_open`) | any process that knows the name |
//! | [`Region::create_memfd`] / [`Region::open_memfd`] | sealed `memfd_create` | processes it is sent to ([`send_fd`]) |
//! | [`OpenOptions::private`] | `MAP_PRIVATE` view of a file | nobody: copy-on-write |
//!
//! Whether the process at the other end still runs is told from positive evidence only
//! ([`Liveness`]): a one-byte OFD lock each end holds on the backing object ([`Region::lock_end`],
//! probed with [`Region::probe_end`]), valid across PID namespaces, or a pid and start time
//! ([`ProcessIdentity::liveness`]) within one PID namespace ([`pid_namespace`]).
//!
//! Memory another process writes is only handed out as raw pointers; build atomics on them (as
//! `shm-ring` does) or copy bytes with [`Region::read_at`] / [`Region::write_at`], which use the
//! atomic word copies of [`atomic_copy`].
//!
//! # Example: a parent and a forked child see each other's writes
//! ```
//! use shm_core::Region;
//!
//! let region = Region::anonymous(4096)?;
//! region.write_at(0, b"from parent")?;
//! match unsafe { nix::unistd::fork() }? {
//!     nix::unistd::ForkResult::Child => {
//!         let mut buf = [0u8; 11];
//!         region.read_at(0, &mut buf).unwrap();
//!         let ok = &buf == b"from parent" && region.write_at(100, b"from child").is_ok();
//!         // SAFETY (example): leave the child at once, without running the parent's destructors.
//!         unsafe { libc::_exit(if ok { 0 } else { 1 }) }
//!     }
//!     nix::unistd::ForkResult::Parent { child } => {
//!         let status = nix::sys::wait::waitpid(child, None)?;
//!         assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
//!         let mut buf = [0u8; 10];
//!         region.read_at(100, &mut buf)?;
//!         assert_eq!(&buf, b"from child");
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Errors
//! One error type per operation: [`MapError`], [`CreateError`], [`OpenError`]. Each variant names
//! the object ([`Backing`]) and the sizes involved, and converts into [`std::io::Error`].
//!
//! Processes sleep on a word of shared memory and wake each other with [`futex`] (shared, not
//! process-private, futexes).
//!
//! All system calls live in one private module (`sys`), made through `nix` (futexes through
//! `rustix`).
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, clippy::undocumented_unsafe_blocks)]

pub mod atomic_copy;
mod error;
mod fdpass;
pub mod futex;
mod liveness;
mod name;
mod process;
mod region;
mod sys;

pub use error::{AccessError, Backing, CreateError, MapError, NameError, OpenError};
pub use fdpass::{recv_fd, send_fd};
pub use liveness::{EndLock, Liveness};
pub use name::{ShmName, SHM_NAME_MAX};
pub use process::{effective_uid, pid_namespace, ProcessIdentity};
pub use region::{page_size, Advice, CreateOptions, OpenOptions, Region, DEFAULT_MODE, REQUIRED_SEALS};
