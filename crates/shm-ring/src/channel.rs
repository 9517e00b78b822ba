//! The ends of a ring, for every kind: [`Producer`] and [`Consumer`] (with [`Grant`] and
//! [`ReadGuard`]) hold every public call once, named as std's channels name them, over the
//! protocol core of the kind ([`crate::protocol`]).
//!
//! | | returns at once | waits at most a duration | waits as long as it takes |
//! |---|---|---|---|
//! | send a copy | [`try_send`](Producer::try_send) | [`send_timeout`](Producer::send_timeout) | [`send`](Producer::send) |
//! | send a value's bytes | [`try_send_pod`](Producer::try_send_pod) | [`send_pod_timeout`](Producer::send_pod_timeout) | [`send_pod`](Producer::send_pod) |
//! | write in place | [`try_reserve`](Producer::try_reserve) | [`reserve_timeout`](Producer::reserve_timeout) | [`reserve`](Producer::reserve) |
//! | receive a copy | [`try_recv`](Consumer::try_recv) | [`recv_timeout`](Consumer::recv_timeout) | [`recv`](Consumer::recv) |
//! | receive into a slice | [`try_recv_into`](Consumer::try_recv_into) | [`recv_into_timeout`](Consumer::recv_into_timeout) | [`recv_into`](Consumer::recv_into) |
//! | receive a value | [`try_recv_pod`](Consumer::try_recv_pod) | [`recv_pod_timeout`](Consumer::recv_pod_timeout) | [`recv_pod`](Consumer::recv_pod) |
//! | read in place (a guard) | [`try_read`](Consumer::try_read) | [`read_timeout`](Consumer::read_timeout) | [`read`](Consumer::read) |
//! | iterate | [`try_iter`](Consumer::try_iter) | | [`iter`](Consumer::iter) |
//!
//! Each form has its own error type ([`TrySendError`], [`SendTimeoutError`], [`SendError`],
//! [`TryRecvError`], [`RecvTimeoutError`], [`RecvError`]); a message that was not sent is
//! handed back in the error.

use std::fmt;
use std::time::{Duration, Instant};

use crate::error::{
    RecvError, RecvFail, RecvStop, RecvTimeoutError, SendError, SendFail, SendStop, SendTimeoutError,
    TryRecvError, TrySendError,
};
use crate::memory::{DefaultMemory, Memory};
use crate::protocol::{ConsumerCore, Core, Next, ProducerCore, RingKind};
use crate::wait::{self, Step, Waited};

pub(crate) type ProducerOf<K, M> = <K as RingKind>::Producer<M>;
pub(crate) type ConsumerOf<K, M> = <K as RingKind>::Consumer<M>;
pub(crate) type ClaimOf<K, M> = <ProducerOf<K, M> as ProducerCore<M>>::Claim;

/// The sending end of a ring of kind `K` ([`spsc::Producer`](crate::spsc::Producer),
/// [`mpsc::Producer`](crate::mpsc::Producer)). See the [crate docs](crate) for an example.
pub struct Producer<K: RingKind, M: Memory = DefaultMemory> {
    pub(crate) core: ProducerOf<K, M>,
    /// How long the next wait for room spins.
    pub(crate) spin: wait::Spin,
}

/// The receiving end of a ring of kind `K` ([`spsc::Consumer`](crate::spsc::Consumer),
/// [`mpsc::Consumer`](crate::mpsc::Consumer)).
pub struct Consumer<K: RingKind, M: Memory = DefaultMemory> {
    pub(crate) core: ConsumerOf<K, M>,
    /// How long the next wait for a message spins.
    pub(crate) spin: wait::Spin,
}

impl<K: RingKind, M: Memory> fmt::Debug for Producer<K, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.core.fmt(f)
    }
}

impl<K: RingKind, M: Memory> fmt::Debug for Consumer<K, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.core.fmt(f)
    }
}

/// Whether a blocking call's attempt is done: a claim or a message, or a final error.
pub(crate) fn claimed<C>(r: Result<C, SendFail>) -> Step<C, SendStop> {
    match r {
        Ok(c) => Step::Done(Ok(c)),
        Err(SendFail::Full) => Step::Pending,
        Err(SendFail::Stop(s)) => Step::Done(Err(s)),
    }
}

impl<K: RingKind, M: Memory> Producer<K, M> {
    /// Attach as a producer to initialised memory whose geometry was validated.
    pub(crate) fn attach_mem(mem: M, geo: crate::config::Geometry) -> Result<Self, crate::AttachError> {
        Ok(Producer { core: ProducerOf::<K, M>::attach(mem, geo)?, spin: wait::Spin::default() })
    }

    /// Data bytes of the ring.
    pub fn capacity(&self) -> usize {
        self.core.geometry().capacity as usize
    }

    /// The largest payload this ring carries.
    pub fn max_message(&self) -> usize {
        self.core.geometry().max_message
    }

    /// Bytes in flight (sent or claimed, not yet handed back by the consumer), as far as this
    /// end knows.
    pub fn len_bytes(&self) -> usize {
        self.core.len_bytes()
    }

    /// Whether everything sent has been handed back.
    pub fn is_empty(&self) -> bool {
        self.len_bytes() == 0
    }

    /// Claim room for `len` bytes now (the core refuses a `len` beyond the max message size).
    #[inline(always)]
    fn try_claim(&mut self, len: usize) -> Result<ClaimOf<K, M>, SendFail> {
        self.core.try_claim(len)
    }

