//! Single-producer single-consumer ring.
//!
//! The producer owns `tail`, the consumer owns `head`; each caches the other's position and
//! reloads the shared one only when the ring looks full (producer) or empty (consumer). A
//! message is published by one Release store of `tail` and consumed by one Release store of
//! `head`, so a busy stream costs no system call and no read-modify-write.

use std::time::{Duration, Instant};

use crate::config::{self, Geometry};
use crate::error::{AttachError, CorruptError, RecvError, Role, SendError};
use crate::layout::{record_size, RecordHeader, RECORD_HEADER, TYPE_MSG, TYPE_PAD};
use crate::memory::Memory;
use crate::slots::{self, End, Held, LivenessClock, Peer};
use crate::sync::Ordering;
use crate::wait::{self, Step};

#[cfg(not(loom))]
use crate::memory::RegionMemory;

/// The sending end of an SPSC ring. See the [crate docs](crate) for an example.
pub struct Producer<M: Memory = DefaultMemory> {
    mem: M,
    geo: Geometry,
    st: ProducerState,
}

/// The receiving end of an SPSC ring.
pub struct Consumer<M: Memory = DefaultMemory> {
    mem: M,
    geo: Geometry,
    st: ConsumerState,
}

#[cfg(not(loom))]
#[doc(hidden)]
pub type DefaultMemory = RegionMemory;
#[cfg(loom)]
#[doc(hidden)]
pub type DefaultMemory = std::sync::Arc<crate::memory::HeapMemory>;

#[derive(Debug)]
struct ProducerState {
    /// Our position: authoritative, published to `header.tail`.
    tail: u64,
    /// Last consumer position we read.
    head_cache: u64,
    /// Our producer slot: our owner word, and the lock that proves us alive (released after
    /// the word is marked closed, when the state drops).
    me: Held,
    /// The consumer slot's generation when we attached, and whether a consumer was attached
    /// then: a consumer that closed before we came (a file-backed ring between consumers) does
    /// not disconnect us; one that closes while we are here does.
    consumer_at_attach: (u32, bool),
    liveness: LivenessClock,
}

#[derive(Debug)]
struct ConsumerState {
    /// Our position: authoritative, published to `header.head` on release.
    head: u64,
    /// The last value stored to `header.head`.
    published: u64,
    /// Last producer position we read.
    tail_cache: u64,
    /// Our consumer slot (see `ProducerState::me`).
    me: Held,
    liveness: LivenessClock,
}

impl<M: Memory> std::fmt::Debug for Producer<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("capacity", &self.geo.capacity)
            .field("max_message", &self.geo.max_message)
            .field("tail", &self.st.tail)
            .field("head_cache", &self.st.head_cache)
            .finish()
    }
}

impl<M: Memory> std::fmt::Debug for Consumer<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("capacity", &self.geo.capacity)
            .field("max_message", &self.geo.max_message)
            .field("head", &self.st.head)
            .field("tail_cache", &self.st.tail_cache)
            .finish()
    }
}

use crate::error::corrupt;
use crate::wait::deadline;

// ---------------------------------------------------------------------------------------------
// Producer
// ---------------------------------------------------------------------------------------------

/// Where the next record goes: its index, and the padding record needed before it (0 = none).
#[derive(Clone, Copy, Debug)]
struct Spot {
    idx: usize,
    pad: usize,
}

impl<M: Memory> Producer<M> {
    /// Attach as the producer to initialised memory whose geometry was validated.
    pub(crate) fn attach_mem(mem: M, geo: Geometry) -> Result<Self, AttachError> {
        let h = mem.header();
        let (me, _gen) = slots::claim_slot(&mem, End::Producer(0), Role::Producer)?;
        let consumer_at_attach = slots::consumer_snapshot(h);
        // A producer that died asleep may have left its announcement; only we wait here.
        h.space_ready.waiters.store(0, Ordering::Relaxed);
        let head = h.head.load(ord!(Acquire));
        // Relaxed: our own position; the previous producer's last tail is ordered before us by
        // the slot claim (its Acquire pairs with `release_slot`'s Release).
        let tail = h.tail.load(Ordering::Relaxed);
        if let Err(e) = config::check_positions(head, tail, geo.capacity) {
            slots::release_slot(mem.slot(0), &me);
            return Err(e.into());
        }
        Ok(Producer {
            mem,
            geo,
            st: ProducerState {
                tail,
                head_cache: head,
                me,
                consumer_at_attach,
                liveness: LivenessClock::default(),
            },
        })
    }

