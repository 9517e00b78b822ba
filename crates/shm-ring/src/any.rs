//! Ends whose ring kind is chosen at run time, holding their zero-copy grant or read inside:
//! the front of the C and Python bindings, for callers without generics or borrows.
//!
//! [`AnyProducer`] and [`AnyConsumer`] wrap a [`Producer`] / [`Consumer`] of any kind (the kind
//! given, or read from the ring's header at attach). Every waiting call takes a
//! `wait: Option<Duration>`: `Some(Duration::ZERO)` is the `try_*` form (no wait at all),
//! `Some(t)` the `*_timeout` form, `None` the blocking form; their "not now" is always
//! [`SendTimeoutError::Timeout`] / [`RecvTimeoutError::Timeout`].
//!
//! Zero-copy calls hand out raw pointers, not borrows:
//! - [`AnyProducer::reserve`] claims room and returns its address; the claim stays in the end
//!   until [`commit`](AnyProducer::commit) or [`abort`](AnyProducer::abort). Any other call on
//!   the producer (another `reserve`, a `send`) aborts a claim left open first.
//! - [`AnyConsumer::read`] finds the next message and returns its address and length; the
//!   message stays held (not consumed) until [`release`](AnyConsumer::release). Any other
//!   receive on the consumer releases it first, so a read message is never received twice.
//!
//! The bytes at those addresses are shared with the peer's process: read and write them with
//! volatile or atomic accesses (or the copying calls [`AnyProducer::write_at`],
//! [`AnyConsumer::copy_held`]) unless you trust the peer (see "Trusting the peer" in the
//! [crate docs](crate)).
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use shm_core::Region;
//! use shm_ring::any::{AnyConsumer, AnyProducer};
//! use shm_ring::{AttachOptions, RingConfig};
//!
//! let config = RingConfig::mpsc(4096, 2);
//! let region = Arc::new(Region::anonymous(config.region_len())?);
//! let mut tx = AnyProducer::create(region.clone(), &config)?;
//! let mut rx = AnyConsumer::open(region, None, &AttachOptions::new())?; // kind from the header
//! tx.send(b"hello", None)?;
//! let (_ptr, len) = rx.read(Some(Duration::from_secs(1)))?;
//! let mut copy = vec![0; len];
//! rx.copy_held(&mut copy);
//! rx.release();
//! assert_eq!(copy, b"hello");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use shm_core::Region;

use crate::channel::{copy_payload, ClaimOf, ProducerOf};
use crate::config::RingConfig;
use crate::error::{AttachError, InitError, RecvTimeoutError, SendTimeoutError};
use crate::handshake::AttachOptions;
use crate::layout::Kind;
use crate::memory::{Memory, RegionMemory};
use crate::protocol::{Broadcast, ConsumerCore, Core, Mpsc, Next, ProducerCore, RingKind, Spsc};
use crate::{Consumer, Producer};

/// A producer of a ring of any kind, its grant held inside (see the [module docs](self)).
pub struct AnyProducer {
    end: Box<dyn ProducerEnd>,
}

/// A consumer (or broadcast subscriber) of a ring of any kind, its read held inside (see the
/// [module docs](self)).
pub struct AnyConsumer {
    end: Box<dyn ConsumerEnd>,
}

impl fmt::Debug for AnyProducer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.end.debug(f)
    }
}

impl fmt::Debug for AnyConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.end.debug(f)
    }
}

/// The kind `kind`, or (`None`) the one in the header: an attach as SPSC tells it through
/// `WrongKind` after waiting for the creator, as any attach would.
fn attach_any<T>(
    kind: Option<Kind>,
    attach: impl Fn(Kind) -> Result<T, AttachError>,
) -> Result<T, AttachError> {
    match kind {
        Some(kind) => attach(kind),
        None => match attach(Kind::Spsc) {
            Err(AttachError::WrongKind { found, .. }) => match Kind::from_u32(found) {
                Some(kind) => attach(kind),
                None => Err(AttachError::WrongKind { found, expected: Kind::Spsc }),
            },
            r => r,
        },
    }
}