    /// Claim room for `len` bytes, waiting until `deadline` (`None`: forever).
    #[inline(always)]
    fn claim_until(
        &mut self,
        len: usize,
        deadline: Option<Instant>,
    ) -> Result<ClaimOf<K, M>, Waited<SendStop>> {
        match self.claim_first(len) {
            Ok(Some(c)) => Ok(c),
            Ok(None) => self.claim_wait(len, deadline),
            Err(stop) => Err(Waited::Failed(stop)),
        }
    }

    /// The first try of a blocking claim, with no wait to set up: the common case, room now
    /// (`None`: none; a `len` beyond the max message size ends here too, with `TooLarge`).
    /// Not under loom, where it is always `None`: the wait's first attempt is the same, and a
    /// second one only multiplies the interleavings.
    #[inline(always)]
    fn claim_first(&mut self, len: usize) -> Result<Option<ClaimOf<K, M>>, SendStop> {
        if cfg!(loom) {
            return Ok(None);
        }
        match self.core.try_claim(len) {
            Ok(c) => Ok(Some(c)),
            Err(SendFail::Stop(s)) => Err(s),
            Err(SendFail::Full) => Ok(None),
        }
    }

    /// [`claim_until`](Producer::claim_until) past its first try: the wait (out of line, so
    /// that the common case stays small where it is inlined).
    #[inline(never)]
    fn claim_wait(
        &mut self,
        len: usize,
        deadline: Option<Instant>,
    ) -> Result<ClaimOf<K, M>, Waited<SendStop>> {
        wait::block_on(
            &mut self.core,
            &mut self.spin,
            ProducerOf::<K, M>::mem,
            |h| &h.space_ready,
            deadline,
            |core| claimed(core.try_claim(len)),
            |core, check_alive| core.consumer_gone(check_alive),
        )
    }

    /// Claim room for `len` bytes, waiting as long as it takes. (The first try is made here
    /// rather than through [`claim_until`](Producer::claim_until), whose result carries the
    /// timeout case too: returning it costs the common case of blocking sends tens of
    /// instructions.)
    #[inline(always)]
    fn claim_forever(&mut self, len: usize) -> Result<ClaimOf<K, M>, SendStop> {
        if let Some(c) = self.claim_first(len)? {
            return Ok(c);
        }
        loop {
            match self.claim_wait(len, None) {
                Ok(c) => return Ok(c),
                Err(Waited::Failed(stop)) => return Err(stop),
                Err(Waited::TimedOut) => {} // no deadline: wait on
            }
        }
    }

    /// Claim room for `len` bytes: now (`Some(ZERO)`), within a timeout, or (`None`) waiting as
    /// long as it takes; "not now" is `Timeout` in every form.
    #[cfg(not(loom))]
    pub(crate) fn claim(
        &mut self,
        len: usize,
        wait: Option<Duration>,
    ) -> Result<ClaimOf<K, M>, SendTimeoutError<()>> {
        match wait {
            Some(Duration::ZERO) => self.try_claim(len).map_err(|fail| match fail {
                SendFail::Full => SendTimeoutError::new(None, ()),
                SendFail::Stop(stop) => SendTimeoutError::new(Some(stop), ()),
            }),
            Some(timeout) => self.claim_until(len, wait::deadline(timeout)).map_err(|w| match w {
                Waited::Failed(stop) => SendTimeoutError::new(Some(stop), ()),
                Waited::TimedOut => SendTimeoutError::new(None, ()),
            }),
            None => self.claim_forever(len).map_err(|stop| SendTimeoutError::new(Some(stop), ())),
        }
    }

    /// Copy `bytes` into the claimed record and publish it.
    #[inline(always)]
    pub(crate) fn fill_and_commit(&mut self, claim: ClaimOf<K, M>, bytes: &[u8]) {
        // The claim covers `bytes.len()` payload bytes inside the data area that nobody else
        // writes, and the consumer does not read them before the commit.
        self.core.mem().copy_in(ProducerOf::<K, M>::payload_index(&claim), 0, bytes);
        self.core.commit(claim, bytes.len());
    }

    /// Send a copy of `msg` if there is room now. On failure the message is handed back.
    #[inline]
    pub fn try_send<T: AsRef<[u8]>>(&mut self, msg: T) -> Result<(), TrySendError<T>> {
        match self.try_claim(msg.as_ref().len()) {
            Ok(claim) => {
                self.fill_and_commit(claim, msg.as_ref());
                Ok(())
            }
            Err(fail) => Err(TrySendError::new(fail, msg)),
        }
    }

    /// Send a copy of `msg`, waiting at most `timeout` for room.
    pub fn send_timeout<T: AsRef<[u8]>>(
        &mut self,
        msg: T,
        timeout: Duration,
    ) -> Result<(), SendTimeoutError<T>> {
        match self.claim_until(msg.as_ref().len(), wait::deadline(timeout)) {
            Ok(claim) => {
                self.fill_and_commit(claim, msg.as_ref());
                Ok(())
            }
            Err(Waited::Failed(stop)) => Err(SendTimeoutError::new(Some(stop), msg)),
            Err(Waited::TimedOut) => Err(SendTimeoutError::new(None, msg)),
        }
    }