    /// Bytes currently in flight (sent, not yet consumed), as far as this end knows.
    pub fn len_bytes(&self) -> usize {
        // Acquire: not needed (a byte count for the caller).
        let head = self.mem.header().head.load(ord!(Acquire));
        self.st.tail.saturating_sub(head).min(self.geo.capacity) as usize
    }

    /// Whether everything sent has been consumed.
    pub fn is_empty(&self) -> bool {
        self.len_bytes() == 0
    }

    /// Find room for a record of `rec` bytes, reloading the consumer position if needed.
    fn room(mem: &M, geo: &Geometry, st: &mut ProducerState, rec: usize) -> Result<Spot, SendError<()>> {
        let h = mem.header();
        if slots::peer(mem, End::Consumer, false) == Peer::Closed
            && slots::consumer_left(h, st.consumer_at_attach)
        {
            return Err(SendError::Disconnected(()));
        }
        let idx = (st.tail & geo.mask) as usize;
        let contiguous = geo.capacity as usize - idx;
        let pad = if rec <= contiguous { 0 } else { contiguous };
        let need = (pad + rec) as u64;
        if st.tail + need - st.head_cache > geo.capacity {
            // SYNC POINT: Acquire pairs with the consumer's Release store of head: the space it
            // released is no longer being read.
            let head = h.head.load(ord!(Acquire));
            if head < st.head_cache || head > st.tail {
                return Err(SendError::Corrupt {
                    msg: (),
                    error: CorruptError {
                        what: "consumer position",
                        found: head,
                        position: st.tail,
                        expected: "between the last consumer position seen and the producer position",
                    },
                });
            }
            st.head_cache = head;
            if st.tail + need - head > geo.capacity {
                if st.liveness.due() {
                    if let Peer::Dead(pid) = slots::peer(mem, End::Consumer, true) {
                        return Err(SendError::PeerDead { msg: (), pid });
                    }
                }
                return Err(SendError::Full(()));
            }
        }
        Ok(Spot { idx: if pad > 0 { 0 } else { idx }, pad })
    }

    /// Write the record headers and advance our position, without publishing it yet.
    fn write_record(mem: &M, geo: &Geometry, st: &mut ProducerState, spot: Spot, len: usize) {
        if spot.pad > 0 {
            let pad_idx = (st.tail & geo.mask) as usize;
            let pad = RecordHeader::new(TYPE_PAD, (spot.pad - RECORD_HEADER) as u32, 0, 0);
            mem.record(pad_idx).store(pad.to_word(), Ordering::Relaxed);
        }
        mem.record(spot.idx)
            .store(RecordHeader::new(TYPE_MSG, len as u32, 0, 0).to_word(), Ordering::Relaxed);
        st.tail += (spot.pad + record_size(len)) as u64;
    }

    /// Publish everything written so far: one Release store of `tail`, then wake a sleeper.
    fn flush_tail(mem: &M, st: &ProducerState) {
        // SYNC POINT: Release pairs with the consumer's Acquire load of tail: the record words
        // and payloads written before are visible before the new tail is.
        mem.header().tail.store(st.tail, ord!(Release));
        wait::notify(mem, &mem.header().data_ready);
    }

    fn publish(mem: &M, geo: &Geometry, st: &mut ProducerState, spot: Spot, len: usize) {
        Self::write_record(mem, geo, st, spot, len);
        Self::flush_tail(mem, st);
    }

