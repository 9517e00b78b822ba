//! Status codes, the thread's last error message, and the boundary no panic crosses.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, CString};
use std::fmt::Display;
use std::panic::{catch_unwind, AssertUnwindSafe};

use shm_ring::{AttachError, InitError, RecvTimeoutError, SendTimeoutError};

/// Success.
pub const SHM_OK: c_int = 0;
/// Nothing in time: the ring stayed full (send, reserve) or empty (recv, read) until the
/// timeout (0: at the call).
pub const SHM_ERR_TIMEOUT: c_int = 1;
/// The peer closed its end (a consumer gets it once everything sent was received).
pub const SHM_ERR_DISCONNECTED: c_int = 2;
/// The peer's process died without closing (a consumer gets it once everything sent was
/// received).
pub const SHM_ERR_PEER_DEAD: c_int = 3;
/// The message is longer than the ring's max message size (`shm_producer_max_message`).
pub const SHM_ERR_TOO_LARGE: c_int = 4;
/// The caller's buffer is smaller than the next message, which stays in the ring;
/// `*len_out` holds its length.
pub const SHM_ERR_BUFFER_TOO_SMALL: c_int = 5;
/// The shared memory breaks the layout (a buggy or hostile peer).
pub const SHM_ERR_CORRUPT: c_int = 6;
/// A broadcast subscriber was overtaken (policy overwrite); `shm_last_error()` says how many
/// messages it lost, and the next receive returns the oldest one left.
pub const SHM_ERR_LAGGED: c_int = 7;
/// An argument is invalid: a NULL pointer, a bad configuration, a name or path that is not
/// UTF-8.
pub const SHM_ERR_INVALID_ARGUMENT: c_int = 8;
/// Creating, opening or mapping the shared memory failed (see `shm_last_error()`).
pub const SHM_ERR_IO: c_int = 9;
/// Attaching failed: not a ring, another layout version or kind, no free slot, an end already
/// attached, unsafe permissions (see `shm_last_error()`).
pub const SHM_ERR_ATTACH: c_int = 10;
/// `shm_producer_commit` / `shm_producer_abort` with no reservation open, or
/// `shm_consumer_release` with no read held.
pub const SHM_ERR_NOTHING_HELD: c_int = 11;
/// A Rust panic was caught at the boundary (a bug of this library: please report it).
pub const SHM_ERR_PANIC: c_int = 12;

/// The name of a status code (`"SHM_ERR_TIMEOUT"`), a static string; `"unknown"` for a value
/// that is none.
#[no_mangle]
pub extern "C" fn shm_status_name(status: c_int) -> *const c_char {
    let name: &'static [u8] = match status {
        SHM_OK => b"SHM_OK\0",
        SHM_ERR_TIMEOUT => b"SHM_ERR_TIMEOUT\0",
        SHM_ERR_DISCONNECTED => b"SHM_ERR_DISCONNECTED\0",
        SHM_ERR_PEER_DEAD => b"SHM_ERR_PEER_DEAD\0",
        SHM_ERR_TOO_LARGE => b"SHM_ERR_TOO_LARGE\0",
        SHM_ERR_BUFFER_TOO_SMALL => b"SHM_ERR_BUFFER_TOO_SMALL\0",
        SHM_ERR_CORRUPT => b"SHM_ERR_CORRUPT\0",
        SHM_ERR_LAGGED => b"SHM_ERR_LAGGED\0",
        SHM_ERR_INVALID_ARGUMENT => b"SHM_ERR_INVALID_ARGUMENT\0",
        SHM_ERR_IO => b"SHM_ERR_IO\0",
        SHM_ERR_ATTACH => b"SHM_ERR_ATTACH\0",
        SHM_ERR_NOTHING_HELD => b"SHM_ERR_NOTHING_HELD\0",
        SHM_ERR_PANIC => b"SHM_ERR_PANIC\0",
        _ => b"unknown\0",
    };
    name.as_ptr().cast()
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// The message of this thread's last failed call ("" if none failed yet): what failed and
/// why, with the values involved. Valid until this thread's next call into the library.
#[no_mangle]
pub extern "C" fn shm_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// A failed call: its status code and message.
#[derive(Debug)]
pub(crate) struct Failure {
    pub status: c_int,
    pub message: String,
}

impl Failure {
    pub fn new(status: c_int, message: impl Display) -> Failure {
        Failure { status, message: message.to_string() }
    }
}

impl From<InitError> for Failure {
    fn from(e: InitError) -> Failure {
        let status = match e {
            InitError::Attach(_) => SHM_ERR_ATTACH,
            InitError::NotWritable | InitError::AlreadyInitialized { .. } => SHM_ERR_ATTACH,
            _ => SHM_ERR_INVALID_ARGUMENT,
        };
        Failure::new(status, format_args!("creating the ring: {e}"))
    }
}

impl From<AttachError> for Failure {
    fn from(e: AttachError) -> Failure {
        Failure::new(SHM_ERR_ATTACH, format_args!("attaching to the ring: {e}"))
    }
}

impl Failure {
    /// `self`, said as "not now" rather than "timed out" when the call did not wait.
    pub fn waited(mut self, timeout_ns: i64, not_now: &str) -> Failure {
        if timeout_ns == 0 && self.status == SHM_ERR_TIMEOUT {
            self.message = not_now.into();
        }
        self
    }
}

impl From<SendTimeoutError<()>> for Failure {
    fn from(e: SendTimeoutError<()>) -> Failure {
        let status = match e {
            SendTimeoutError::Timeout(()) => SHM_ERR_TIMEOUT,
            SendTimeoutError::Disconnected(()) => SHM_ERR_DISCONNECTED,
            SendTimeoutError::PeerDead { .. } => SHM_ERR_PEER_DEAD,
            SendTimeoutError::TooLarge { .. } => SHM_ERR_TOO_LARGE,
            SendTimeoutError::Corrupt { .. } => SHM_ERR_CORRUPT,
            _ => SHM_ERR_CORRUPT,
        };
        Failure::new(status, e)
    }
}

impl From<RecvTimeoutError> for Failure {
    fn from(e: RecvTimeoutError) -> Failure {
        let status = match e {
            RecvTimeoutError::Timeout => SHM_ERR_TIMEOUT,
            RecvTimeoutError::Disconnected => SHM_ERR_DISCONNECTED,
            RecvTimeoutError::PeerDead { .. } => SHM_ERR_PEER_DEAD,
            RecvTimeoutError::BufferTooSmall { .. } => SHM_ERR_BUFFER_TOO_SMALL,
            RecvTimeoutError::Lagged { .. } => SHM_ERR_LAGGED,
            _ => SHM_ERR_CORRUPT,
        };
        Failure::new(status, e)
    }
}

/// Run `f` as the body of an exported call: its failure, or a caught panic, becomes the status
/// code and this thread's last error.
pub(crate) fn boundary(f: impl FnOnce() -> Result<(), Failure>) -> c_int {
    let failure = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => return SHM_OK,
        Ok(Err(failure)) => failure,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            Failure::new(SHM_ERR_PANIC, format_args!("internal error (please report it): {what}"))
        }
    };
    let message = CString::new(failure.message.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = message);
    failure.status
}