    /// Send a copy of `msg`, waiting as long as it takes for room (spinning briefly, then
    /// sleeping on a futex). Fails only when the consumer is closed or dead, the message is too
    /// large, or memory is corrupt; the message is handed back in the error.
    #[inline]
    pub fn send<T: AsRef<[u8]>>(&mut self, msg: T) -> Result<(), SendError<T>> {
        match self.claim_forever(msg.as_ref().len()) {
            Ok(claim) => {
                self.fill_and_commit(claim, msg.as_ref());
                Ok(())
            }
            Err(stop) => Err(SendError::new(stop, msg)),
        }
    }

    /// Send a plain-old-data value as its bytes, if there is room now.
    pub fn try_send_pod<T: bytemuck::Pod>(&mut self, value: T) -> Result<(), TrySendError<T>> {
        self.try_send(bytemuck::bytes_of(&value)).map_err(|e| e.map(|_| value))
    }

    /// Send a plain-old-data value, waiting at most `timeout` for room.
    pub fn send_pod_timeout<T: bytemuck::Pod>(
        &mut self,
        value: T,
        timeout: Duration,
    ) -> Result<(), SendTimeoutError<T>> {
        self.send_timeout(bytemuck::bytes_of(&value), timeout).map_err(|e| e.map(|_| value))
    }

    /// Send a plain-old-data value, waiting as long as it takes for room.
    pub fn send_pod<T: bytemuck::Pod>(&mut self, value: T) -> Result<(), SendError<T>> {
        self.send(bytemuck::bytes_of(&value)).map_err(|e| e.map(|_| value))
    }

    /// Reserve `len` bytes in the ring to write a message in place, if there is room now.
    /// Write them with [`Grant::write_at`] / [`Grant::copy_from_slice`] (or, trusting the
    /// consumer, [`Grant::as_mut_slice_unchecked`]); [`Grant::commit`] publishes the message,
    /// dropping the grant delivers nothing.
    #[inline(always)]
    pub fn try_reserve(&mut self, len: usize) -> Result<Grant<'_, K, M>, TrySendError<()>> {
        match self.try_claim(len) {
            Ok(claim) => Ok(Grant::new(self, claim, len)),
            Err(fail) => Err(TrySendError::new(fail, ())),
        }
    }

    /// [`try_reserve`](Producer::try_reserve), waiting at most `timeout` for room.
    pub fn reserve_timeout(
        &mut self,
        len: usize,
        timeout: Duration,
    ) -> Result<Grant<'_, K, M>, SendTimeoutError<()>> {
        match self.claim_until(len, wait::deadline(timeout)) {
            Ok(claim) => Ok(Grant::new(self, claim, len)),
            Err(Waited::Failed(stop)) => Err(SendTimeoutError::new(Some(stop), ())),
            Err(Waited::TimedOut) => Err(SendTimeoutError::new(None, ())),
        }
    }

    /// [`try_reserve`](Producer::try_reserve), waiting as long as it takes for room.
    #[inline]
    pub fn reserve(&mut self, len: usize) -> Result<Grant<'_, K, M>, SendError<()>> {
        match self.claim_forever(len) {
            Ok(claim) => Ok(Grant::new(self, claim, len)),
            Err(stop) => Err(SendError::new(stop, ())),
        }
    }

    /// Close this end now (as dropping it does): the consumer drains what was sent, then gets
    /// `Disconnected`.
    pub fn close(self) {}
}

/// Space reserved in the ring for one message, written in place with
/// [`write_at`](Grant::write_at) / [`copy_from_slice`](Grant::copy_from_slice) (atomic word
/// stores, sound whatever the consumer's process does), or as a `&mut [u8]` through
/// [`as_mut_slice_unchecked`](Grant::as_mut_slice_unchecked) for a trusted consumer.
/// [`commit`](Grant::commit) publishes it; dropping it delivers nothing.
pub struct Grant<'a, K: RingKind, M: Memory = DefaultMemory> {
    pub(crate) producer: &'a mut Producer<K, M>,
    /// `None` once committed.
    pub(crate) claim: Option<ClaimOf<K, M>>,
    pub(crate) len: usize,
}

impl<K: RingKind, M: Memory> fmt::Debug for Grant<'_, K, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grant").field("len", &self.len).finish()
    }
}

impl<'a, K: RingKind, M: Memory> Grant<'a, K, M> {
    #[inline]
    pub(crate) fn new(producer: &'a mut Producer<K, M>, claim: ClaimOf<K, M>, len: usize) -> Self {
        producer.core.mem().track_write(ProducerOf::<K, M>::payload_index(&claim), len);
        Grant { producer, claim: Some(claim), len }
    }

    /// The memory and the payload's record index: the claim covers `len` payload bytes inside
    /// the data area, ours until the commit.
    #[inline]
    fn place(&self) -> (&M, usize) {
        let idx = self.claim.as_ref().map_or(0, |c| ProducerOf::<K, M>::payload_index(c));
        (self.producer.core.mem(), idx)
    }

    /// The reserved length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the reserved length is 0.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copy `src` into the reserved bytes at `offset` (atomic word stores: sound whatever the
    /// consumer's process does meanwhile).
    ///
    /// # Panics
    /// If `offset + src.len()` is beyond the reserved length.
    pub fn write_at(&mut self, offset: usize, src: &[u8]) {
        let len = self.len;
        let (mem, idx) = self.place();
        match offset.checked_add(src.len()) {
            Some(end) if end <= len => mem.copy_in(idx, offset, src),
            _ => {
                panic!("Grant::write_at: {} bytes at offset {offset} is beyond the {len} reserved", src.len())
            }
        }
    }

