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

// ---------------------------------------------------------------------------------------------
// Sending
// ---------------------------------------------------------------------------------------------

/// Why a send stopped for good (the message cannot be sent now, and waiting will not help).
/// Internal: the public errors below add the message and the call's own variants.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendStop {
    Disconnected,
    PeerDead { pid: u32 },
    TooLarge { len: usize, max: usize },
    Corrupt(CorruptError),
}

/// The outcome of one bounded attempt to claim room: full now, or stopped.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendFail {
    Full,
    Stop(SendStop),
}

impl From<SendStop> for SendFail {
    fn from(s: SendStop) -> SendFail {
        SendFail::Stop(s)
    }
}

impl From<CorruptError> for SendFail {
    fn from(e: CorruptError) -> SendFail {
        SendFail::Stop(SendStop::Corrupt(e))
    }
}

impl fmt::Display for SendStop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendStop::Disconnected => f.write_str("consumer closed its end of the ring"),
            SendStop::PeerDead { pid } => write!(f, "consumer process {pid} died"),
            SendStop::TooLarge { len, max } => {
                write!(f, "message of {len} bytes exceeds the ring's max message size {max}")
            }
            SendStop::Corrupt(e) => e.fmt(f),
        }
    }
}

impl SendStop {
    fn io_kind(&self) -> std::io::ErrorKind {
        use std::io::ErrorKind;
        match self {
            SendStop::Disconnected => ErrorKind::BrokenPipe,
            SendStop::PeerDead { .. } => ErrorKind::ConnectionAborted,
            SendStop::TooLarge { .. } => ErrorKind::InvalidInput,
            SendStop::Corrupt(_) => ErrorKind::InvalidData,
        }
    }
}

/// The error of a blocking send ([`Producer::send`](crate::Producer::send) and friends): the
/// message is handed back.
#[non_exhaustive]
pub enum SendError<T> {
    /// The consumer closed its end.
    Disconnected(T),
    /// The consumer's process died without closing.
    PeerDead {
        /// The message.
        msg: T,
        /// The dead process (as its own PID namespace numbers it).
        pid: u32,
    },
    /// Longer than the ring's max message size.
    TooLarge {
        /// The message.
        msg: T,
        /// Its length.
        len: usize,
        /// The ring's limit.
        max: usize,
    },
    /// Shared memory is corrupt.
    Corrupt {
        /// The message.
        msg: T,
        /// What was wrong.
        error: CorruptError,
    },
}

/// The error of a non-blocking send ([`Producer::try_send`](crate::Producer::try_send) and
/// friends): the message is handed back.
#[non_exhaustive]
pub enum TrySendError<T> {
    /// The ring has no room now.
    Full(T),
    /// The consumer closed its end.
    Disconnected(T),
    /// The consumer's process died without closing.
    PeerDead {
        /// The message.
        msg: T,
        /// The dead process.
        pid: u32,
    },
    /// Longer than the ring's max message size.
    TooLarge {
        /// The message.
        msg: T,
        /// Its length.
        len: usize,
        /// The ring's limit.
        max: usize,
    },
    /// Shared memory is corrupt.
    Corrupt {
        /// The message.
        msg: T,
        /// What was wrong.
        error: CorruptError,
    },
}

/// The error of a timed send ([`Producer::send_timeout`](crate::Producer::send_timeout) and
/// friends): the message is handed back.
#[non_exhaustive]
pub enum SendTimeoutError<T> {
    /// The ring had no room before the timeout.
    Timeout(T),
    /// The consumer closed its end.
    Disconnected(T),
    /// The consumer's process died without closing.
    PeerDead {
        /// The message.
        msg: T,
        /// The dead process.
        pid: u32,
    },
    /// Longer than the ring's max message size.
    TooLarge {
        /// The message.
        msg: T,
        /// Its length.
        len: usize,
        /// The ring's limit.
        max: usize,
    },
    /// Shared memory is corrupt.
    Corrupt {
        /// The message.
        msg: T,
        /// What was wrong.
        error: CorruptError,
    },
}

impl<T> SendError<T> {
    pub(crate) fn new(stop: SendStop, msg: T) -> SendError<T> {
        match stop {
            SendStop::Disconnected => SendError::Disconnected(msg),
            SendStop::PeerDead { pid } => SendError::PeerDead { msg, pid },
            SendStop::TooLarge { len, max } => SendError::TooLarge { msg, len, max },
            SendStop::Corrupt(error) => SendError::Corrupt { msg, error },
        }
    }

