//! Lock-free message rings in shared memory.
//!
//! A ring lives in a [`shm_core::Region`]: a header (positions, futex words, who is attached)
//! at offset 0, then a data area of variable-length records. Two processes that map the same
//! region exchange messages with no system call on the hot path: a message is published by one
//! Release store and consumed by one Release store. Waiting sides spin briefly, then sleep on a
//! futex word in the header; the other side makes a `FUTEX_WAKE` call only when a sleeper has
//! announced itself.
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
//!   then gets [`RecvError::Disconnected`]; a producer gets its message back with
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
//! [`ReadGuard::as_slice_unchecked`](spsc::ReadGuard::as_slice_unchecked),
//! [`Grant::as_mut_slice_unchecked`](spsc::Grant::as_mut_slice_unchecked),
//! [`recv_batch_unchecked`](spsc::Consumer::recv_batch_unchecked) and
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
//! let guard = consumer.recv()?;
//! // SAFETY: the producer is our own process and follows the ring protocol.
//! let bytes: &[u8] = unsafe { guard.as_slice_unchecked() };
//! assert_eq!(bytes, b"hello");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//! Without that trust use the copies: `try_recv` and friends, or the guard's
//! [`copy_to`](spsc::ReadGuard::copy_to) / [`read_at`](spsc::ReadGuard::read_at) /
//! [`to_vec`](spsc::ReadGuard::to_vec), and the grant's [`write_at`](spsc::Grant::write_at) /
//! [`copy_from_slice`](spsc::Grant::copy_from_slice).
//!
//! The header layout is documented in [`layout`].
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, clippy::undocumented_unsafe_blocks)]

/// `create`, `open`, `open_with` and `region` of a ring end on a [`Region`], the same for
/// every end type: `$ty` is the end, `$kind` the ring kind, `$role` how the docs name the end,
/// and `|$this| $mem` reaches the end's `RegionMemory`.
#[cfg(not(loom))]
macro_rules! region_constructors {
    ($ty:ident, $kind:expr, $ring:literal, $role:literal, |$this:ident| $mem:expr) => {
        impl $ty<$crate::memory::RegionMemory> {
            #[doc = concat!("Initialise an ", $ring, " ring in `region` (zero-filled, or holding no ring) and attach as ", $role, ".")]
            pub fn create(
                region: impl Into<std::sync::Arc<shm_core::Region>>,
                config: &$crate::RingConfig,
            ) -> Result<Self, $crate::InitError> {
                let (mem, geo) = $crate::handshake::init_region(region.into(), config, $kind)?;
                Ok(Self::attach_mem(mem, geo)?)
            }

            #[doc = concat!("Attach as ", $role, " of the ", $ring, " ring in `region`, waiting up to 1 s for a creator that is still initialising it.")]
            pub fn open(region: impl Into<std::sync::Arc<shm_core::Region>>) -> Result<Self, $crate::AttachError> {
                Self::open_with(region, &$crate::AttachOptions::default())
            }

            /// `open` with options.
            pub fn open_with(
                region: impl Into<std::sync::Arc<shm_core::Region>>,
                options: &$crate::AttachOptions,
            ) -> Result<Self, $crate::AttachError> {
                let (mem, geo) = $crate::handshake::attach_region(region.into(), $kind, options)?;
                Self::attach_mem(mem, geo)
            }

            /// The region the ring lives in (to `flush` a file-backed ring, for example).
            pub fn region(&self) -> &std::sync::Arc<shm_core::Region> {
                let $this = self;
                $mem.region()
            }
        }
    };
}

/// `capacity` and `max_message`, from the geometry every ring end copies at attach.
macro_rules! geometry_methods {
    () => {
        /// Data bytes of the ring.
        pub fn capacity(&self) -> usize {
            self.geo.capacity as usize
        }

        /// The largest payload this ring carries.
        pub fn max_message(&self) -> usize {
            self.geo.max_message
        }
    };
}