    /// Copy `src` into the reserved bytes, which it must fill exactly (as
    /// `<[u8]>::copy_from_slice`).
    ///
    /// # Panics
    /// If `src.len()` differs from the reserved length.
    pub fn copy_from_slice(&mut self, src: &[u8]) {
        assert_eq!(src.len(), self.len, "Grant::copy_from_slice: source and grant lengths differ");
        self.write_at(0, src);
    }

    /// The reserved bytes' address in the ring (`len()` bytes, valid while the grant lives).
    /// Access it only with atomic or volatile accesses unless you trust the consumer.
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        let (mem, idx) = self.place();
        mem.payload(idx)
    }

    /// The reserved bytes in place, with no copy: for a consumer you trust. They hold whatever
    /// the ring held there before (old messages), not zeros.
    ///
    /// # Safety
    /// No other process or thread may read or write these bytes while the returned slice
    /// lives. The ring protocol guarantees this for peers that follow it (the consumer does not
    /// read a record before it is committed; no other producer writes claimed space), so the
    /// promise is that every process able to map the ring runs this library (or a conforming
    /// implementation of the [`layout`](crate::layout)) and is neither buggy nor hostile. See
    /// "Trusting the peer" in the [crate docs](crate).
    #[inline]
    pub unsafe fn as_mut_slice_unchecked(&mut self) -> &mut [u8] {
        let len = self.len;
        let (mem, idx) = self.place();
        mem.track_write(idx, len);
        // SAFETY: the claim covers `len` payload bytes at `idx` inside the data area,
        // `&mut self` keeps every other call of this producer out, and the caller promises no
        // other process or thread touches them.
        unsafe { std::slice::from_raw_parts_mut(mem.payload(idx), len) }
    }

    /// Publish the message (the whole reserved length).
    #[inline(always)]
    pub fn commit(mut self) {
        if let Some(claim) = self.claim.take() {
            self.producer.core.commit(claim, self.len);
        }
    }
}