    fn split(self) -> (SendStop, T) {
        match self {
            SendError::Disconnected(msg) => (SendStop::Disconnected, msg),
            SendError::PeerDead { msg, pid } => (SendStop::PeerDead { pid }, msg),
            SendError::TooLarge { msg, len, max } => (SendStop::TooLarge { len, max }, msg),
            SendError::Corrupt { msg, error } => (SendStop::Corrupt(error), msg),
        }
    }

    fn stop(&self) -> SendStop {
        match self {
            SendError::Disconnected(_) => SendStop::Disconnected,
            SendError::PeerDead { pid, .. } => SendStop::PeerDead { pid: *pid },
            SendError::TooLarge { len, max, .. } => SendStop::TooLarge { len: *len, max: *max },
            SendError::Corrupt { error, .. } => SendStop::Corrupt(*error),
        }
    }

    /// The message that was not sent.
    pub fn into_inner(self) -> T {
        self.split().1
    }

    /// The same error carrying another value.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> SendError<U> {
        let (stop, msg) = self.split();
        SendError::new(stop, f(msg))
    }
}

impl<T> TrySendError<T> {
    pub(crate) fn new(fail: SendFail, msg: T) -> TrySendError<T> {
        match fail {
            SendFail::Full => TrySendError::Full(msg),
            SendFail::Stop(stop) => SendError::new(stop, msg).into(),
        }
    }

    fn split(self) -> (SendFail, T) {
        match self {
            TrySendError::Full(msg) => (SendFail::Full, msg),
            TrySendError::Disconnected(msg) => (SendStop::Disconnected.into(), msg),
            TrySendError::PeerDead { msg, pid } => (SendStop::PeerDead { pid }.into(), msg),
            TrySendError::TooLarge { msg, len, max } => (SendStop::TooLarge { len, max }.into(), msg),
            TrySendError::Corrupt { msg, error } => (SendStop::Corrupt(error).into(), msg),
        }
    }

    fn fail(&self) -> SendFail {
        match self {
            TrySendError::Full(_) => SendFail::Full,
            TrySendError::Disconnected(_) => SendStop::Disconnected.into(),
            TrySendError::PeerDead { pid, .. } => SendStop::PeerDead { pid: *pid }.into(),
            TrySendError::TooLarge { len, max, .. } => SendStop::TooLarge { len: *len, max: *max }.into(),
            TrySendError::Corrupt { error, .. } => SendStop::Corrupt(*error).into(),
        }
    }

    /// The message that was not sent.
    pub fn into_inner(self) -> T {
        self.split().1
    }

    /// The same error carrying another value.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> TrySendError<U> {
        let (fail, msg) = self.split();
        TrySendError::new(fail, f(msg))
    }

    /// Whether the ring was only full (a later try may succeed).
    pub fn is_full(&self) -> bool {
        matches!(self, TrySendError::Full(_))
    }
}

impl<T> SendTimeoutError<T> {
    /// `stop` with the message; `None` for the timeout.
    pub(crate) fn new(stop: Option<SendStop>, msg: T) -> SendTimeoutError<T> {
        match stop {
            None => SendTimeoutError::Timeout(msg),
            Some(stop) => SendError::new(stop, msg).into(),
        }
    }

    fn split(self) -> (Option<SendStop>, T) {
        match self {
            SendTimeoutError::Timeout(msg) => (None, msg),
            SendTimeoutError::Disconnected(msg) => (Some(SendStop::Disconnected), msg),
            SendTimeoutError::PeerDead { msg, pid } => (Some(SendStop::PeerDead { pid }), msg),
            SendTimeoutError::TooLarge { msg, len, max } => (Some(SendStop::TooLarge { len, max }), msg),
            SendTimeoutError::Corrupt { msg, error } => (Some(SendStop::Corrupt(error)), msg),
        }
    }

    fn stop(&self) -> Option<SendStop> {
        match self {
            SendTimeoutError::Timeout(_) => None,
            SendTimeoutError::Disconnected(_) => Some(SendStop::Disconnected),
            SendTimeoutError::PeerDead { pid, .. } => Some(SendStop::PeerDead { pid: *pid }),
            SendTimeoutError::TooLarge { len, max, .. } => Some(SendStop::TooLarge { len: *len, max: *max }),
            SendTimeoutError::Corrupt { error, .. } => Some(SendStop::Corrupt(*error)),
        }
    }