/// The blocking and typed send calls every producer offers, written once over its private
/// `send_deadline` and its `try_send` (used inside `impl<M: Memory> Producer<M>`).
macro_rules! producer_methods {
    () => {
        geometry_methods!();

        /// Send, waiting as long as it takes for room (spinning briefly, then sleeping on a
        /// futex). Fails only when the consumer is closed or dead, the message is too large, or
        /// memory is corrupt; the message is handed back in the error.
        pub fn send<T: AsRef<[u8]>>(&mut self, msg: T) -> Result<(), $crate::SendError<T>> {
            self.send_deadline(msg, None)
        }

        /// Send, waiting at most `timeout` for room.
        pub fn send_timeout<T: AsRef<[u8]>>(
            &mut self,
            msg: T,
            timeout: std::time::Duration,
        ) -> Result<(), $crate::SendError<T>> {
            self.send_deadline(msg, $crate::wait::deadline(timeout))
        }

        /// Send a plain-old-data value as its bytes.
        pub fn send_pod<T: bytemuck::Pod>(&mut self, value: T) -> Result<(), $crate::SendError<T>> {
            self.try_send(bytemuck::bytes_of(&value)).map_err(|e| e.map(|_| value))
        }

        /// Send a plain-old-data value, waiting at most `timeout` for room.
        pub fn send_pod_timeout<T: bytemuck::Pod>(
            &mut self,
            value: T,
            timeout: std::time::Duration,
        ) -> Result<(), $crate::SendError<T>> {
            self.send_timeout(bytemuck::bytes_of(&value), timeout).map_err(|e| e.map(|_| value))
        }
    };
}