impl<K: RingKind, M: Memory> Drop for Grant<'_, K, M> {
    #[inline]
    fn drop(&mut self) {
        if let Some(claim) = self.claim.take() {
            self.producer.core.abort(claim);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Consumer
// ---------------------------------------------------------------------------------------------

impl<K: RingKind, M: Memory> Consumer<K, M> {
    /// Attach as the consumer to initialised memory whose geometry was validated.
    pub(crate) fn attach_mem(mem: M, geo: crate::config::Geometry) -> Result<Self, crate::AttachError> {
        Ok(Consumer { core: ConsumerOf::<K, M>::attach(mem, geo)?, spin: wait::Spin::default() })
    }

    /// [`attach_mem`](Consumer::attach_mem) with the opener's options.
    pub(crate) fn attach_mem_with(
        mem: M,
        geo: crate::config::Geometry,
        options: &crate::AttachOptions,
    ) -> Result<Self, crate::AttachError> {
        Ok(Consumer {
            core: ConsumerOf::<K, M>::attach_with(mem, geo, options)?,
            spin: wait::Spin::default(),
        })
    }

    /// Data bytes of the ring.
    pub fn capacity(&self) -> usize {
        self.core.geometry().capacity as usize
    }

    /// The largest payload this ring carries.
    pub fn max_message(&self) -> usize {
        self.core.geometry().max_message
    }

    /// Bytes waiting to be consumed or still being written (records, their headers and
    /// padding).
    pub fn len_bytes(&self) -> usize {
        self.core.len_bytes()
    }

    /// Whether nothing waits to be consumed.
    pub fn is_empty(&self) -> bool {
        self.len_bytes() == 0
    }

    /// The next message, waiting until `deadline` (`None`: forever).
    #[inline(always)]
    fn next_until(&mut self, deadline: Option<Instant>) -> Result<Next, Waited<RecvStop>> {
        match self.next_first() {
            Some(n) => Ok(n),
            None => self.next_wait(deadline),
        }
    }

    /// The first look of a blocking receive, with no wait to set up: the common case, a
    /// message there now. (Anything else, an error included, is looked at again by the wait's
    /// first attempt.) Not under loom, as [`Producer::claim_first`].
    #[inline(always)]
    fn next_first(&mut self) -> Option<Next> {
        if cfg!(loom) {
            return None;
        }
        self.core.next_in_batch()
    }

    /// [`next_until`](Consumer::next_until) past its first try: the wait (out of line, as
    /// [`claim_wait`](Producer::claim_wait)).
    #[inline(never)]
    fn next_wait(&mut self, deadline: Option<Instant>) -> Result<Next, Waited<RecvStop>> {
        let r = wait::block_on(
            &mut self.core,
            &mut self.spin,
            ConsumerOf::<K, M>::mem,
            |h| &h.data_ready,
            deadline,
            |core| match core.wait_step(deadline) {
                Ok(Some(n)) => Step::Done(Ok(n)),
                Ok(None) => Step::Pending,
                Err(e) => Step::Done(Err(e)),
            },
            |core, check_alive| core.producers_gone(check_alive),
        );
        // Out of time in the middle of a walk (records skipped, more to look at): the messages
        // left come before any "gone", so this is a timeout, whatever the producers did.
        let r = match r {
            Err(Waited::Failed(RecvStop::Disconnected | RecvStop::PeerDead { .. }))
                if self.core.walk_unfinished() =>
            {
                Err(Waited::TimedOut)
            }
            r => r,
        };
        self.core.wait_done();
        r
    }

    /// The next message, waiting as long as it takes (the first try made here, as in
    /// [`Producer::claim_forever`]).
    #[inline(always)]
    fn next_blocking(&mut self) -> Result<Next, RecvError> {
        if let Some(n) = self.next_first() {
            return Ok(n);
        }
        loop {
            match self.next_wait(None) {
                Ok(n) => return Ok(n),
                Err(Waited::Failed(stop)) => return Err(stop.into()),
                Err(Waited::TimedOut) => {} // no deadline: wait on
            }
        }
    }

    fn next_timeout(&mut self, timeout: Duration) -> Result<Next, RecvTimeoutError> {
        self.next_until(wait::deadline(timeout)).map_err(|w| match w {
            Waited::Failed(stop) => stop.into(),
            Waited::TimedOut => RecvTimeoutError::Timeout,
        })
    }

    /// The next message: now (`Some(ZERO)`), within a timeout, or (`None`) waiting as long as
    /// it takes; "not now" is `Timeout` in every form.
    #[cfg(not(loom))]
    pub(crate) fn next(&mut self, wait: Option<Duration>) -> Result<Next, RecvTimeoutError> {
        match wait {
            Some(Duration::ZERO) => self.core.try_next().map_err(|fail| match fail {
                RecvFail::Empty => RecvTimeoutError::Timeout,
                RecvFail::Stop(stop) => stop.into(),
            }),
            Some(timeout) => self.next_timeout(timeout),
            None => loop {
                match self.next_wait(None) {
                    Ok(n) => break Ok(n),
                    Err(Waited::Failed(stop)) => break Err(stop.into()),
                    Err(Waited::TimedOut) => {} // no deadline: wait on
                }
            },
        }
    }

    #[inline(always)]
    fn next_now(&mut self) -> Result<Next, TryRecvError> {
        self.core.try_next().map_err(TryRecvError::new)
    }

    /// Copy the payload of `n` into `buf` (cleared first), then consume the record.
    #[inline(always)]
    pub(crate) fn take_vec(&mut self, n: Next, buf: &mut Vec<u8>) -> usize {
        buf.clear();
        if let Some(staged) = self.core.staged(n) {
            buf.extend_from_slice(staged);
        } else {
            buf.reserve(n.len);
            self.core.mem().copy_out_uninit(n.idx, &mut buf.spare_capacity_mut()[..n.len]);
            // SAFETY: copy_out_uninit initialised the first n.len bytes of the spare capacity.
            unsafe { buf.set_len(n.len) };
        }
        self.core.consume(n);
        n.len
    }

    /// Copy the payload of `n` into `buf`, which must be large enough (otherwise the message
    /// stays in the ring), then consume the record.
    pub(crate) fn take_slice(&mut self, n: Next, buf: &mut [u8]) -> Result<usize, RecvError> {
        if n.len > buf.len() {
            // The message stays; what was consumed before it goes back (and a producer asleep
            // for room is looked for), as a consumer stuck here receives nothing.
            self.core.flush();
            return Err(RecvError::BufferTooSmall { need: n.len, have: buf.len() });
        }
        copy_payload(&self.core, n, 0, &mut buf[..n.len]);
        self.core.consume(n);
        Ok(n.len)
    }

    /// The payload of `n` as a `T`, if its size is `T`'s (otherwise it stays in the ring).
    fn take_pod<T: bytemuck::Pod>(&mut self, n: Next) -> Result<T, RecvError> {
        let expected = std::mem::size_of::<T>();
        if n.len != expected {
            self.core.flush(); // as in `take_slice`
            return Err(RecvError::SizeMismatch { found: n.len, expected });
        }
        let mut v: T = bytemuck::Zeroable::zeroed();
        copy_payload(&self.core, n, 0, bytemuck::bytes_of_mut(&mut v));
        self.core.consume(n);
        Ok(v)
    }

    /// Receive a copy of the next message into `buf` (cleared first) if one is there now.
    /// Returns its length.
    #[inline]
    pub fn try_recv(&mut self, buf: &mut Vec<u8>) -> Result<usize, TryRecvError> {
        let n = self.next_now()?;
        Ok(self.take_vec(n, buf))
    }

    /// Receive a copy of the next message into `buf`, waiting at most `timeout`.
    pub fn recv_timeout(&mut self, buf: &mut Vec<u8>, timeout: Duration) -> Result<usize, RecvTimeoutError> {
        let n = self.next_timeout(timeout)?;
        Ok(self.take_vec(n, buf))
    }

    /// Receive a copy of the next message into `buf`, waiting as long as it takes. Fails when
    /// the producers are closed or dead and everything they sent has been received, or on
    /// corrupt memory.
    #[inline]
    pub fn recv(&mut self, buf: &mut Vec<u8>) -> Result<usize, RecvError> {
        let n = self.next_blocking()?;
        Ok(self.take_vec(n, buf))
    }

    /// Receive the next message into `buf` if one is there now; `buf` must be large enough
    /// (otherwise `BufferTooSmall`, and the message stays in the ring).
    pub fn try_recv_into(&mut self, buf: &mut [u8]) -> Result<usize, TryRecvError> {
        let n = self.next_now()?;
        Ok(self.take_slice(n, buf)?)
    }

    /// [`try_recv_into`](Consumer::try_recv_into), waiting at most `timeout`.
    pub fn recv_into_timeout(
        &mut self,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<usize, RecvTimeoutError> {
        let n = self.next_timeout(timeout)?;
        Ok(self.take_slice(n, buf)?)
    }

    /// [`try_recv_into`](Consumer::try_recv_into), waiting as long as it takes.
    pub fn recv_into(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        let n = self.next_blocking()?;
        self.take_slice(n, buf)
    }

    /// Receive a plain-old-data value if one is there now. A message of another size stays in
    /// the ring (`SizeMismatch`).
    pub fn try_recv_pod<T: bytemuck::Pod>(&mut self) -> Result<T, TryRecvError> {
        let n = self.next_now()?;
        Ok(self.take_pod(n)?)
    }

    /// [`try_recv_pod`](Consumer::try_recv_pod), waiting at most `timeout`.
    pub fn recv_pod_timeout<T: bytemuck::Pod>(&mut self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        let n = self.next_timeout(timeout)?;
        Ok(self.take_pod(n)?)
    }

    /// [`try_recv_pod`](Consumer::try_recv_pod), waiting as long as it takes.
    pub fn recv_pod<T: bytemuck::Pod>(&mut self) -> Result<T, RecvError> {
        let n = self.next_blocking()?;
        self.take_pod(n)
    }

    /// Take the next message without copying it out yet, if one is there now. The guard copies
    /// the payload where you want it ([`ReadGuard::copy_to`], `read_at`, `to_vec`), or, for a
    /// trusted producer, lends it in place ([`ReadGuard::as_slice_unchecked`]); dropping it
    /// marks the message consumed (see [`flush`](Consumer::flush)).
    #[inline(always)]
    pub fn try_read(&mut self) -> Result<ReadGuard<'_, K, M>, TryRecvError> {
        let next = self.next_now()?;
        Ok(ReadGuard { consumer: self, next })
    }

    /// [`try_read`](Consumer::try_read), waiting at most `timeout`.
    pub fn read_timeout(&mut self, timeout: Duration) -> Result<ReadGuard<'_, K, M>, RecvTimeoutError> {
        let next = self.next_timeout(timeout)?;
        Ok(ReadGuard { consumer: self, next })
    }

    /// [`try_read`](Consumer::try_read), waiting as long as it takes.
    #[inline]
    pub fn read(&mut self) -> Result<ReadGuard<'_, K, M>, RecvError> {
        let next = self.next_blocking()?;
        Ok(ReadGuard { consumer: self, next })
    }

    /// Hand up to `max` messages waiting now to `f` in order, each copied into a buffer of
    /// this process first, then hand all of their space back with one store of the consumer
    /// position. Returns how many were handled (at least 1); with none waiting, the same
    /// errors as [`try_recv`](Consumer::try_recv).
    pub fn recv_batch(&mut self, max: usize, mut f: impl FnMut(&[u8])) -> Result<usize, TryRecvError> {
        let mut buf = Vec::new();
        self.batch(max, |core, n| {
            if let Some(staged) = core.staged(n) {
                return f(staged);
            }
            buf.clear();
            buf.reserve(n.len);
            f(core.mem().copy_out_uninit(n.idx, &mut buf.spare_capacity_mut()[..n.len]))
        })
    }

    /// [`recv_batch`](Consumer::recv_batch) with no copy: `f` reads each message in place.
    ///
    /// # Safety
    /// As for [`ReadGuard::as_slice_unchecked`], for every message handed to `f`: no process or
    /// thread writes a message's payload while `f` holds it, which holds when every process
    /// that can write the ring's memory follows the ring protocol (see "Trusting the peer" in
    /// the [crate docs](crate)).
    pub unsafe fn recv_batch_unchecked(
        &mut self,
        max: usize,
        mut f: impl FnMut(&[u8]),
    ) -> Result<usize, TryRecvError> {
        // SAFETY: the caller's promise, passed on.
        self.batch(max, |core, n| f(unsafe { payload_unchecked(core, n) }))
    }

    /// Hand up to `max` waiting messages to `f`, then release them with one store.
    fn batch(
        &mut self,
        max: usize,
        mut f: impl FnMut(&ConsumerOf<K, M>, Next),
    ) -> Result<usize, TryRecvError> {
        if max == 0 {
            return Ok(0); // asked for nothing: nothing is consumed
        }
        let mut n = self.next_now()?;
        let mut count = 0;
        loop {
            f(&self.core, n);
            self.core.advance(n);
            count += 1;
            if count >= max {
                break;
            }
            match self.core.next_in_batch() {
                Some(next) => n = next,
                None => break,
            }
        }
        self.core.flush();
        Ok(count)
    }

    /// Hand the space of every consumed message back to the producers now (one Release store
    /// of the consumer position, and a wake-up if a producer sleeps).
    ///
    /// This happens by itself whenever a quarter of the ring has been consumed (SPSC: after
    /// every message when the max message is large, as by default, so that a producer always
    /// finds room for a largest one), whenever the consumer finds the ring empty (MPSC: also
    /// when it takes the last message it knows of), at the end of a
    /// [`recv_batch`](Consumer::recv_batch), and on close. Until then a consumer killed without
    /// closing has its consumed messages delivered again to the next consumer of a file-backed
    /// ring (at-least-once); call `flush` after each message where that matters.
    pub fn flush(&mut self) {
        self.core.flush();
    }

    /// An iterator over the messages waiting now (copies). It ends when the ring is empty or
    /// disconnected; a dead producer or corrupt memory is yielded once as an error, and then
    /// it ends. Like every `try_*` call it takes bounded steps: on an MPSC ring it may end at
    /// its walk budget (1 MiB of skipped records) with messages further on; call again.
    pub fn try_iter(&mut self) -> TryIter<'_, K, M> {
        TryIter { consumer: self, done: false }
    }

    /// An iterator that waits for each message (copies). It ends when the ring is empty and
    /// disconnected; a dead producer or corrupt memory is yielded once as an error, and then
    /// it ends.
    pub fn iter(&mut self) -> Iter<'_, K, M> {
        Iter { consumer: self, done: false }
    }

    /// Close this end now (as dropping it does): the producers get `Disconnected`.
    pub fn close(self) {}
}

