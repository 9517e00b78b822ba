//! Lock-free message rings in shared memory.
//!
//! A ring lives in a [`shm_core::Region`]: a header (positions, futex words, who is attached)
//! at offset 0, then a data area of variable-length records. Two processes that map the same
//! region exchange messages with no system call on the hot path: a message is published by one
//! Release store and consumed by one Release store. Waiting sides spin briefly, then sleep on a
//! futex word in the header; the other side makes a `FUTEX_WAKE` call only when a sleeper has
//! announced itself.
//!
//! Both ring kinds ([`Spsc`], [`Mpsc`]) have the same ends, [`Producer`] and [`Consumer`],
//! whose calls are named as std's channels name them (see [`Producer`] for the table):
//! `try_send` / `send_timeout` / `send`, `try_recv` / `recv_timeout` / `recv`, zero-copy
//! `try_read` / `read_timeout` / `read` guards, `*_pod` variants, `try_iter` / `iter`.
//! `spsc::Producer`, `mpsc::Consumer`, ... are aliases of them.
//!
//! # Example: two processes on a file
//! ```
//! use shm_core::Region;
//! use shm_ring::{spsc, RingConfig};
//! # let dir = tempfile::tempdir()?;
//! # let path = dir.path().join("ring");
//!
//! // Process 1: create the file and the ring, attach as producer.
//! let config = RingConfig::spsc(1 << 16);
//! let mut producer = spsc::Producer::create(Region::create_file(&path, config.region_len())?, &config)?;
//! producer.try_send(b"hello")?;
//!
//! // Process 2 (here the same one): open the file, attach as consumer.
//! let mut consumer = spsc::Consumer::open(Region::open_file(&path)?)?;
//! let mut buf = Vec::new();
//! consumer.try_recv(&mut buf)?;
//! assert_eq!(buf, b"hello");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Guarantees
//! - Messages arrive once each, in order, whole, while both ends live.
//! - Dropping an end marks it closed and wakes the peer: the consumer drains what was sent,
//!   then gets `Disconnected`; a producer gets its message back with
//!   [`SendError::Disconnected`]. A peer killed without closing is detected from positive
//!   evidence only and reported as `PeerDead` to a blocked waiter within about 40 ms: on file,
//!   POSIX shm and memfd rings the kernel releasing the OFD lock each end holds on its slot
//!   (valid across PID namespaces and containers), on anonymous rings shared across `fork` its
//!   pid and start time (from the same PID namespace only). A slow peer, a peer in another PID
//!   namespace without a lock, or an error while checking is never taken for a dead peer.
//! - On a file-backed ring the positions live in the file: a consumer that reopens resumes at
//!   the first unconsumed message, a producer that reopens appends after the last one.
//! - The peer is not trusted: geometry is copied at attach, every position and length read from
//!   shared memory is range-checked, and a violation is an error ([`CorruptError`]), never a
//!   panic or an out-of-bounds access. Payloads are copied in and out with atomic word accesses,
//!   never through a `&[u8]` over the ring, so a peer writing them at the same time can only
//!   garble the bytes.
//!
//! # Trusting the peer
//! Every safe call is sound whatever the peer process writes. The calls that lend ring memory
//! as a slice, with no copy, are `unsafe`, because a Rust slice promises that nobody writes the
//! bytes while it lives, which only a peer following the protocol keeps:
//! [`ReadGuard::as_slice_unchecked`], [`Grant::as_mut_slice_unchecked`],
//! [`recv_batch_unchecked`](Consumer::recv_batch_unchecked) and
//! [`BatchWriter::push_unchecked`](spsc::BatchWriter::push_unchecked). Calling them is the
//! promise that every process able to write the ring's memory runs this library (or a
//! conforming implementation of the layout) and is neither buggy nor hostile, for example
//! because they are all your own program:
//! ```
//! # use std::sync::Arc;
//! # use shm_core::Region;
//! # use shm_ring::{spsc, RingConfig};
//! # let config = RingConfig::spsc(4096);
//! # let region = Arc::new(Region::anonymous(config.region_len())?);
//! # let mut producer = spsc::Producer::create(region.clone(), &config)?;
//! # let mut consumer = spsc::Consumer::open(region)?;
//! # producer.try_send(b"hello")?;
//! let guard = consumer.try_read()?;
//! // SAFETY: the producer is our own process and follows the ring protocol.
//! let bytes: &[u8] = unsafe { guard.as_slice_unchecked() };
//! assert_eq!(bytes, b"hello");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//! Without that trust use the copies: `try_recv` and friends, or the guard's
//! [`copy_to`](ReadGuard::copy_to) / [`read_at`](ReadGuard::read_at) /
//! [`to_vec`](ReadGuard::to_vec), and the grant's [`write_at`](Grant::write_at) /
//! [`copy_from_slice`](Grant::copy_from_slice).
//!
//! # Code for every kind
//! ```
//! use std::sync::Arc;
//! use shm_core::Region;
//! use shm_ring::{Consumer, Mpsc, Producer, RingConfig, RingKind, Spsc};
//!
//! fn relay<K: RingKind>(config: RingConfig) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
//!     let region = Arc::new(Region::anonymous(config.region_len())?);
//!     let mut tx = Producer::<K>::create(region.clone(), &config)?;
//!     let mut rx = Consumer::<K>::open(region)?;
//!     tx.send(b"same calls")?;
//!     let mut buf = Vec::new();
//!     rx.recv(&mut buf)?;
//!     Ok(buf)
//! }
//! assert_eq!(relay::<Spsc>(RingConfig::spsc(4096))?, b"same calls");
//! assert_eq!(relay::<Mpsc>(RingConfig::mpsc(4096, 4))?, b"same calls");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The header layout is documented in [`layout`].
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, clippy::undocumented_unsafe_blocks)]