/// The receive calls every consumer offers, written once over its private `try_next`,
/// `wait_next`, `payload` and `consume` (used inside `impl<M: Memory> Consumer<M>`).
macro_rules! consumer_methods {
    () => {
        geometry_methods!();

        /// Bytes waiting to be consumed or still being written (records, their headers and
        /// padding).
        pub fn len_bytes(&self) -> usize {
            // Acquire: not needed (a byte count for the caller, no record is read after it).
            let tail = self.mem.header().tail.load(ord!(Acquire));
            tail.saturating_sub(self.st.head).min(self.geo.capacity) as usize
        }

        /// Whether nothing waits to be consumed.
        pub fn is_empty(&self) -> bool {
            self.len_bytes() == 0
        }

        /// Copy the payload into `buf` (cleared first), then consume the record.
        fn copy_out(&mut self, n: Next, buf: &mut Vec<u8>) -> usize {
            buf.clear();
            buf.reserve(n.len);
            self.mem.copy_out_uninit(n.idx, &mut buf.spare_capacity_mut()[..n.len]);
            // SAFETY: copy_out_uninit initialised the first n.len bytes of the spare capacity.
            unsafe { buf.set_len(n.len) };
            self.consume(n);
            n.len
        }

        /// The payload of `n` in place.
        ///
        /// # Safety
        /// As for [`ReadGuard::as_slice_unchecked`]: nobody writes the payload while the slice
        /// lives. (`next` checked that the record lies inside the data area.)
        unsafe fn payload_unchecked(mem: &M, n: Next) -> &[u8] {
            mem.track_read(n.idx, n.len);
            // SAFETY: the record's payload lies inside the data area (checked by `next`), and
            // the caller promises nobody writes it while the slice lives.
            unsafe { std::slice::from_raw_parts(mem.payload(n.idx), n.len) }
        }

        /// Receive a copy of the next message into `buf` (cleared first) if one is there now.
        /// Returns its length.
        pub fn try_recv(&mut self, buf: &mut Vec<u8>) -> Result<usize, $crate::RecvError> {
            let n = self.try_next()?;
            Ok(self.copy_out(n, buf))
        }

        /// Receive the next message into `buf`, which must be large enough (otherwise
        /// [`$crate::RecvError::BufferTooSmall`] and the message stays in the ring).
        pub fn try_recv_into(&mut self, buf: &mut [u8]) -> Result<usize, $crate::RecvError> {
            let n = self.try_next()?;
            if n.len > buf.len() {
                return Err($crate::RecvError::BufferTooSmall { need: n.len, have: buf.len() });
            }
            self.mem.copy_out(n.idx, 0, &mut buf[..n.len]);
            self.consume(n);
            Ok(n.len)
        }

        /// Receive into `buf`, waiting at most `timeout`.
        pub fn recv_timeout(
            &mut self,
            buf: &mut Vec<u8>,
            timeout: std::time::Duration,
        ) -> Result<usize, $crate::RecvError> {
            let n = self.wait_next($crate::wait::deadline(timeout))?;
            Ok(self.copy_out(n, buf))
        }

        /// Receive into `buf`, waiting as long as it takes. Fails when the producers are closed or
        /// dead and everything they sent has been received, or on corrupt memory.
        pub fn recv_blocking(&mut self, buf: &mut Vec<u8>) -> Result<usize, $crate::RecvError> {
            let n = self.wait_next(None)?;
            Ok(self.copy_out(n, buf))
        }

        /// Take the next message without copying it out yet, if one is there now. The guard
        /// copies the payload where you want it ([`ReadGuard::copy_to`], `read_at`, `to_vec`),
        /// or, for a trusted producer, lends it in place ([`ReadGuard::as_slice_unchecked`]);
        /// dropping it marks the message consumed (see `flush`).
        pub fn recv(&mut self) -> Result<ReadGuard<'_, M>, $crate::RecvError> {
            let next = self.try_next()?;
            Ok(ReadGuard { consumer: self, next })
        }

        /// `recv`, waiting at most `timeout` (None: forever).
        pub fn recv_guard_timeout(
            &mut self,
            timeout: Option<std::time::Duration>,
        ) -> Result<ReadGuard<'_, M>, $crate::RecvError> {
            let next = self.wait_next(timeout.and_then(deadline))?;
            Ok(ReadGuard { consumer: self, next })
        }

        /// Receive a plain-old-data value. A message of another size stays in the ring
        /// ([`$crate::RecvError::SizeMismatch`]).
        pub fn recv_pod<T: bytemuck::Pod>(&mut self) -> Result<T, $crate::RecvError> {
            let n = self.try_next()?;
            self.take_pod(n)
        }

        /// `recv_pod`, waiting at most `timeout`.
        pub fn recv_pod_timeout<T: bytemuck::Pod>(
            &mut self,
            timeout: std::time::Duration,
        ) -> Result<T, $crate::RecvError> {
            let n = self.wait_next($crate::wait::deadline(timeout))?;
            self.take_pod(n)
        }

        fn take_pod<T: bytemuck::Pod>(&mut self, n: Next) -> Result<T, $crate::RecvError> {
            let expected = std::mem::size_of::<T>();
            if n.len != expected {
                return Err($crate::RecvError::SizeMismatch { found: n.len, expected });
            }
            let mut v: T = bytemuck::Zeroable::zeroed();
            self.mem.copy_out(n.idx, 0, bytemuck::bytes_of_mut(&mut v));
            self.consume(n);
            Ok(v)
        }

        /// Hand up to `max` waiting messages to `f` in order, each copied into a buffer of this
        /// process first, then release all of them with one store of the consumer position.
        /// Returns how many were handled (at least 1); with none waiting, the same errors as
        /// [`try_recv`](Self::try_recv).
        pub fn recv_batch(
            &mut self,
            max: usize,
            mut f: impl FnMut(&[u8]),
        ) -> Result<usize, $crate::RecvError> {
            let mut buf = Vec::new();
            self.batch(max, |mem, n| {
                buf.clear();
                buf.reserve(n.len);
                f(mem.copy_out_uninit(n.idx, &mut buf.spare_capacity_mut()[..n.len]))
            })
        }

        /// [`recv_batch`](Self::recv_batch) with no copy: `f` reads each message in place.
        ///
        /// # Safety
        /// As for [`ReadGuard::as_slice_unchecked`], for every message handed to `f`: no
        /// process or thread writes a message's payload while `f` holds it, which holds when
        /// every process that can write the ring's memory follows the ring protocol (see
        /// "Trusting the peer" in the [crate docs](crate)).
        pub unsafe fn recv_batch_unchecked(
            &mut self,
            max: usize,
            mut f: impl FnMut(&[u8]),
        ) -> Result<usize, $crate::RecvError> {
            // SAFETY: the caller's promise, passed on.
            self.batch(max, |mem, n| f(unsafe { Self::payload_unchecked(mem, n) }))
        }
    };
}