/// The payload of `n` in place (or the core's checked copy of it, where it keeps one).
///
/// # Safety
/// As for [`ReadGuard::as_slice_unchecked`]: nobody writes the payload while the slice lives.
/// (The core checked that the record lies inside the data area.)
unsafe fn payload_unchecked<M: Memory, C: ConsumerCore<M>>(core: &C, n: Next) -> &[u8] {
    if let Some(staged) = core.staged(n) {
        return staged;
    }
    let mem = core.mem();
    mem.track_read(n.idx, n.len);
    // SAFETY: the record's payload lies inside the data area (checked by the core), and the
    // caller promises nobody writes it while the slice lives.
    unsafe { std::slice::from_raw_parts(mem.payload(n.idx), n.len) }
}

/// Copy payload bytes `offset..offset + dst.len()` of `n` (the caller checked the range lies in
/// the payload) from the ring, or from the core's checked copy where it keeps one.
#[inline(always)]
pub(crate) fn copy_payload<M: Memory, C: ConsumerCore<M>>(core: &C, n: Next, offset: usize, dst: &mut [u8]) {
    match core.staged(n) {
        Some(staged) => dst.copy_from_slice(&staged[offset..offset + dst.len()]),
        None => core.mem().copy_out(n.idx, offset, dst),
    }
}

