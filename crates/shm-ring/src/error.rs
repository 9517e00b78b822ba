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
    #[error("max message size {found} is invalid: expected 1 to {limit} bytes for this capacity (half the ring less its record header)")]
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
    /// Broadcast subscriber slot count out of range.
    #[error("max subscribers {found} is invalid: expected 1 to {limit}")]
    BadSubscribers {
        /// The count asked for.
        found: u32,
        /// The largest allowed.
        limit: u32,
    },
    /// A policy other than `Block` was asked for a ring kind that has none.
    #[error("a {kind} ring has no {policy} policy: only broadcast rings take one")]
    PolicyNotSupported {
        /// The kind.
        kind: Kind,
        /// The policy asked for.
        policy: crate::layout::Policy,
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
    /// Every subscriber slot of a broadcast ring is held by a live process.
    #[error("all {slots} subscriber slots are held by live processes")]
    NoFreeSubscriberSlot {
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

/// A send error type: the variants every send form shares (each handing the message back),
/// plus `$extra` (the form's own "not now": `Full` for a try, `Timeout` for a timed send), and
/// what each needs beyond them: conversion from the internal [`SendStop`], `into_inner`, `map`,
/// `Display`, `Debug` (without `T: Debug`), `Error` and `From<_> for io::Error`.
macro_rules! send_error {
    ($(#[$meta:meta])* $name:ident $(, $(#[$xmeta:meta])* $extra:ident => $text:literal, $kind:ident)?) => {
        $(#[$meta])*
        #[non_exhaustive]
        pub enum $name<T> {
            $($(#[$xmeta])* $extra(T),)?
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

        impl<T> $name<T> {
            /// The error for `stop` (`None`: the form's own "not now"), carrying `msg`.
            #[allow(dead_code)]
            pub(crate) fn from_stop(stop: Option<SendStop>, msg: T) -> $name<T> {
                match stop {
                    $(None => $name::$extra(msg),)?
                    Some(SendStop::Disconnected) => $name::Disconnected(msg),
                    Some(SendStop::PeerDead { pid }) => $name::PeerDead { msg, pid },
                    Some(SendStop::TooLarge { len, max }) => $name::TooLarge { msg, len, max },
                    Some(SendStop::Corrupt(error)) => $name::Corrupt { msg, error },
                    #[allow(unreachable_patterns)]
                    None => unreachable!("a blocking send has no \"not now\""),
                }
            }

            /// The reason (`None`: the form's own "not now") and the message.
            fn split(self) -> (Option<SendStop>, T) {
                match self {
                    $($name::$extra(msg) => (None, msg),)?
                    $name::Disconnected(msg) => (Some(SendStop::Disconnected), msg),
                    $name::PeerDead { msg, pid } => (Some(SendStop::PeerDead { pid }), msg),
                    $name::TooLarge { msg, len, max } => (Some(SendStop::TooLarge { len, max }), msg),
                    $name::Corrupt { msg, error } => (Some(SendStop::Corrupt(error)), msg),
                }
            }

            fn reason(&self) -> Option<SendStop> {
                match self {
                    $($name::$extra(_) => None,)?
                    $name::Disconnected(_) => Some(SendStop::Disconnected),
                    $name::PeerDead { pid, .. } => Some(SendStop::PeerDead { pid: *pid }),
                    $name::TooLarge { len, max, .. } => Some(SendStop::TooLarge { len: *len, max: *max }),
                    $name::Corrupt { error, .. } => Some(SendStop::Corrupt(*error)),
                }
            }

            /// The message that was not sent.
            pub fn into_inner(self) -> T {
                self.split().1
            }

            /// The same error carrying another value.
            pub fn map<U>(self, f: impl FnOnce(T) -> U) -> $name<U> {
                let (stop, msg) = self.split();
                $name::from_stop(stop, f(msg))
            }
        }

        impl<T> fmt::Display for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.reason() {
                    Some(stop) => stop.fmt(f),
                    None => f.write_str(send_error!(@text $($text)?)),
                }
            }
        }

        // Debug without `T: Debug`, as std's channel errors: the message is shown as `..`.
        impl<T> fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let name = stringify!($name);
                match self.reason() {
                    None => write!(f, "{name}::{}(..)", send_error!(@text $(stringify!($extra))?)),
                    Some(SendStop::Disconnected) => write!(f, "{name}::Disconnected(..)"),
                    Some(SendStop::PeerDead { pid }) => write!(f, "{name}::PeerDead {{ pid: {pid}, .. }}"),
                    Some(SendStop::TooLarge { len, max }) => {
                        write!(f, "{name}::TooLarge {{ len: {len}, max: {max}, .. }}")
                    }
                    Some(SendStop::Corrupt(error)) => write!(f, "{name}::Corrupt {{ error: {error:?}, .. }}"),
                }
            }
        }

        impl<T> std::error::Error for $name<T> {}

        impl<T> From<$name<T>> for std::io::Error {
            fn from(e: $name<T>) -> std::io::Error {
                match e.reason() {
                    Some(stop) => std::io::Error::new(stop.io_kind(), stop.to_string()),
                    None => std::io::Error::new(
                        send_error!(@kind $($kind)?),
                        send_error!(@text $($text)?),
                    ),
                }
            }
        }
    };
    (@text $text:expr) => { $text };
    (@text) => { "" };
    (@kind $kind:ident) => { std::io::ErrorKind::$kind };
    (@kind) => { std::io::ErrorKind::Other };
}

send_error! {
    /// The error of a blocking send ([`Producer::send`](crate::Producer::send) and friends): the
    /// message is handed back.
    SendError
}

send_error! {
    /// The error of a non-blocking send ([`Producer::try_send`](crate::Producer::try_send) and
    /// friends): the message is handed back.
    TrySendError,
    /// The ring has no room now.
    Full => "ring is full", WouldBlock
}

send_error! {
    /// The error of a timed send ([`Producer::send_timeout`](crate::Producer::send_timeout) and
    /// friends): the message is handed back.
    SendTimeoutError,
    /// The ring had no room before the timeout.
    Timeout => "timed out waiting for room in the ring", TimedOut
}

impl<T> SendError<T> {
    pub(crate) fn new(stop: SendStop, msg: T) -> SendError<T> {
        SendError::from_stop(Some(stop), msg)
    }
}

impl<T> TrySendError<T> {
    pub(crate) fn new(fail: SendFail, msg: T) -> TrySendError<T> {
        match fail {
            SendFail::Full => TrySendError::from_stop(None, msg),
            SendFail::Stop(stop) => TrySendError::from_stop(Some(stop), msg),
        }
    }

    /// Whether the ring was only full (a later try may succeed).
    pub fn is_full(&self) -> bool {
        matches!(self, TrySendError::Full(_))
    }
}

impl<T> SendTimeoutError<T> {
    /// `stop` with the message; `None` for the timeout.
    pub(crate) fn new(stop: Option<SendStop>, msg: T) -> SendTimeoutError<T> {
        SendTimeoutError::from_stop(stop, msg)
    }

    /// Whether the wait only timed out (a later send may succeed).
    pub fn is_timeout(&self) -> bool {
        matches!(self, SendTimeoutError::Timeout(_))
    }
}

impl<T> From<SendError<T>> for TrySendError<T> {
    fn from(e: SendError<T>) -> TrySendError<T> {
        let (stop, msg) = e.split();
        TrySendError::from_stop(stop, msg)
    }
}

impl<T> From<SendError<T>> for SendTimeoutError<T> {
    fn from(e: SendError<T>) -> SendTimeoutError<T> {
        let (stop, msg) = e.split();
        SendTimeoutError::from_stop(stop, msg)
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
    PeerDead {
        pid: u32,
    },
    Corrupt(CorruptError),
    /// Broadcast, `Overwrite`: the producer wrote over `skipped` messages before we read them.
    Lagged {
        skipped: u64,
    },
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
            /// A subscriber of a broadcast ring with the `Overwrite` policy was overtaken: the
            /// producer wrote over `skipped` messages before it read them. The next receive
            /// returns the oldest message still in the ring. (Never on other rings.)
            #[error("subscriber fell behind: the producer wrote over {skipped} messages before they were read")]
            Lagged {
                /// Messages lost.
                skipped: u64,
            },
        }

        impl From<RecvStop> for $name {
            fn from(s: RecvStop) -> $name {
                match s {
                    RecvStop::Disconnected => $name::Disconnected,
                    RecvStop::PeerDead { pid } => $name::PeerDead { pid },
                    RecvStop::Corrupt(e) => $name::Corrupt(e),
                    RecvStop::Lagged { skipped } => $name::Lagged { skipped },
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
            // Data was lost, and receiving goes on: no std kind says that better.
            RecvError::Lagged { .. } => ErrorKind::Other,
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
            RecvError::Lagged { skipped } => TryRecvError::Lagged { skipped },
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
            RecvError::Lagged { skipped } => RecvTimeoutError::Lagged { skipped },
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
            TryRecvError::Lagged { skipped } => RecvError::Lagged { skipped },
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
            RecvTimeoutError::Lagged { skipped } => RecvError::Lagged { skipped },
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
        let (stop, msg) = e.split();
        SendTimeoutError::from_stop(stop, msg)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::io::ErrorKind;

    #[test]
    fn send_errors_say_what_happened_and_hand_the_message_back() {
        let full = TrySendError::Full(5u8);
        assert_eq!(
            (full.to_string(), format!("{full:?}")),
            ("ring is full".into(), "TrySendError::Full(..)".into())
        );
        assert!(full.is_full());
        assert_eq!(std::io::Error::from(TrySendError::Full(5u8)).kind(), ErrorKind::WouldBlock);
        assert_eq!(full.map(|m| m + 1).into_inner(), 6);

        let timeout = SendTimeoutError::new(None, "m");
        assert!(timeout.is_timeout());
        assert_eq!(timeout.to_string(), "timed out waiting for room in the ring");
        assert_eq!(std::io::Error::from(timeout).kind(), ErrorKind::TimedOut);

        let gone = SendError::new(SendStop::Disconnected, vec![1u8]);
        assert_eq!(format!("{gone:?}"), "SendError::Disconnected(..)");
        assert_eq!(gone.to_string(), "consumer closed its end of the ring");
        assert_eq!(
            std::io::Error::from(SendError::new(SendStop::Disconnected, ())).kind(),
            ErrorKind::BrokenPipe
        );

        let dead = SendError::new(SendStop::PeerDead { pid: 42 }, 'x');
        assert_eq!(format!("{dead:?}"), "SendError::PeerDead { pid: 42, .. }");
        match TrySendError::from(dead) {
            TrySendError::PeerDead { msg, pid } => assert_eq!((msg, pid), ('x', 42)),
            other => panic!("{other:?}"),
        }
        let large = TrySendError::new(SendStop::TooLarge { len: 9, max: 8 }.into(), ());
        assert_eq!(large.to_string(), "message of 9 bytes exceeds the ring's max message size 8");
        assert!(matches!(SendTimeoutError::from(TrySendError::Full(1)), SendTimeoutError::Timeout(1)));
        assert!(matches!(SendTimeoutError::from(large), SendTimeoutError::TooLarge { len: 9, max: 8, .. }));
    }

    #[test]
    fn receive_errors_convert_without_losing_anything() {
        assert_eq!(RecvTimeoutError::from(TryRecvError::Empty), RecvTimeoutError::Timeout);
        assert_eq!(
            RecvTimeoutError::from(TryRecvError::PeerDead { pid: 3 }),
            RecvTimeoutError::PeerDead { pid: 3 }
        );
        assert_eq!(RecvError::try_from(TryRecvError::Empty), Err(TryRecvError::Empty));
        assert_eq!(RecvError::try_from(RecvTimeoutError::Disconnected), Ok(RecvError::Disconnected));
        let e = std::io::Error::from(TryRecvError::Empty);
        assert_eq!(e.kind(), ErrorKind::WouldBlock);
        assert_eq!(e.get_ref().and_then(|e| e.downcast_ref::<TryRecvError>()), Some(&TryRecvError::Empty));
        assert_eq!(std::io::Error::from(RecvError::Disconnected).kind(), ErrorKind::UnexpectedEof);
        let c = CorruptError { what: "x", found: 1, position: 2, expected: "y" };
        assert_eq!(std::io::Error::from(RecvTimeoutError::Corrupt(c)).kind(), ErrorKind::InvalidData);
    }
}
