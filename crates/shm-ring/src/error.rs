//! Errors of ring operations. Each names the values found and expected.

use std::fmt;

use crate::layout::Kind;

/// Shared memory held a value the protocol does not allow: the peer is buggy or hostile, or
/// the memory was overwritten. The ring refuses to read through it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("ring corrupt: {what} is {found} at position {position}, expected {expected}")]
pub struct CorruptError {
    /// Which value was wrong.
    pub what: &'static str,
    /// The value found.
    pub found: u64,
    /// The position (byte offset in the stream) where it was found.
    pub position: u64,
    /// What was allowed, in words.
    pub expected: &'static str,
}

/// Which end of a ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// A sending end.
    Producer,
    /// The receiving end.
    Consumer,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Producer => "producer",
            Role::Consumer => "consumer",
        })
    }
}

/// A ring could not be initialised in a region.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitError {
    /// The capacity is not a power of two of at least 64 bytes.
    #[error("capacity {found} is invalid: expected a power of two from 64 to 2^40 bytes")]
    BadCapacity {
        /// The capacity asked for.
        found: u64,
    },
    /// The largest message does not fit the capacity.
    #[error("max message size {found} is invalid: expected 1 to {limit} bytes for this capacity (half the ring less an 8-byte record header)")]
    BadMaxMessage {
        /// The size asked for.
        found: u64,
        /// The largest allowed.
        limit: u64,
    },
    /// Producer slot count out of range.
    #[error("max producers {found} is invalid: expected 1 to {limit}")]
    BadProducers {
        /// The count asked for.
        found: u32,
        /// The largest allowed.
        limit: u32,
    },
    /// The region cannot hold header and data.
    #[error("region of {have} bytes is too small for this ring: need {need} (header + capacity)")]
    RegionTooSmall {
        /// Bytes needed.
        need: u64,
        /// Region length.
        have: u64,
    },
    /// The region is mapped read-only or private.
    #[error("region must be mapped shared and writable to hold a ring")]
    NotWritable,
    /// Another ring is already (being) initialised in the region.
    #[error("region already holds a ring (init state {state}, magic {magic:#x}); open it instead")]
    AlreadyInitialized {
        /// Init state found.
        state: u32,
        /// Magic found.
        magic: u64,
    },
    /// Initialised, but attaching the first end failed.
    #[error(transparent)]
    Attach(#[from] AttachError),
}

/// Attaching an end to an existing ring failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttachError {
    /// The region is smaller than a ring header.
    #[error("region of {have} bytes is too small for a ring: need at least {need}")]
    RegionTooSmall {
        /// Bytes needed.
        need: u64,
        /// Region length.
        have: u64,
    },
    /// No creator finished initialising within the wait.
    #[error("ring not initialised after waiting {waited_ms} ms (init state {state}: 0 = nobody started, 1 = creator still initialising or crashed)")]
    NotInitialized {
        /// Init state found last.
        state: u32,
        /// How long the opener waited.
        waited_ms: u64,
    },
    /// Not a ring of this library.
    #[error("bad magic {found:#018x}, expected {expected:#018x} (\"SHMRING1\"): not a shm-ring region")]
    BadMagic {
        /// Found.
        found: u64,
        /// Expected.
        expected: u64,
    },
    /// Made by another layout version.
    #[error("layout version {found}, expected {expected}: the ring was made by an incompatible version")]
    VersionMismatch {
        /// Found.
        found: u32,
        /// Expected.
        expected: u32,
    },
    /// An SPSC end opening an MPSC ring, or the reverse.
    #[error("ring kind is {found}, expected {expected}")]
    WrongKind {
        /// Kind found (raw value, in case it is not a known kind).
        found: u32,
        /// Kind expected.
        expected: Kind,
    },
    /// A geometry field is out of range.
    #[error("ring header field {field} is {found}, expected {expected}")]
    BadHeader {
        /// Field name.
        field: &'static str,
        /// Found.
        found: u64,
        /// What was expected, in words.
        expected: String,
    },
    /// The region is mapped read-only or private.
    #[error("region must be mapped shared and writable to attach a ring end")]
    NotWritable,
    /// The file or shm object belongs to another user, or group/others may write it.
    #[error("ring object is owned by uid {owner} with mode {mode:#o}: expected owner uid {expected_owner} and no group/other write permission (use AttachOptions::allow_foreign(true) to accept it)")]
    UnsafePermissions {
        /// Owner found.
        owner: u32,
        /// Permission bits found.
        mode: u32,
        /// This process's effective uid.
        expected_owner: u32,
    },
    /// That end is attached by a process not known to be dead (shown alive, or its liveness
    /// cannot be told from here: it is never taken over without proof of death).
    #[error("{role} end is already attached by process {pid} (pid in its own PID namespace), expected a free, closed or dead end")]
    AlreadyAttached {
        /// Which end.
        role: Role,
        /// The process holding it, as its own PID namespace numbers it.
        pid: u32,
    },
    /// Every producer slot is held by a live process.
    #[error("all {slots} producer slots are held by live processes")]
    NoFreeSlot {
        /// Slot count.
        slots: u32,
    },
    /// The shared positions are inconsistent.
    #[error(transparent)]
    Corrupt(#[from] CorruptError),
}