/// An iterator's next item from one receive: the message; nothing, and the end, on an error
/// that `ends` it; otherwise the error once, and then the end.
fn item<E>(
    done: &mut bool,
    r: Result<Vec<u8>, E>,
    ends: impl FnOnce(&E) -> bool,
) -> Option<Result<Vec<u8>, E>> {
    match r {
        Ok(m) => Some(Ok(m)),
        Err(e) => {
            *done = true;
            (!ends(&e)).then_some(Err(e))
        }
    }
}

/// The messages waiting now: see [`Consumer::try_iter`].
pub struct TryIter<'a, K: RingKind, M: Memory = DefaultMemory> {
    consumer: &'a mut Consumer<K, M>,
    done: bool,
}

impl<K: RingKind, M: Memory> Iterator for TryIter<'_, K, M> {
    type Item = Result<Vec<u8>, TryRecvError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let mut buf = Vec::new();
        let r = self.consumer.try_recv(&mut buf).map(|_| buf);
        item(&mut self.done, r, |e| matches!(e, TryRecvError::Empty | TryRecvError::Disconnected))
    }
}

impl<K: RingKind, M: Memory> fmt::Debug for TryIter<'_, K, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TryIter").field("done", &self.done).finish_non_exhaustive()
    }
}

/// Every message, waiting for each: see [`Consumer::iter`].
pub struct Iter<'a, K: RingKind, M: Memory = DefaultMemory> {
    consumer: &'a mut Consumer<K, M>,
    done: bool,
}

impl<K: RingKind, M: Memory> Iterator for Iter<'_, K, M> {
    type Item = Result<Vec<u8>, RecvError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let mut buf = Vec::new();
        let r = self.consumer.recv(&mut buf).map(|_| buf);
        item(&mut self.done, r, |e| matches!(e, RecvError::Disconnected))
    }
}

impl<K: RingKind, M: Memory> fmt::Debug for Iter<'_, K, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iter").field("done", &self.done).finish_non_exhaustive()
    }
}

/// A message taken from the ring but still in it; dropping the guard marks it consumed.
///
/// The payload stays in shared memory, where the producer's process can still write it (a
/// buggy or hostile one at any time). So the guard hands it out as copies made with atomic word
/// loads ([`copy_to`](Self::copy_to), [`read_at`](Self::read_at), [`to_vec`](Self::to_vec)),
/// which are sound whatever the producer writes: at worst they return garbage. Borrowing the
/// bytes in place ([`as_slice_unchecked`](Self::as_slice_unchecked)) is `unsafe`: only for a
/// producer you trust.
pub struct ReadGuard<'a, K: RingKind, M: Memory = DefaultMemory> {
    pub(crate) consumer: &'a mut Consumer<K, M>,
    pub(crate) next: Next,
}

impl<K: RingKind, M: Memory> fmt::Debug for ReadGuard<'_, K, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadGuard").field("len", &self.next.len).finish()
    }
}