impl AnyProducer {
    /// Initialise a ring of `config`'s kind in `region` and attach as its producer.
    pub fn create(region: impl Into<Arc<Region>>, config: &RingConfig) -> Result<AnyProducer, InitError> {
        let region = region.into();
        Ok(match config.kind() {
            Kind::Spsc => AnyProducer::new(Producer::<Spsc>::create(region, config)?),
            Kind::Mpsc => AnyProducer::new(Producer::<Mpsc>::create(region, config)?),
            Kind::Broadcast => AnyProducer::new(Producer::<Broadcast>::create(region, config)?),
        })
    }

    /// Attach as a producer of the ring in `region`: of kind `kind`, or (`None`) of the kind
    /// its header names.
    pub fn open(
        region: impl Into<Arc<Region>>,
        kind: Option<Kind>,
        options: &AttachOptions,
    ) -> Result<AnyProducer, AttachError> {
        let region = region.into();
        attach_any(kind, |kind| {
            Ok(match kind {
                Kind::Spsc => AnyProducer::new(Producer::<Spsc>::open_with(region.clone(), options)?),
                Kind::Mpsc => AnyProducer::new(Producer::<Mpsc>::open_with(region.clone(), options)?),
                Kind::Broadcast => {
                    AnyProducer::new(Producer::<Broadcast>::open_with(region.clone(), options)?)
                }
            })
        })
    }

    /// Wrap a producer of a known kind.
    pub fn new<K: RingKind>(producer: Producer<K>) -> AnyProducer
    where
        Producer<K>: Send + Sync,
        ClaimOf<K, RegionMemory>: Send + Sync,
    {
        AnyProducer { end: Box::new(HeldProducer { end: producer, claim: None }) }
    }

    /// The ring's kind.
    pub fn kind(&self) -> Kind {
        self.end.kind()
    }

    /// Size of the data area in bytes.
    pub fn capacity(&self) -> usize {
        self.end.capacity()
    }

    /// The largest message this ring takes.
    pub fn max_message(&self) -> usize {
        self.end.max_message()
    }

    /// The region the ring lives in.
    pub fn region(&self) -> &Arc<Region> {
        self.end.region()
    }

    /// Send a copy of `msg`, waiting as `wait` says (see the [module docs](self)).
    pub fn send(&mut self, msg: &[u8], wait: Option<Duration>) -> Result<(), SendTimeoutError<()>> {
        self.end.abort();
        self.end.send(msg, wait)
    }

    /// Claim room for a message of `len` bytes and return its address (`len` bytes, holding
    /// old ring contents), waiting as `wait` says. The claim is held until
    /// [`commit`](Self::commit) or [`abort`](Self::abort); an open one is aborted first.
    pub fn reserve(&mut self, len: usize, wait: Option<Duration>) -> Result<*mut u8, SendTimeoutError<()>> {
        self.end.abort();
        self.end.reserve(len, wait)
    }

    /// The length of the claim held, if any.
    pub fn reserved(&self) -> Option<usize> {
        self.end.reserved()
    }

    /// Copy `src` into the claim held at `offset` (atomic word stores). Returns false, writing
    /// nothing, when no claim is held or the range is beyond it.
    pub fn write_at(&mut self, offset: usize, src: &[u8]) -> bool {
        self.end.write_at(offset, src)
    }

    /// Publish the claim held (its whole length) as the message. Returns whether one was held.
    pub fn commit(&mut self) -> bool {
        self.end.commit()
    }

    /// Give the claim held up (nothing is delivered). Returns whether one was held.
    pub fn abort(&mut self) -> bool {
        self.end.abort()
    }
}