/// The read guard of a consumer (`ReadGuard`), the same for every consumer type.
macro_rules! read_guard {
    () => {
        /// A message taken from the ring but still in it; dropping the guard marks it consumed.
        ///
        /// The payload stays in shared memory, where the producer's process can still write it
        /// (a buggy or hostile one at any time). So the guard hands it out as copies made with
        /// atomic word loads ([`copy_to`](Self::copy_to), [`read_at`](Self::read_at),
        /// [`to_vec`](Self::to_vec)), which are sound whatever the producer writes: at worst
        /// they return garbage. Borrowing the bytes in place
        /// ([`as_slice_unchecked`](Self::as_slice_unchecked)) is `unsafe`: only for a
        /// producer you trust.
        pub struct ReadGuard<'a, M: $crate::Memory = $crate::spsc::DefaultMemory> {
            consumer: &'a mut Consumer<M>,
            next: Next,
        }

        impl<M: $crate::Memory> std::fmt::Debug for ReadGuard<'_, M> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct("ReadGuard").field("len", &self.next.len).finish()
            }
        }

        impl<M: $crate::Memory> ReadGuard<'_, M> {
            /// The payload length.
            pub fn len(&self) -> usize {
                self.next.len
            }

            /// Whether the payload is empty.
            pub fn is_empty(&self) -> bool {
                self.next.len == 0
            }

            /// Copy the payload to the start of `dst`, at most `dst.len()` bytes; returns how
            /// many were copied.
            pub fn copy_to(&self, dst: &mut [u8]) -> usize {
                let n = self.next.len.min(dst.len());
                self.consumer.mem.copy_out(self.next.idx, 0, &mut dst[..n]);
                n
            }

            /// Copy `dst.len()` payload bytes starting at `offset` into `dst`.
            ///
            /// # Panics
            /// If `offset + dst.len()` is beyond the payload.
            pub fn read_at(&self, offset: usize, dst: &mut [u8]) {
                match offset.checked_add(dst.len()) {
                    Some(end) if end <= self.next.len => {
                        self.consumer.mem.copy_out(self.next.idx, offset, dst)
                    }
                    _ => panic!(
                        "ReadGuard::read_at: {} bytes at offset {offset} is beyond the {}-byte payload",
                        dst.len(),
                        self.next.len
                    ),
                }
            }

            /// A copy of the payload.
            pub fn to_vec(&self) -> Vec<u8> {
                let mut v = Vec::with_capacity(self.next.len);
                self.consumer
                    .mem
                    .copy_out_uninit(self.next.idx, &mut v.spare_capacity_mut()[..self.next.len]);
                // SAFETY: copy_out_uninit initialised the first len bytes of the spare capacity.
                unsafe { v.set_len(self.next.len) };
                v
            }

            /// The payload's address in the ring (`len()` bytes, valid while the guard lives).
            /// Read it only with atomic or volatile accesses unless you trust the producer.
            pub fn as_ptr(&self) -> *const u8 {
                self.consumer.mem.payload(self.next.idx)
            }

            /// The payload in place, with no copy: for a producer you trust.
            ///
            /// # Safety
            /// No process or thread may write the payload while the returned slice lives. The
            /// ring protocol guarantees this for a producer that follows it (it never writes a
            /// record it published before the consumer hands the space back), so the promise
            /// is that every process able to write the ring's memory runs this library (or a
            /// conforming implementation of the [`layout`](crate::layout)) and is neither buggy
            /// nor hostile.
            /// See "Trusting the peer" in the [crate docs](crate).
            pub unsafe fn as_slice_unchecked(&self) -> &[u8] {
                // SAFETY: the caller's promise; `next` checked the record lies in the data area.
                unsafe { Consumer::payload_unchecked(&self.consumer.mem, self.next) }
            }
        }

        impl<M: $crate::Memory> Drop for ReadGuard<'_, M> {
            fn drop(&mut self) {
                self.consumer.consume(self.next);
            }
        }
    };
}