    fn check_len(&self, len: usize) -> Result<usize, SendError<()>> {
        if len > self.geo.max_message {
            return Err(SendError::TooLarge { msg: (), len, max: self.geo.max_message });
        }
        Ok(record_size(len))
    }

    /// Copy the payload in: `room` found `record_size(len)` free bytes at `spot.idx` inside the
    /// data area, which the consumer does not read until we publish.
    fn write_payload(mem: &M, spot: Spot, bytes: &[u8]) {
        mem.copy_in(spot.idx, 0, bytes);
    }

    /// Send a copy of `msg` if there is room now. On failure the message is handed back.
    pub fn try_send<T: AsRef<[u8]>>(&mut self, msg: T) -> Result<(), SendError<T>> {
        let bytes = msg.as_ref();
        let len = bytes.len();
        let rec = match self.check_len(len) {
            Ok(r) => r,
            Err(e) => return Err(SendError::with_msg(e, msg)),
        };
        match Self::room(&self.mem, &self.geo, &mut self.st, rec) {
            Ok(spot) => {
                Self::write_payload(&self.mem, spot, bytes);
                Self::publish(&self.mem, &self.geo, &mut self.st, spot, len);
                Ok(())
            }
            Err(e) => Err(SendError::with_msg(e, msg)),
        }
    }

    /// Wait for room for `rec` bytes until `deadline` (None: forever).
    fn wait_room(&mut self, rec: usize, deadline: Option<Instant>) -> Result<Spot, SendError<()>> {
        let (mem, geo, st) = (&self.mem, &self.geo, &mut self.st);
        let h = mem.header();
        let at_attach = st.consumer_at_attach;
        wait::block_on(
            mem,
            &h.space_ready,
            deadline,
            || match Self::room(mem, geo, st, rec) {
                Err(SendError::Full(())) => Step::Pending,
                r => Step::Done(r),
            },
            |check_alive| match slots::peer(mem, End::Consumer, check_alive) {
                Peer::Dead(pid) => Some(SendError::PeerDead { msg: (), pid }),
                Peer::Closed if slots::consumer_left(h, at_attach) => Some(SendError::Disconnected(())),
                Peer::Closed => None,
                Peer::Present => None,
            },
            || SendError::Timeout(()),
        )
    }

    fn send_deadline<T: AsRef<[u8]>>(
        &mut self,
        msg: T,
        deadline: Option<Instant>,
    ) -> Result<(), SendError<T>> {
        let len = msg.as_ref().len();
        let rec = match self.check_len(len) {
            Ok(r) => r,
            Err(e) => return Err(SendError::with_msg(e, msg)),
        };
        match self.wait_room(rec, deadline) {
            Ok(spot) => {
                Self::write_payload(&self.mem, spot, msg.as_ref());
                Self::publish(&self.mem, &self.geo, &mut self.st, spot, len);
                Ok(())
            }
            Err(e) => Err(SendError::with_msg(e, msg)),
        }
    }

    /// Send copies of as many messages from `msgs` as fit now, in order, and publish them with
    /// one store of the producer position. Returns how many were sent; the first message that
    /// did not fit (and everything after it) is left in the iterator.
    ///
    /// Errors only when nothing was sent: the error for the first message.
    pub fn send_batch<I, T>(&mut self, msgs: &mut std::iter::Peekable<I>) -> Result<usize, SendError<()>>
    where
        I: Iterator<Item = T>,
        T: AsRef<[u8]>,
    {
        let mut sent = 0;
        while let Some(msg) = msgs.peek() {
            let bytes = msg.as_ref();
            let step = self
                .check_len(bytes.len())
                .and_then(|rec| Self::room(&self.mem, &self.geo, &mut self.st, rec));
            match step {
                Ok(spot) => {
                    Self::write_payload(&self.mem, spot, bytes);
                    Self::write_record(&self.mem, &self.geo, &mut self.st, spot, bytes.len());
                    msgs.next();
                    sent += 1;
                }
                Err(e) if sent == 0 => return Err(e),
                Err(_) => break,
            }
        }
        if sent > 0 {
            Self::flush_tail(&self.mem, &self.st);
        }
        Ok(sent)
    }