    /// The message that was not sent.
    pub fn into_inner(self) -> T {
        self.split().1
    }

    /// The same error carrying another value.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> SendTimeoutError<U> {
        let (stop, msg) = self.split();
        SendTimeoutError::new(stop, f(msg))
    }

    /// Whether the wait only timed out (a later send may succeed).
    pub fn is_timeout(&self) -> bool {
        matches!(self, SendTimeoutError::Timeout(_))
    }
}

impl<T> From<SendError<T>> for TrySendError<T> {
    fn from(e: SendError<T>) -> TrySendError<T> {
        match e {
            SendError::Disconnected(msg) => TrySendError::Disconnected(msg),
            SendError::PeerDead { msg, pid } => TrySendError::PeerDead { msg, pid },
            SendError::TooLarge { msg, len, max } => TrySendError::TooLarge { msg, len, max },
            SendError::Corrupt { msg, error } => TrySendError::Corrupt { msg, error },
        }
    }
}

impl<T> From<SendError<T>> for SendTimeoutError<T> {
    fn from(e: SendError<T>) -> SendTimeoutError<T> {
        match e {
            SendError::Disconnected(msg) => SendTimeoutError::Disconnected(msg),
            SendError::PeerDead { msg, pid } => SendTimeoutError::PeerDead { msg, pid },
            SendError::TooLarge { msg, len, max } => SendTimeoutError::TooLarge { msg, len, max },
            SendError::Corrupt { msg, error } => SendTimeoutError::Corrupt { msg, error },
        }
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.stop().fmt(f)
    }
}

impl<T> fmt::Display for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.fail() {
            SendFail::Full => f.write_str("ring is full"),
            SendFail::Stop(stop) => stop.fmt(f),
        }
    }
}

impl<T> fmt::Display for SendTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.stop() {
            None => f.write_str("timed out waiting for room in the ring"),
            Some(stop) => stop.fmt(f),
        }
    }
}

/// `Name::Variant` with the message shown as `..` (Debug without `T: Debug`, as std's channel
/// errors).
fn debug_stop(f: &mut fmt::Formatter<'_>, name: &str, stop: SendStop) -> fmt::Result {
    match stop {
        SendStop::Disconnected => write!(f, "{name}::Disconnected(..)"),
        SendStop::PeerDead { pid } => write!(f, "{name}::PeerDead {{ pid: {pid}, .. }}"),
        SendStop::TooLarge { len, max } => write!(f, "{name}::TooLarge {{ len: {len}, max: {max}, .. }}"),
        SendStop::Corrupt(error) => write!(f, "{name}::Corrupt {{ error: {error:?}, .. }}"),
    }
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_stop(f, "SendError", self.stop())
    }
}

impl<T> fmt::Debug for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.fail() {
            SendFail::Full => f.write_str("TrySendError::Full(..)"),
            SendFail::Stop(stop) => debug_stop(f, "TrySendError", stop),
        }
    }
}

impl<T> fmt::Debug for SendTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.stop() {
            None => f.write_str("SendTimeoutError::Timeout(..)"),
            Some(stop) => debug_stop(f, "SendTimeoutError", stop),
        }
    }
}

impl<T> std::error::Error for SendError<T> {}
impl<T> std::error::Error for TrySendError<T> {}
impl<T> std::error::Error for SendTimeoutError<T> {}

impl<T> From<SendError<T>> for std::io::Error {
    fn from(e: SendError<T>) -> std::io::Error {
        let stop = e.stop();
        std::io::Error::new(stop.io_kind(), stop.to_string())
    }
}

impl<T> From<TrySendError<T>> for std::io::Error {
    fn from(e: TrySendError<T>) -> std::io::Error {
        match e.fail() {
            SendFail::Full => std::io::Error::new(std::io::ErrorKind::WouldBlock, "ring is full"),
            SendFail::Stop(stop) => std::io::Error::new(stop.io_kind(), stop.to_string()),
        }
    }
}