#[macro_use]
mod sync;

#[cfg(feature = "async")]
pub mod aio;
#[cfg(not(loom))]
pub mod any;
pub mod broadcast;
mod channel;
#[cfg(not(loom))]
mod cleanup;
mod config;
mod error;
#[cfg(not(loom))]
#[doc(hidden)]
pub mod fuzzing;
mod handshake;
pub mod heap;
mod identity;
#[cfg(not(loom))]
pub mod inspect;
pub mod layout;
mod memory;
#[cfg(loom)]
pub mod model;
pub mod mpsc;
mod protocol;
mod slots;
pub mod spsc;
mod wait;

pub use channel::{Consumer, Grant, Iter, Producer, ReadGuard, TryIter};
#[cfg(not(loom))]
pub use cleanup::{
    cleanup, CleanupEntry, CleanupOptions, CleanupOutcome, CleanupReport, KeepReason, Undelivered,
};
pub use config::{RingConfig, MAX_CAPACITY};
pub use error::{
    AttachError, CorruptError, InitError, RecvError, RecvTimeoutError, Role, SendError, SendTimeoutError,
    TryRecvError, TrySendError,
};
pub use protocol::{Broadcast, Mpsc, RingKind, Spsc};

/// The crate the `*_pod` calls take their bounds from ([`bytemuck::Pod`]), re-exported so
/// that users need no version of their own.
pub use bytemuck;

// The ends move between threads (to a worker, into a spawned thread) and can be shared by
// reference (every call that changes an end takes `&mut self`).
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<spsc::Producer>();
    send_sync::<spsc::Consumer>();
    send_sync::<mpsc::Producer>();
    send_sync::<mpsc::Consumer>();
    send_sync::<broadcast::Producer>();
    send_sync::<broadcast::Subscriber>();
};
#[cfg(not(loom))]
pub use handshake::init;
pub use handshake::AttachOptions;
#[cfg(not(loom))]
pub use inspect::{
    find_rings, status, EndInfo, EndState, Evidence, FoundRing, InitState, RingStatus, SubscriberInfo,
};
pub use layout::{Kind, Policy};
pub use memory::HeapMemory;
pub use memory::Memory;
#[cfg(not(loom))]
pub use memory::RegionMemory;