impl AnyConsumer {
    /// Initialise a ring of `config`'s kind in `region` and attach as its consumer (on a
    /// broadcast ring: its first subscriber).
    pub fn create(region: impl Into<Arc<Region>>, config: &RingConfig) -> Result<AnyConsumer, InitError> {
        let region = region.into();
        Ok(match config.kind() {
            Kind::Spsc => AnyConsumer::new(Consumer::<Spsc>::create(region, config)?),
            Kind::Mpsc => AnyConsumer::new(Consumer::<Mpsc>::create(region, config)?),
            Kind::Broadcast => AnyConsumer::new(Consumer::<Broadcast>::create(region, config)?),
        })
    }

    /// Attach as the consumer (a subscriber, on a broadcast ring) of the ring in `region`: of
    /// kind `kind`, or (`None`) of the kind its header names.
    pub fn open(
        region: impl Into<Arc<Region>>,
        kind: Option<Kind>,
        options: &AttachOptions,
    ) -> Result<AnyConsumer, AttachError> {
        let region = region.into();
        attach_any(kind, |kind| {
            Ok(match kind {
                Kind::Spsc => AnyConsumer::new(Consumer::<Spsc>::open_with(region.clone(), options)?),
                Kind::Mpsc => AnyConsumer::new(Consumer::<Mpsc>::open_with(region.clone(), options)?),
                Kind::Broadcast => {
                    AnyConsumer::new(Consumer::<Broadcast>::open_with(region.clone(), options)?)
                }
            })
        })
    }

    /// Wrap a consumer of a known kind.
    pub fn new<K: RingKind>(consumer: Consumer<K>) -> AnyConsumer
    where
        Consumer<K>: Send + Sync,
    {
        AnyConsumer { end: Box::new(HeldConsumer { end: consumer, held: None }) }
    }

    /// The ring's kind.
    pub fn kind(&self) -> Kind {
        self.end.kind()
    }

    /// Size of the data area in bytes.
    pub fn capacity(&self) -> usize {
        self.end.capacity()
    }

    /// The largest message this ring takes.
    pub fn max_message(&self) -> usize {
        self.end.max_message()
    }

    /// The region the ring lives in.
    pub fn region(&self) -> &Arc<Region> {
        self.end.region()
    }

    /// This end's position in the ring's byte stream. It only grows: while a message is held
    /// ([`read`](Self::read)) it is that message's start, and consuming it moves it to the
    /// message's end (or past it). A consumer that reopens a file-backed ring starts at or before
    /// the first message not yet handed back, and a message delivered again is at the same
    /// position as the first time; so a position below one recorded after consuming a message
    /// marks a message consumed before (`shm-bridge` relies on it to send nothing twice).
    pub fn position(&self) -> u64 {
        self.end.position()
    }

    /// A number that names this ring among others: drawn at random when the ring was created,
    /// so a ring created again at the same path has another (derived from the ring's free-word
    /// key).
    pub fn ring_id(&self) -> u64 {
        self.end.ring_id()
    }

    /// Receive a copy of the next message into `buf` (cleared first), waiting as `wait` says.
    pub fn recv(&mut self, buf: &mut Vec<u8>, wait: Option<Duration>) -> Result<usize, RecvTimeoutError> {
        let n = self.next(wait)?;
        buf.clear();
        buf.resize(n.len, 0);
        self.end.copy(n, buf);
        self.end.consume(n);
        Ok(n.len)
    }

    /// Receive the next message into `buf`, waiting as `wait` says. A message longer than
    /// `buf` stays in the ring (`BufferTooSmall` says how long it is).
    pub fn recv_into(&mut self, buf: &mut [u8], wait: Option<Duration>) -> Result<usize, RecvTimeoutError> {
        let n = self.next(wait)?;
        if n.len > buf.len() {
            self.end.flush();
            return Err(RecvTimeoutError::BufferTooSmall { need: n.len, have: buf.len() });
        }
        self.end.copy(n, &mut buf[..n.len]);
        self.end.consume(n);
        Ok(n.len)
    }