/// The write calls of a grant (`Grant`), the same for every producer type, over the grant's
/// private `place() -> (&M, record index, length)`.
macro_rules! grant_methods {
    () => {
        /// The reserved length.
        pub fn len(&self) -> usize {
            self.place().2
        }

        /// Whether the reserved length is 0.
        pub fn is_empty(&self) -> bool {
            self.len() == 0
        }

        /// Copy `src` into the reserved bytes at `offset` (atomic word stores: sound whatever
        /// the consumer's process does meanwhile).
        ///
        /// # Panics
        /// If `offset + src.len()` is beyond the reserved length.
        pub fn write_at(&mut self, offset: usize, src: &[u8]) {
            let (mem, idx, len) = self.place();
            match offset.checked_add(src.len()) {
                Some(end) if end <= len => mem.copy_in(idx, offset, src),
                _ => panic!(
                    "Grant::write_at: {} bytes at offset {offset} is beyond the {len} reserved",
                    src.len()
                ),
            }
        }

        /// Copy `src` into the reserved bytes, which it must fill exactly (as
        /// `<[u8]>::copy_from_slice`).
        ///
        /// # Panics
        /// If `src.len()` differs from the reserved length.
        pub fn copy_from_slice(&mut self, src: &[u8]) {
            assert_eq!(src.len(), self.len(), "Grant::copy_from_slice: source and grant lengths differ");
            self.write_at(0, src);
        }

        /// The reserved bytes' address in the ring (`len()` bytes, valid while the grant
        /// lives). Access it only with atomic or volatile accesses unless you trust the
        /// consumer.
        pub fn as_mut_ptr(&mut self) -> *mut u8 {
            let (mem, idx, _) = self.place();
            mem.payload(idx)
        }

        /// The reserved bytes in place, with no copy: for a consumer you trust. They hold
        /// whatever the ring held there before (old messages), not zeros.
        ///
        /// # Safety
        /// No other process or thread may read or write these bytes while the returned slice
        /// lives. The ring protocol guarantees this for peers that follow it (the consumer
        /// does not read a record before it is committed; no other producer writes claimed
        /// space), so the promise is that every process able to map the ring runs this library
        /// (or a conforming implementation of the [`layout`](crate::layout)) and is neither buggy nor
        /// hostile. See "Trusting the peer" in the [crate docs](crate).
        pub unsafe fn as_mut_slice_unchecked(&mut self) -> &mut [u8] {
            let (mem, idx, len) = self.place();
            mem.track_write(idx, len);
            // SAFETY: the reservation covers `len` payload bytes at `idx` inside the data area,
            // `&mut self` keeps every other call of this producer out, and the caller promises
            // no other process or thread touches them.
            unsafe { std::slice::from_raw_parts_mut(mem.payload(idx), len) }
        }
    };
}

#[macro_use]
mod sync;

#[cfg(not(loom))]
mod cleanup;
mod config;
mod error;
#[cfg(not(loom))]
#[doc(hidden)]
pub mod fuzzing;
mod handshake;
mod identity;
#[cfg(not(loom))]
pub mod inspect;
pub mod layout;
mod memory;
#[cfg(loom)]
pub mod model;
pub mod mpsc;
mod slots;
pub mod spsc;
mod wait;

#[cfg(not(loom))]
pub use cleanup::{
    cleanup, CleanupEntry, CleanupOptions, CleanupOutcome, CleanupReport, KeepReason, Undelivered,
};
pub use config::{RingConfig, MAX_CAPACITY};
pub use error::{AttachError, CorruptError, InitError, RecvError, Role, SendError};
#[cfg(not(loom))]
pub use handshake::init;
pub use handshake::AttachOptions;
#[cfg(not(loom))]
pub use inspect::{find_rings, status, EndInfo, EndState, Evidence, FoundRing, InitState, RingStatus};
pub use layout::Kind;
#[cfg(loom)]
pub use memory::HeapMemory;
pub use memory::Memory;
#[cfg(not(loom))]
pub use memory::RegionMemory;