    /// Write several messages in place and publish them together: each
    /// [`BatchWriter::push`] writes one message directly into the ring, and
    /// [`BatchWriter::commit`] publishes all of them with one store. Dropping the writer without
    /// committing sends none of them.
    pub fn write_batch(&mut self) -> BatchWriter<'_, M> {
        let start = self.st.tail;
        BatchWriter { producer: self, start, count: 0, buf: Vec::new() }
    }

    producer_methods!();

    /// Reserve `len` bytes in the ring to write a message in place. Write them with
    /// [`Grant::write_at`] / [`Grant::copy_from_slice`] (or, trusting the consumer,
    /// [`Grant::as_mut_slice_unchecked`]); [`Grant::commit`] publishes it, dropping it sends
    /// nothing.
    pub fn reserve(&mut self, len: usize) -> Result<Grant<'_, M>, SendError<()>> {
        let rec = self.check_len(len)?;
        let spot = Self::room(&self.mem, &self.geo, &mut self.st, rec)?;
        self.mem.track_write(spot.idx, len);
        Ok(Grant { producer: self, spot, len })
    }

    /// [`reserve`](Producer::reserve), waiting at most `timeout` (None: forever) for room.
    pub fn reserve_timeout(
        &mut self,
        len: usize,
        timeout: Option<Duration>,
    ) -> Result<Grant<'_, M>, SendError<()>> {
        let rec = self.check_len(len)?;
        let spot = self.wait_room(rec, timeout.and_then(deadline))?;
        self.mem.track_write(spot.idx, len);
        Ok(Grant { producer: self, spot, len })
    }

    /// Close this end now (as dropping it does): the consumer drains what was sent, then gets
    /// [`RecvError::Disconnected`].
    pub fn close(self) {}
}

impl<M: Memory> Drop for Producer<M> {
    fn drop(&mut self) {
        if !self.st.me.is_ours() {
            return; // a forked child's copy: the end (and the slot) is the parent's
        }
        let h = self.mem.header();
        // Closed first; our lock (in `st.me`) is released after this, when the state drops.
        slots::release_slot(self.mem.slot(0), &self.st.me);
        wait::wake_all(&self.mem, &h.data_ready);
        wait::wake_all(&self.mem, &h.space_ready);
    }
}

/// Messages written in place, published together by [`commit`](BatchWriter::commit).
pub struct BatchWriter<'a, M: Memory = DefaultMemory> {
    producer: &'a mut Producer<M>,
    /// The producer position before the batch, restored if the batch is dropped.
    start: u64,
    count: usize,
    /// Where [`push`](BatchWriter::push) has messages filled before copying them in.
    buf: Vec<u8>,
}

impl<M: Memory> std::fmt::Debug for BatchWriter<'_, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchWriter").field("count", &self.count).finish()
    }
}