    /// Find the next message, waiting as `wait` says, and hold it: its address and length
    /// stay valid until [`release`](Self::release) or the next receive (which releases it).
    pub fn read(&mut self, wait: Option<Duration>) -> Result<(*const u8, usize), RecvTimeoutError> {
        let n = self.next(wait)?;
        self.end.hold(n);
        Ok((self.end.address(n), n.len))
    }

    /// The length of the message held, if any.
    pub fn held(&self) -> Option<usize> {
        self.end.held().map(|n| n.len)
    }

    /// The address of the message held, if any (as [`read`](Self::read) returned it).
    pub fn held_ptr(&self) -> Option<*const u8> {
        self.end.held().map(|n| self.end.address(n))
    }

    /// Copy the start of the message held into `dst` (atomic word loads), at most
    /// `dst.len()` bytes; returns how many (0 when none is held).
    pub fn copy_held(&self, dst: &mut [u8]) -> usize {
        match self.end.held() {
            Some(n) => {
                let len = n.len.min(dst.len());
                self.end.copy(n, &mut dst[..len]);
                len
            }
            None => 0,
        }
    }

    /// Stop holding the message held, without consuming it: the next receive returns it again.
    /// Returns whether one was held.
    pub fn unread(&mut self) -> bool {
        let held = self.end.take_held().is_some();
        if held {
            self.end.flush();
        }
        held
    }

    /// Consume the message held. Returns whether one was held.
    pub fn release(&mut self) -> bool {
        match self.end.take_held() {
            Some(n) => {
                self.end.consume(n);
                true
            }
            None => false,
        }
    }

    fn next(&mut self, wait: Option<Duration>) -> Result<Next, RecvTimeoutError> {
        self.release();
        self.end.next(wait)
    }
}

// ---------------------------------------------------------------------------------------------
// The erased ends: one generic implementation each.
// ---------------------------------------------------------------------------------------------