impl<K: RingKind, M: Memory> ReadGuard<'_, K, M> {
    /// The payload length.
    pub fn len(&self) -> usize {
        self.next.len
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.next.len == 0
    }

    /// Copy the payload to the start of `dst`, at most `dst.len()` bytes; returns how many were
    /// copied.
    pub fn copy_to(&self, dst: &mut [u8]) -> usize {
        let n = self.next.len.min(dst.len());
        copy_payload(&self.consumer.core, self.next, 0, &mut dst[..n]);
        n
    }

    /// Copy `dst.len()` payload bytes starting at `offset` into `dst`.
    ///
    /// # Panics
    /// If `offset + dst.len()` is beyond the payload.
    pub fn read_at(&self, offset: usize, dst: &mut [u8]) {
        match offset.checked_add(dst.len()) {
            Some(end) if end <= self.next.len => copy_payload(&self.consumer.core, self.next, offset, dst),
            _ => panic!(
                "ReadGuard::read_at: {} bytes at offset {offset} is beyond the {}-byte payload",
                dst.len(),
                self.next.len
            ),
        }
    }

    /// A copy of the payload.
    pub fn to_vec(&self) -> Vec<u8> {
        let core = &self.consumer.core;
        if let Some(staged) = core.staged(self.next) {
            return staged.to_vec();
        }
        let mut v = Vec::with_capacity(self.next.len);
        core.mem().copy_out_uninit(self.next.idx, &mut v.spare_capacity_mut()[..self.next.len]);
        // SAFETY: copy_out_uninit initialised the first len bytes of the spare capacity.
        unsafe { v.set_len(self.next.len) };
        v
    }

    /// The payload's address (`len()` bytes, valid while the guard lives): in the ring, where
    /// it should be read only with atomic or volatile accesses unless you trust the producer;
    /// on a broadcast ring with the `Overwrite` policy, the subscriber's checked copy.
    pub fn as_ptr(&self) -> *const u8 {
        let core = &self.consumer.core;
        match core.staged(self.next) {
            Some(staged) => staged.as_ptr(),
            None => core.mem().payload(self.next.idx),
        }
    }

    /// The payload in place, with no copy: for a producer you trust.
    ///
    /// # Safety
    /// No process or thread may write the payload while the returned slice lives. The ring
    /// protocol guarantees this for a producer that follows it (it never writes a record it
    /// published before the consumer hands the space back), so the promise is that every
    /// process able to write the ring's memory runs this library (or a conforming
    /// implementation of the [`layout`](crate::layout)) and is neither buggy nor hostile. See
    /// "Trusting the peer" in the [crate docs](crate).
    #[inline]
    pub unsafe fn as_slice_unchecked(&self) -> &[u8] {
        // SAFETY: the caller's promise; the core checked the record lies in the data area.
        unsafe { payload_unchecked(&self.consumer.core, self.next) }
    }
}

impl<K: RingKind, M: Memory> Drop for ReadGuard<'_, K, M> {
    #[inline(always)]
    fn drop(&mut self) {
        self.consumer.core.consume(self.next);
    }
}

// ---------------------------------------------------------------------------------------------
// Construction on a Region
// ---------------------------------------------------------------------------------------------

#[cfg(not(loom))]
mod region {
    use std::sync::Arc;

    use shm_core::Region;

    use super::{Consumer, Producer};
    use crate::handshake::{attach_region, init_region};
    use crate::memory::RegionMemory;
    use crate::protocol::RingKind;
    use crate::{AttachError, AttachOptions, InitError, RingConfig};

    impl<K: RingKind> Producer<K, RegionMemory> {
        /// Initialise a ring of this kind in `region` (zero-filled, or holding no ring) and
        /// attach as a producer.
        pub fn create(region: impl Into<Arc<Region>>, config: &RingConfig) -> Result<Self, InitError> {
            let (mem, geo) = init_region(region.into(), config, K::KIND)?;
            Ok(Self::attach_mem(mem, geo)?)
        }

        /// Attach as a producer of the ring in `region` (on an MPSC ring, taking a free slot),
        /// waiting up to 1 s for a creator that is still initialising it.
        pub fn open(region: impl Into<Arc<Region>>) -> Result<Self, AttachError> {
            Self::open_with(region, &AttachOptions::default())
        }

        /// [`open`](Producer::open) with options.
        pub fn open_with(
            region: impl Into<Arc<Region>>,
            options: &AttachOptions,
        ) -> Result<Self, AttachError> {
            let (mem, geo) = attach_region(region.into(), K::KIND, options)?;
            Self::attach_mem(mem, geo)
        }

        /// The region the ring lives in (to `flush` a file-backed ring, for example).
        pub fn region(&self) -> &Arc<Region> {
            crate::protocol::Core::mem(&self.core).region()
        }
    }

    impl<K: RingKind> Consumer<K, RegionMemory> {
        /// Initialise a ring of this kind in `region` (zero-filled, or holding no ring) and
        /// attach as its consumer.
        pub fn create(region: impl Into<Arc<Region>>, config: &RingConfig) -> Result<Self, InitError> {
            let (mem, geo) = init_region(region.into(), config, K::KIND)?;
            Ok(Self::attach_mem(mem, geo)?)
        }

        /// Attach as the consumer of the ring in `region`, waiting up to 1 s for a creator
        /// that is still initialising it.
        pub fn open(region: impl Into<Arc<Region>>) -> Result<Self, AttachError> {
            Self::open_with(region, &AttachOptions::default())
        }

        /// [`open`](Consumer::open) with options.
        pub fn open_with(
            region: impl Into<Arc<Region>>,
            options: &AttachOptions,
        ) -> Result<Self, AttachError> {
            let (mem, geo) = attach_region(region.into(), K::KIND, options)?;
            Self::attach_mem_with(mem, geo, options)
        }

        /// The region the ring lives in.
        pub fn region(&self) -> &Arc<Region> {
            crate::protocol::Core::mem(&self.core).region()
        }
    }
}