impl<M: Memory> BatchWriter<'_, M> {
    /// Write one message of `len` bytes with `fill`, if it fits now: `fill` writes a zeroed
    /// buffer of this process, which is then copied into the ring (atomic word stores: sound
    /// whatever the consumer's process does). Nothing is visible to the consumer before
    /// [`commit`](BatchWriter::commit).
    pub fn push(&mut self, len: usize, fill: impl FnOnce(&mut [u8])) -> Result<(), SendError<()>> {
        let p = &mut *self.producer;
        let rec = p.check_len(len)?;
        let spot = Producer::room(&p.mem, &p.geo, &mut p.st, rec)?;
        self.buf.clear();
        self.buf.resize(len, 0);
        fill(&mut self.buf);
        Producer::write_payload(&p.mem, spot, &self.buf);
        Producer::write_record(&p.mem, &p.geo, &mut p.st, spot, len);
        self.count += 1;
        Ok(())
    }

    /// [`push`](BatchWriter::push) with no copy: `fill` writes the message in the ring. The
    /// bytes hold whatever the ring held there before, not zeros.
    ///
    /// # Safety
    /// As for [`Grant::as_mut_slice_unchecked`]: no other process or thread reads or writes
    /// the bytes while `fill` holds them, which holds when every process able to map the ring
    /// follows the ring protocol (see "Trusting the peer" in the [crate docs](crate)).
    pub unsafe fn push_unchecked(
        &mut self,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<(), SendError<()>> {
        let p = &mut *self.producer;
        let rec = p.check_len(len)?;
        let spot = Producer::room(&p.mem, &p.geo, &mut p.st, rec)?;
        p.mem.track_write(spot.idx, len);
        // SAFETY: `room` found the record's bytes free at `spot.idx` inside the data area; the
        // consumer does not read them before we publish, `&mut self` makes this the only
        // reference in this producer, and the caller promises no other process touches them.
        fill(unsafe { std::slice::from_raw_parts_mut(p.mem.payload(spot.idx), len) });
        Producer::write_record(&p.mem, &p.geo, &mut p.st, spot, len);
        self.count += 1;
        Ok(())
    }

    /// Messages written so far.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Publish every message written, with one store; returns how many.
    pub fn commit(mut self) -> usize {
        let n = self.count;
        if n > 0 {
            Producer::flush_tail(&self.producer.mem, &self.producer.st);
        }
        self.count = 0;
        self.start = self.producer.st.tail;
        n
    }
}

impl<M: Memory> Drop for BatchWriter<'_, M> {
    fn drop(&mut self) {
        // Not committed: forget what was written (it was never published).
        self.producer.st.tail = self.start;
    }
}

/// Space reserved in the ring for one message, written in place with
/// [`write_at`](Grant::write_at) / [`copy_from_slice`](Grant::copy_from_slice) (atomic word
/// stores), or as a `&mut [u8]` through [`as_mut_slice_unchecked`](Grant::as_mut_slice_unchecked)
/// for a trusted consumer. [`commit`](Grant::commit) publishes it; dropping it publishes nothing.
pub struct Grant<'a, M: Memory = DefaultMemory> {
    producer: &'a mut Producer<M>,
    spot: Spot,
    len: usize,
}

impl<M: Memory> std::fmt::Debug for Grant<'_, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grant").field("len", &self.len).finish()
    }
}

impl<M: Memory> Grant<'_, M> {
    /// Publish the whole reserved length.
    pub fn commit(self) {
        let len = self.len;
        self.commit_len(len);
    }

    /// Publish only the first `len` bytes (`len` is clamped to the reserved length).
    pub fn commit_len(self, len: usize) {
        let len = len.min(self.len);
        let p = &mut *self.producer;
        // Dropping a grant publishes nothing, so consuming `self` here needs no forget.
        Producer::publish(&p.mem, &p.geo, &mut p.st, self.spot, len);
    }
}

impl<M: Memory> Grant<'_, M> {
    /// The memory, the record index and the reserved length: `room` reserved `len` payload
    /// bytes at `spot.idx` inside the data area, which the consumer does not read until commit.
    fn place(&self) -> (&M, usize, usize) {
        (&self.producer.mem, self.spot.idx, self.len)
    }

    grant_methods!();
}

// ---------------------------------------------------------------------------------------------
// Consumer
// ---------------------------------------------------------------------------------------------

/// The next message: its index and payload length.
#[derive(Clone, Copy, Debug)]
struct Next {
    idx: usize,
    len: usize,
}

impl<M: Memory> Consumer<M> {
    /// Attach as the consumer to initialised memory whose geometry was validated.
    pub(crate) fn attach_mem(mem: M, geo: Geometry) -> Result<Self, AttachError> {
        let (me, head) = slots::attach_consumer(&mem, &geo)?;
        let st =
            ConsumerState { head, published: head, tail_cache: head, me, liveness: LivenessClock::default() };
        Ok(Consumer { mem, geo, st })
    }