trait ProducerEnd: Send + Sync {
    fn debug(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result;
    fn kind(&self) -> Kind;
    fn capacity(&self) -> usize;
    fn max_message(&self) -> usize;
    fn region(&self) -> &Arc<Region>;
    fn send(&mut self, msg: &[u8], wait: Option<Duration>) -> Result<(), SendTimeoutError<()>>;
    fn reserve(&mut self, len: usize, wait: Option<Duration>) -> Result<*mut u8, SendTimeoutError<()>>;
    fn reserved(&self) -> Option<usize>;
    fn write_at(&mut self, offset: usize, src: &[u8]) -> bool;
    fn commit(&mut self) -> bool;
    fn abort(&mut self) -> bool;
}

trait ConsumerEnd: Send + Sync {
    fn debug(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result;
    fn kind(&self) -> Kind;
    fn capacity(&self) -> usize;
    fn max_message(&self) -> usize;
    fn region(&self) -> &Arc<Region>;
    fn next(&mut self, wait: Option<Duration>) -> Result<Next, RecvTimeoutError>;
    fn position(&self) -> u64;
    fn ring_id(&self) -> u64;
    fn copy(&self, n: Next, dst: &mut [u8]);
    fn address(&self, n: Next) -> *const u8;
    fn consume(&mut self, n: Next);
    fn flush(&mut self);
    fn hold(&mut self, n: Next);
    fn held(&self) -> Option<Next>;
    fn take_held(&mut self) -> Option<Next>;
}

struct HeldProducer<K: RingKind> {
    end: Producer<K>,
    /// The open claim and its length.
    claim: Option<(ClaimOf<K, RegionMemory>, usize)>,
}

struct HeldConsumer<K: RingKind> {
    end: Consumer<K>,
    /// The message found by `read`, not consumed yet.
    held: Option<Next>,
}

impl<K: RingKind> ProducerEnd for HeldProducer<K>
where
    Producer<K>: Send + Sync,
    ClaimOf<K, RegionMemory>: Send + Sync,
{
    fn debug(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnyProducer")
            .field("end", &self.end)
            .field("reserved", &self.claim.map(|(_, len)| len))
            .finish()
    }

    fn kind(&self) -> Kind {
        K::KIND
    }

    fn capacity(&self) -> usize {
        self.end.capacity()
    }

    fn max_message(&self) -> usize {
        self.end.max_message()
    }

    fn region(&self) -> &Arc<Region> {
        self.end.region()
    }

    fn send(&mut self, msg: &[u8], wait: Option<Duration>) -> Result<(), SendTimeoutError<()>> {
        let claim = self.end.claim(msg.len(), wait)?;
        self.end.fill_and_commit(claim, msg);
        Ok(())
    }

    fn reserve(&mut self, len: usize, wait: Option<Duration>) -> Result<*mut u8, SendTimeoutError<()>> {
        let claim = self.end.claim(len, wait)?;
        self.claim = Some((claim, len));
        Ok(self.end.core.mem().payload(ProducerOf::<K, RegionMemory>::payload_index(&claim)))
    }

    fn reserved(&self) -> Option<usize> {
        self.claim.map(|(_, len)| len)
    }

    fn write_at(&mut self, offset: usize, src: &[u8]) -> bool {
        let Some((claim, len)) = self.claim else { return false };
        match offset.checked_add(src.len()) {
            Some(end) if end <= len => {
                let idx = ProducerOf::<K, RegionMemory>::payload_index(&claim);
                self.end.core.mem().copy_in(idx, offset, src);
                true
            }
            _ => false,
        }
    }

    fn commit(&mut self) -> bool {
        match self.claim.take() {
            Some((claim, len)) => {
                self.end.core.commit(claim, len);
                true
            }
            None => false,
        }
    }

    fn abort(&mut self) -> bool {
        match self.claim.take() {
            Some((claim, _)) => {
                self.end.core.abort(claim);
                true
            }
            None => false,
        }
    }
}

impl<K: RingKind> Drop for HeldProducer<K> {
    fn drop(&mut self) {
        if let Some((claim, _)) = self.claim.take() {
            self.end.core.abort(claim);
        }
    }
}

impl<K: RingKind> ConsumerEnd for HeldConsumer<K>
where
    Consumer<K>: Send + Sync,
{
    fn debug(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnyConsumer")
            .field("end", &self.end)
            .field("held", &self.held.map(|n| n.len))
            .finish()
    }

    fn kind(&self) -> Kind {
        K::KIND
    }

    fn capacity(&self) -> usize {
        self.end.capacity()
    }

    fn max_message(&self) -> usize {
        self.end.max_message()
    }

    fn region(&self) -> &Arc<Region> {
        self.end.region()
    }

    fn next(&mut self, wait: Option<Duration>) -> Result<Next, RecvTimeoutError> {
        self.end.next(wait)
    }

    fn position(&self) -> u64 {
        self.end.core.position()
    }

    fn ring_id(&self) -> u64 {
        // splitmix64's finaliser: a bijection, so distinct keys give distinct ids.
        let mut z = self.end.core.geometry().free_key.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn copy(&self, n: Next, dst: &mut [u8]) {
        copy_payload(&self.end.core, n, 0, dst);
    }

    fn address(&self, n: Next) -> *const u8 {
        match self.end.core.staged(n) {
            Some(staged) => staged.as_ptr(),
            None => self.end.core.mem().payload(n.idx),
        }
    }

    fn consume(&mut self, n: Next) {
        self.end.core.consume(n);
    }

    fn flush(&mut self) {
        self.end.core.flush();
    }

    fn hold(&mut self, n: Next) {
        self.held = Some(n);
    }

    fn held(&self) -> Option<Next> {
        self.held
    }

    fn take_held(&mut self) -> Option<Next> {
        self.held.take()
    }
}

impl<K: RingKind> Drop for HeldConsumer<K> {
    fn drop(&mut self) {
        // A message read and not released was delivered: consume it, as a dropped guard does.
        if let Some(n) = self.held.take() {
            self.end.core.consume(n);
        }
    }
}

// The bindings move ends between threads (Python releases the GIL around a wait).
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<AnyProducer>();
    send_sync::<AnyConsumer>();
};