/// A message was not sent; it is handed back.
pub enum SendError<M> {
    /// The ring has no room now (non-blocking calls only).
    Full(M),
    /// The ring had no room before the timeout.
    Timeout(M),
    /// The consumer closed its end.
    Disconnected(M),
    /// The consumer's process died without closing.
    PeerDead {
        /// The message.
        msg: M,
        /// The dead process.
        pid: u32,
    },
    /// Longer than the ring's max message size.
    TooLarge {
        /// The message.
        msg: M,
        /// Its length.
        len: usize,
        /// The ring's limit.
        max: usize,
    },
    /// Shared memory is corrupt.
    Corrupt {
        /// The message.
        msg: M,
        /// What was wrong.
        error: CorruptError,
    },
}

impl<M> SendError<M> {
    /// The message that was not sent.
    pub fn into_inner(self) -> M {
        match self {
            SendError::Full(m) | SendError::Timeout(m) | SendError::Disconnected(m) => m,
            SendError::PeerDead { msg, .. }
            | SendError::TooLarge { msg, .. }
            | SendError::Corrupt { msg, .. } => msg,
        }
    }

    /// The same error carrying another value.
    pub fn map<N>(self, f: impl FnOnce(M) -> N) -> SendError<N> {
        match self {
            SendError::Full(m) => SendError::Full(f(m)),
            SendError::Timeout(m) => SendError::Timeout(f(m)),
            SendError::Disconnected(m) => SendError::Disconnected(f(m)),
            SendError::PeerDead { msg, pid } => SendError::PeerDead { msg: f(msg), pid },
            SendError::TooLarge { msg, len, max } => SendError::TooLarge { msg: f(msg), len, max },
            SendError::Corrupt { msg, error } => SendError::Corrupt { msg: f(msg), error },
        }
    }

    /// Whether the ring may accept it later (full or timed out) as opposed to never.
    pub fn is_full(&self) -> bool {
        matches!(self, SendError::Full(_) | SendError::Timeout(_))
    }

    pub(crate) fn with_msg(kind: SendError<()>, msg: M) -> SendError<M> {
        kind.map(|()| msg)
    }
}

impl<M> fmt::Display for SendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Full(_) => f.write_str("ring is full"),
            SendError::Timeout(_) => f.write_str("timed out waiting for room in the ring"),
            SendError::Disconnected(_) => f.write_str("consumer closed its end of the ring"),
            SendError::PeerDead { pid, .. } => write!(f, "consumer process {pid} died"),
            SendError::TooLarge { len, max, .. } => {
                write!(f, "message of {len} bytes exceeds the ring's max message size {max}")
            }
            SendError::Corrupt { error, .. } => error.fmt(f),
        }
    }
}

impl<M> fmt::Debug for SendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SendError(")?;
        fmt::Display::fmt(self, f)?;
        write!(f, ")")
    }
}

impl<M> std::error::Error for SendError<M> {}

/// Nothing was received.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecvError {
    /// The ring is empty now (non-blocking calls only).
    #[error("ring is empty")]
    Empty,
    /// The ring stayed empty until the timeout.
    #[error("timed out waiting for a message")]
    Timeout,
    /// Empty, no producer is attached, and at least one producer attached and closed since.
    ///
    /// A state at the time of the call, not the end of the stream: a ring outlives its ends,
    /// and a new producer may open it later (on an MPSC ring, any number of them), after which
    /// receiving goes on. An application that needs "every producer is done" counts its
    /// producers: for example each one attaches before the consumer starts reading (a
    /// handshake), so that `Disconnected` afterwards means all of them closed.
    #[error("ring is empty and no producer is attached (the last one closed its end)")]
    Disconnected,
    /// Empty, and the producer's process died without closing.
    #[error("ring is empty and producer process {pid} died")]
    PeerDead {
        /// The dead process.
        pid: u32,
    },
    /// The caller's buffer is smaller than the next message, which stays in the ring.
    #[error(
        "buffer of {have} bytes is too small for the next message of {need} bytes (it stays in the ring)"
    )]
    BufferTooSmall {
        /// The message length.
        need: usize,
        /// The buffer length.
        have: usize,
    },
    /// `recv_pod` found a message of another size, which stays in the ring.
    #[error("next message is {found} bytes, expected {expected} for this type (it stays in the ring)")]
    SizeMismatch {
        /// The message length.
        found: usize,
        /// `size_of::<T>()`.
        expected: usize,
    },
    /// Shared memory is corrupt.
    #[error(transparent)]
    Corrupt(#[from] CorruptError),
}

impl RecvError {
    /// Whether the ring may deliver later (empty or timed out) as opposed to never.
    pub fn is_empty(&self) -> bool {
        matches!(self, RecvError::Empty | RecvError::Timeout)
    }
}

/// A `Corrupt` receive error.
pub(crate) fn corrupt(what: &'static str, found: u64, position: u64, expected: &'static str) -> RecvError {
    RecvError::Corrupt(CorruptError { what, found, position, expected })
}