impl<T> From<SendTimeoutError<T>> for std::io::Error {
    fn from(e: SendTimeoutError<T>) -> std::io::Error {
        match e.stop() {
            None => {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out waiting for room in the ring")
            }
            Some(stop) => std::io::Error::new(stop.io_kind(), stop.to_string()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Receiving
// ---------------------------------------------------------------------------------------------

/// Why a receive found nothing for good (internal; see the public errors below).
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecvStop {
    Disconnected,
    PeerDead { pid: u32 },
    Corrupt(CorruptError),
}

/// The outcome of one bounded look for the next message: empty now, or stopped.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecvFail {
    Empty,
    Stop(RecvStop),
}

impl From<RecvStop> for RecvFail {
    fn from(s: RecvStop) -> RecvFail {
        RecvFail::Stop(s)
    }
}

impl From<CorruptError> for RecvStop {
    fn from(e: CorruptError) -> RecvStop {
        RecvStop::Corrupt(e)
    }
}

impl From<CorruptError> for RecvFail {
    fn from(e: CorruptError) -> RecvFail {
        RecvFail::Stop(RecvStop::Corrupt(e))
    }
}

/// The common part of the three receive errors, as `thiserror` shows it.
macro_rules! recv_error {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident $({ $($field:ident: $ty:ty),* })?,)* }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
        #[non_exhaustive]
        pub enum $name {
            $($(#[$vmeta])* $variant $({ $(#[allow(missing_docs)] $field: $ty),* })?,)*
            /// Empty, no producer is attached, and at least one producer attached and closed
            /// since.
            ///
            /// A state at the time of the call, not the end of the stream: a ring outlives its
            /// ends, and a new producer may open it later (on an MPSC ring, any number of
            /// them), after which receiving goes on. An application that needs "every producer
            /// is done" counts its producers: for example each one attaches before the consumer
            /// starts reading (a handshake), so that `Disconnected` afterwards means all of
            /// them closed.
            #[error("ring is empty and no producer is attached (the last one closed its end)")]
            Disconnected,
            /// Empty, and the producer's process died without closing.
            #[error("ring is empty and producer process {pid} died")]
            PeerDead {
                /// The dead process (as its own PID namespace numbers it).
                pid: u32,
            },
            /// The caller's buffer is smaller than the next message, which stays in the ring.
            #[error("buffer of {have} bytes is too small for the next message of {need} bytes (it stays in the ring)")]
            BufferTooSmall {
                /// The message length.
                need: usize,
                /// The buffer length.
                have: usize,
            },
            /// A `*_pod` call found a message of another size, which stays in the ring.
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

        impl From<RecvStop> for $name {
            fn from(s: RecvStop) -> $name {
                match s {
                    RecvStop::Disconnected => $name::Disconnected,
                    RecvStop::PeerDead { pid } => $name::PeerDead { pid },
                    RecvStop::Corrupt(e) => $name::Corrupt(e),
                }
            }
        }

        /// The error itself is kept inside (`get_ref`, `downcast`).
        impl From<$name> for std::io::Error {
            fn from(e: $name) -> std::io::Error {
                std::io::Error::new(e.io_kind(), e)
            }
        }
    };
}

recv_error! {
    /// The error of a blocking receive ([`Consumer::recv`](crate::Consumer::recv) and friends).
    RecvError {}
}

recv_error! {
    /// The error of a non-blocking receive ([`Consumer::try_recv`](crate::Consumer::try_recv)
    /// and friends).
    TryRecvError {
        /// The ring is empty now.
        #[error("ring is empty")]
        Empty,
    }
}

recv_error! {
    /// The error of a timed receive ([`Consumer::recv_timeout`](crate::Consumer::recv_timeout)
    /// and friends).
    RecvTimeoutError {
        /// The ring stayed empty until the timeout.
        #[error("timed out waiting for a message")]
        Timeout,
    }
}

impl RecvError {
    fn io_kind(&self) -> std::io::ErrorKind {
        use std::io::ErrorKind;
        match self {
            RecvError::Disconnected => ErrorKind::UnexpectedEof,
            RecvError::PeerDead { .. } => ErrorKind::ConnectionAborted,
            RecvError::BufferTooSmall { .. } | RecvError::SizeMismatch { .. } => ErrorKind::InvalidInput,
            RecvError::Corrupt(_) => ErrorKind::InvalidData,
        }
    }
}

impl TryRecvError {
    pub(crate) fn new(fail: RecvFail) -> TryRecvError {
        match fail {
            RecvFail::Empty => TryRecvError::Empty,
            RecvFail::Stop(stop) => stop.into(),
        }
    }

    fn io_kind(&self) -> std::io::ErrorKind {
        match self {
            TryRecvError::Empty => std::io::ErrorKind::WouldBlock,
            _ => RecvError::try_from(*self).map_or(std::io::ErrorKind::Other, |e| e.io_kind()),
        }
    }
}

impl RecvTimeoutError {
    fn io_kind(&self) -> std::io::ErrorKind {
        match self {
            RecvTimeoutError::Timeout => std::io::ErrorKind::TimedOut,
            _ => RecvError::try_from(*self).map_or(std::io::ErrorKind::Other, |e| e.io_kind()),
        }
    }
}

impl From<RecvError> for TryRecvError {
    fn from(e: RecvError) -> TryRecvError {
        match e {
            RecvError::Disconnected => TryRecvError::Disconnected,
            RecvError::PeerDead { pid } => TryRecvError::PeerDead { pid },
            RecvError::BufferTooSmall { need, have } => TryRecvError::BufferTooSmall { need, have },
            RecvError::SizeMismatch { found, expected } => TryRecvError::SizeMismatch { found, expected },
            RecvError::Corrupt(e) => TryRecvError::Corrupt(e),
        }
    }
}

impl From<RecvError> for RecvTimeoutError {
    fn from(e: RecvError) -> RecvTimeoutError {
        match e {
            RecvError::Disconnected => RecvTimeoutError::Disconnected,
            RecvError::PeerDead { pid } => RecvTimeoutError::PeerDead { pid },
            RecvError::BufferTooSmall { need, have } => RecvTimeoutError::BufferTooSmall { need, have },
            RecvError::SizeMismatch { found, expected } => RecvTimeoutError::SizeMismatch { found, expected },
            RecvError::Corrupt(e) => RecvTimeoutError::Corrupt(e),
        }
    }
}

impl TryFrom<TryRecvError> for RecvError {
    type Error = TryRecvError;
    /// The blocking form of the error; `Empty` has none.
    fn try_from(e: TryRecvError) -> Result<RecvError, TryRecvError> {
        Ok(match e {
            TryRecvError::Disconnected => RecvError::Disconnected,
            TryRecvError::PeerDead { pid } => RecvError::PeerDead { pid },
            TryRecvError::BufferTooSmall { need, have } => RecvError::BufferTooSmall { need, have },
            TryRecvError::SizeMismatch { found, expected } => RecvError::SizeMismatch { found, expected },
            TryRecvError::Corrupt(e) => RecvError::Corrupt(e),
            TryRecvError::Empty => return Err(e),
        })
    }
}

impl TryFrom<RecvTimeoutError> for RecvError {
    type Error = RecvTimeoutError;
    /// The blocking form of the error; `Timeout` has none.
    fn try_from(e: RecvTimeoutError) -> Result<RecvError, RecvTimeoutError> {
        Ok(match e {
            RecvTimeoutError::Disconnected => RecvError::Disconnected,
            RecvTimeoutError::PeerDead { pid } => RecvError::PeerDead { pid },
            RecvTimeoutError::BufferTooSmall { need, have } => RecvError::BufferTooSmall { need, have },
            RecvTimeoutError::SizeMismatch { found, expected } => RecvError::SizeMismatch { found, expected },
            RecvTimeoutError::Corrupt(e) => RecvError::Corrupt(e),
            RecvTimeoutError::Timeout => return Err(e),
        })
    }
}

/// A corrupt value found while reading records.
pub(crate) fn corrupt(what: &'static str, found: u64, position: u64, expected: &'static str) -> CorruptError {
    CorruptError { what, found, position, expected }
}

/// A try is a wait of zero: `Empty` becomes `Timeout`, everything else stays as it is (to
/// handle the two forms in one `match`).
impl From<TryRecvError> for RecvTimeoutError {
    fn from(e: TryRecvError) -> RecvTimeoutError {
        match RecvError::try_from(e) {
            Ok(e) => e.into(),
            Err(_empty) => RecvTimeoutError::Timeout,
        }
    }
}

/// A try is a wait of zero: `Full` becomes `Timeout`, everything else stays as it is.
impl<T> From<TrySendError<T>> for SendTimeoutError<T> {
    fn from(e: TrySendError<T>) -> SendTimeoutError<T> {
        let (fail, msg) = e.split();
        match fail {
            SendFail::Full => SendTimeoutError::Timeout(msg),
            SendFail::Stop(stop) => SendError::new(stop, msg).into(),
        }
    }
}