    /// Find the next message without consuming it. `Ok(None)`: the ring is empty.
    fn next(mem: &M, geo: &Geometry, st: &mut ConsumerState) -> Result<Option<Next>, RecvError> {
        loop {
            if st.head == st.tail_cache {
                // SYNC POINT: Acquire pairs with the producer's Release store of tail.
                let tail = mem.header().tail.load(ord!(Acquire));
                if tail % 8 != 0 || tail < st.head || tail - st.head > geo.capacity {
                    return Err(corrupt(
                        "producer position",
                        tail,
                        st.head,
                        "a multiple of 8 within capacity ahead of the consumer position",
                    ));
                }
                st.tail_cache = tail;
                if tail == st.head {
                    // Caught up: hand everything consumed back to the producer now.
                    Self::publish_head(mem, st);
                    return Ok(None);
                }
            }
            let idx = (st.head & geo.mask) as usize;
            let avail = st.tail_cache - st.head;
            // Acquire: not needed (the Acquire load of tail that covers this record already synchronised with the producer).
            let rh = RecordHeader::from_word(mem.record(idx).load(ord!(Acquire)));
            match rh.kind() {
                TYPE_PAD => {
                    let size = geo.capacity as usize - idx;
                    if rh.len as usize + RECORD_HEADER != size || size as u64 > avail {
                        return Err(corrupt(
                            "padding length",
                            rh.len.into(),
                            st.head,
                            "the rest of the data area",
                        ));
                    }
                    st.head += size as u64;
                }
                TYPE_MSG => {
                    let len = rh.len as usize;
                    if len > geo.max_message {
                        return Err(corrupt(
                            "record length",
                            len as u64,
                            st.head,
                            "at most the max message size",
                        ));
                    }
                    let rec = record_size(len);
                    if rec as u64 > avail || idx + rec > geo.capacity as usize {
                        return Err(corrupt(
                            "record length",
                            len as u64,
                            st.head,
                            "a record inside the published data",
                        ));
                    }
                    return Ok(Some(Next { idx, len }));
                }
                other => {
                    return Err(corrupt("record type", other.into(), st.head, "1 (message) or 2 (padding)"))
                }
            }
        }
    }

    /// Store our position (one Release store) and wake a producer waiting for space.
    fn publish_head(mem: &M, st: &mut ConsumerState) {
        if st.head != st.published {
            st.published = st.head;
            // SYNC POINT: Release pairs with the producer's Acquire load of head: we are done
            // reading the released records before the producer may overwrite them.
            mem.header().head.store(st.head, ord!(Release));
            wait::notify(mem, &mem.header().space_ready);
        }
    }

    /// The error for an empty ring: the producer closed, died, or simply has sent nothing yet.
    fn empty(mem: &M, st: &mut ConsumerState, check_alive: bool) -> RecvError {
        Self::publish_head(mem, st);
        match slots::peer(mem, End::Producer(0), check_alive) {
            Peer::Closed => RecvError::Disconnected,
            Peer::Dead(pid) => RecvError::PeerDead { pid },
            Peer::Present => RecvError::Empty,
        }
    }

    fn try_next(&mut self) -> Result<Next, RecvError> {
        match Self::next(&self.mem, &self.geo, &mut self.st)? {
            Some(n) => Ok(n),
            None => {
                let check = self.st.liveness.due();
                match Self::empty(&self.mem, &mut self.st, check) {
                    RecvError::Empty => Err(RecvError::Empty),
                    // The producer may have sent its last message just before it closed.
                    gone => Self::next(&self.mem, &self.geo, &mut self.st)?.ok_or(gone),
                }
            }
        }
    }

    fn wait_next(&mut self, deadline: Option<Instant>) -> Result<Next, RecvError> {
        let (mem, geo, st) = (&self.mem, &self.geo, &mut self.st);
        let h = mem.header();
        wait::block_on(
            mem,
            &h.data_ready,
            deadline,
            || match Self::next(mem, geo, st) {
                Ok(Some(n)) => Step::Done(Ok(n)),
                Ok(None) => Step::Pending,
                Err(e) => Step::Done(Err(e)),
            },
            |check_alive| match slots::peer(mem, End::Producer(0), check_alive) {
                Peer::Closed => Some(RecvError::Disconnected),
                Peer::Dead(pid) => Some(RecvError::PeerDead { pid }),
                Peer::Present => None,
            },
            || RecvError::Timeout,
        )
    }

    /// Mark a record consumed. The space goes back to the producer in steps (see
    /// [`flush`](Consumer::flush)): while the consumer lags, one store and one wake-up check per
    /// quarter ring instead of per message.
    fn consume(&mut self, n: Next) {
        self.st.head += record_size(n.len) as u64;
        // Hand space back per quarter ring, or at once when this was the last message known:
        // a lagging consumer batches its releases, one that is caught up never holds space.
        if self.st.head - self.st.published >= self.geo.capacity / 4 || self.st.head == self.st.tail_cache {
            Self::publish_head(&self.mem, &mut self.st);
        }
    }

    /// Hand the space of every consumed message back to the producer now (one Release store of
    /// the consumer position, and a wake-up if the producer sleeps).
    ///
    /// This happens by itself whenever a quarter of the ring has been consumed, whenever the
    /// consumer takes the last message it knows of or finds the ring empty, at the end of
    /// [`recv_batch`](Consumer::recv_batch), and on close. Until then a consumer killed without closing has its consumed messages
    /// delivered again to the next consumer of a file-backed ring (at-least-once); call `flush`
    /// after each message where that matters.
    pub fn flush(&mut self) {
        Self::publish_head(&self.mem, &mut self.st);
    }

    consumer_methods!();

    /// Hand up to `max` waiting messages to `f` in order, then release all of them with one
    /// store of the consumer position (`recv_batch` and `recv_batch_unchecked`).
    fn batch(&mut self, max: usize, mut f: impl FnMut(&M, Next)) -> Result<usize, RecvError> {
        if max == 0 {
            return Ok(0); // asked for nothing: nothing is consumed
        }
        let first = self.try_next()?;
        let mut n = first;
        let mut count = 0;
        loop {
            f(&self.mem, n);
            self.st.head += record_size(n.len) as u64;
            count += 1;
            if count >= max {
                break;
            }
            match Self::next(&self.mem, &self.geo, &mut self.st) {
                Ok(Some(next)) => n = next,
                Ok(None) => break,
                Err(e) => {
                    Self::publish_head(&self.mem, &mut self.st);
                    return if count > 0 { Ok(count) } else { Err(e) };
                }
            }
        }
        Self::publish_head(&self.mem, &mut self.st);
        Ok(count)
    }

    /// Close this end now (as dropping it does): the producer gets
    /// [`SendError::Disconnected`].
    pub fn close(self) {}
}

impl<M: Memory> Drop for Consumer<M> {
    fn drop(&mut self) {
        if !self.st.me.is_ours() {
            return; // a forked child's copy: handing back or closing would be the parent's
        }
        Self::publish_head(&self.mem, &mut self.st);
        let h = self.mem.header();
        // Closed first; our lock (in `st.me`) is released after this, when the state drops.
        slots::release_slot(&h.consumer, &self.st.me);
        wait::wake_all(&self.mem, &h.space_ready);
        wait::wake_all(&self.mem, &h.data_ready);
    }
}

read_guard!();

// ---------------------------------------------------------------------------------------------
// Construction on a Region (production) and on heap memory (loom)
// ---------------------------------------------------------------------------------------------

#[cfg(not(loom))]
region_constructors!(Producer, crate::layout::Kind::Spsc, "SPSC", "its producer", |this| this.mem);
#[cfg(not(loom))]
region_constructors!(Consumer, crate::layout::Kind::Spsc, "SPSC", "its consumer", |this| this.mem);

/// A producer and consumer on heap memory with loom atomics, for the model checks.
#[cfg(loom)]
pub fn model_pair(config: &crate::RingConfig) -> (Producer, Consumer) {
    let mem = crate::model::ModelMemory::zeroed(config);
    mem.init().expect("init");
    (mem.spsc_producer().expect("producer"), mem.spsc_consumer().expect("consumer"))
}
