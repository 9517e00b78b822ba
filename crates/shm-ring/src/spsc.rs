//! Single-producer single-consumer ring: the protocol core behind
//! [`spsc::Producer`](Producer) and [`spsc::Consumer`](Consumer).
//!
//! The producer owns `tail`, the consumer owns `head`; each caches the other's position and
//! reloads the shared one only when the ring looks full (producer) or empty (consumer). A
//! message is published by one Release store of `tail` and consumed by one Release store of
//! `head`, so a busy stream costs no system call and no read-modify-write.

use std::time::Instant;

use crate::config::{self, Geometry};
use crate::error::corrupt;
use crate::error::{AttachError, CorruptError, RecvFail, RecvStop, Role, SendFail, SendStop, TrySendError};
use crate::layout::{record_size, RecordHeader, RECORD_HEADER, TYPE_MSG, TYPE_PAD};
use crate::memory::{DefaultMemory, Memory};
use crate::protocol::{ConsumerCore, Core, Next, ProducerCore, RingKind, Spsc};
use crate::slots::{self, End, Held, LivenessClock, Peer};
use crate::sync::Ordering;
use crate::wait;

impl RingKind for Spsc {
    const KIND: crate::Kind = crate::Kind::Spsc;
    type Producer<M: Memory> = SpscProducer<M>;
    type Consumer<M: Memory> = SpscConsumer<M>;
}

/// The sending end of an SPSC ring. See the [crate docs](crate) for an example.
pub type Producer<M = DefaultMemory> = crate::Producer<Spsc, M>;
/// The receiving end of an SPSC ring.
pub type Consumer<M = DefaultMemory> = crate::Consumer<Spsc, M>;
/// Space reserved in an SPSC ring ([`crate::Grant`]).
pub type Grant<'a, M = DefaultMemory> = crate::Grant<'a, Spsc, M>;
/// A message read in place from an SPSC ring ([`crate::ReadGuard`]).
pub type ReadGuard<'a, M = DefaultMemory> = crate::ReadGuard<'a, Spsc, M>;

/// The protocol state of an SPSC producer.
#[doc(hidden)]
pub struct SpscProducer<M: Memory> {
    mem: M,
    geo: Geometry,
    st: ProducerState,
}

/// The protocol state of an SPSC consumer.
#[doc(hidden)]
pub struct SpscConsumer<M: Memory> {
    mem: M,
    geo: Geometry,
    st: ConsumerState,
}

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

impl<M: Memory> std::fmt::Debug for SpscProducer<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("spsc::Producer")
            .field("capacity", &self.geo.capacity)
            .field("max_message", &self.geo.max_message)
            .field("tail", &self.st.tail)
            .field("head_cache", &self.st.head_cache)
            .finish()
    }
}

impl<M: Memory> std::fmt::Debug for SpscConsumer<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("spsc::Consumer")
            .field("capacity", &self.geo.capacity)
            .field("max_message", &self.geo.max_message)
            .field("head", &self.st.head)
            .field("tail_cache", &self.st.tail_cache)
            .finish()
    }
}

// ---------------------------------------------------------------------------------------------
// Producer
// ---------------------------------------------------------------------------------------------

/// Where the next record goes: its index, and the padding record needed before it (0 = none).
#[doc(hidden)]
#[derive(Clone, Copy, Debug)]
pub struct Spot {
    idx: usize,
    pad: usize,
}

impl<M: Memory> SpscProducer<M> {
    /// Find room for a record of `rec` bytes, reloading the consumer position if needed.
    fn room(&mut self, rec: usize) -> Result<Spot, SendFail> {
        let (mem, geo, st) = (&self.mem, &self.geo, &mut self.st);
        let h = mem.header();
        if let Some(stop) = slots::consumer_gone(mem, st.consumer_at_attach, false) {
            return Err(stop.into());
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
                return Err(SendFail::from(CorruptError {
                    what: "consumer position",
                    found: head,
                    position: st.tail,
                    expected: "between the last consumer position seen and the producer position",
                }));
            }
            st.head_cache = head;
            if st.tail + need - head > geo.capacity {
                if st.liveness.due() {
                    if let Peer::Dead(pid) = slots::peer(mem, End::Consumer, true) {
                        return Err(SendStop::PeerDead { pid }.into());
                    }
                }
                return Err(SendFail::Full);
            }
        }
        Ok(Spot { idx: if pad > 0 { 0 } else { idx }, pad })
    }

    /// Write the record headers and advance our position, without publishing it yet.
    fn write_record(&mut self, spot: Spot, len: usize) {
        let (mem, geo, st) = (&self.mem, &self.geo, &mut self.st);
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
    fn flush_tail(&self) {
        // SYNC POINT: Release pairs with the consumer's Acquire load of tail: the record words
        // and payloads written before are visible before the new tail is.
        self.mem.header().tail.store(self.st.tail, ord!(Release));
        wait::notify(&self.mem, &self.mem.header().data_ready);
    }

    /// Room for a payload of `len` bytes, which may be at most the max message size.
    fn claim(&mut self, len: usize) -> Result<Spot, SendFail> {
        self.geo.check_len(len)?;
        self.room(record_size(len))
    }
}

impl<M: Memory> Core<M> for SpscProducer<M> {
    fn attach(mem: M, geo: Geometry) -> Result<Self, AttachError> {
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
        let st = ProducerState {
            tail,
            head_cache: head,
            me,
            consumer_at_attach,
            liveness: LivenessClock::default(),
        };
        Ok(SpscProducer { mem, geo, st })
    }

    fn parts(&self) -> (&M, &Geometry) {
        (&self.mem, &self.geo)
    }
}

impl<M: Memory> ProducerCore<M> for SpscProducer<M> {
    type Claim = Spot;

    fn len_bytes(&self) -> usize {
        // Acquire: not needed (a byte count for the caller).
        let head = self.mem.header().head.load(ord!(Acquire));
        self.st.tail.saturating_sub(head).min(self.geo.capacity) as usize
    }

    fn try_claim(&mut self, len: usize) -> Result<Spot, SendFail> {
        self.claim(len)
    }

    fn consumer_gone(&mut self, check_alive: bool) -> Option<SendStop> {
        slots::consumer_gone(&self.mem, self.st.consumer_at_attach, check_alive)
    }

    fn payload_index(spot: &Spot) -> usize {
        spot.idx
    }

    fn commit(&mut self, spot: Spot, len: usize) {
        self.write_record(spot, len);
        self.flush_tail();
    }

    fn abort(&mut self, _spot: Spot) {
        // Nothing was written outside the claimed space and our position did not move.
    }
}

impl<M: Memory> Drop for SpscProducer<M> {
    fn drop(&mut self) {
        if !self.st.me.is_ours() {
            return; // a forked child's copy: the end (and the slot) is the parent's
        }
        // Closed first; our lock (in `st.me`) is released after this, when the state drops.
        slots::close_end(&self.mem, End::Producer(0), &self.st.me);
    }
}

/// What only an SPSC producer does: batches published with one store, and partial commits.
impl<M: Memory> Producer<M> {
    /// Send copies of as many messages from `msgs` as fit now, in order, and publish them with
    /// one store of the producer position. Returns how many were sent; the first message that
    /// did not fit (and everything after it) is left in the iterator.
    ///
    /// Errors only when nothing was sent: the error for the first message (handed back as
    /// `()`: it is still in the iterator).
    pub fn send_batch<I, T>(&mut self, msgs: &mut std::iter::Peekable<I>) -> Result<usize, TrySendError<()>>
    where
        I: Iterator<Item = T>,
        T: AsRef<[u8]>,
    {
        let core = &mut self.core;
        let mut sent = 0;
        while let Some(msg) = msgs.peek() {
            let bytes = msg.as_ref();
            match core.claim(bytes.len()) {
                Ok(spot) => {
                    core.mem.copy_in(spot.idx, 0, bytes);
                    core.write_record(spot, bytes.len());
                    msgs.next();
                    sent += 1;
                }
                Err(e) if sent == 0 => return Err(TrySendError::new(e, ())),
                Err(_) => break,
            }
        }
        if sent > 0 {
            core.flush_tail();
        }
        Ok(sent)
    }

    /// Write several messages in place and publish them together: each
    /// [`BatchWriter::push`] writes one message directly into the ring, and
    /// [`BatchWriter::commit`] publishes all of them with one store. Dropping the writer without
    /// committing sends none of them.
    pub fn write_batch(&mut self) -> BatchWriter<'_, M> {
        let start = self.core.st.tail;
        BatchWriter { producer: &mut self.core, start, count: 0, buf: Vec::new() }
    }
}

impl<M: Memory> Grant<'_, M> {
    /// Publish only the first `len` bytes (`len` is clamped to the reserved length).
    pub fn commit_len(mut self, len: usize) {
        let len = len.min(self.len);
        if let Some(spot) = self.claim.take() {
            self.producer.core.commit(spot, len);
        }
    }
}

/// Messages written in place, published together by [`commit`](BatchWriter::commit).
pub struct BatchWriter<'a, M: Memory = DefaultMemory> {
    producer: &'a mut SpscProducer<M>,
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
    pub fn push(&mut self, len: usize, fill: impl FnOnce(&mut [u8])) -> Result<(), TrySendError<()>> {
        let p = &mut *self.producer;
        let spot = p.claim(len).map_err(|e| TrySendError::new(e, ()))?;
        self.buf.clear();
        self.buf.resize(len, 0);
        fill(&mut self.buf);
        p.mem.copy_in(spot.idx, 0, &self.buf);
        p.write_record(spot, len);
        self.count += 1;
        Ok(())
    }

    /// [`push`](BatchWriter::push) with no copy: `fill` writes the message in the ring. The
    /// bytes hold whatever the ring held there before, not zeros.
    ///
    /// # Safety
    /// As for [`Grant::as_mut_slice_unchecked`](crate::Grant::as_mut_slice_unchecked): no other
    /// process or thread reads or writes the bytes while `fill` holds them, which holds when
    /// every process able to map the ring follows the ring protocol (see "Trusting the peer" in
    /// the [crate docs](crate)).
    pub unsafe fn push_unchecked(
        &mut self,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<(), TrySendError<()>> {
        let p = &mut *self.producer;
        let spot = p.claim(len).map_err(|e| TrySendError::new(e, ()))?;
        p.mem.track_write(spot.idx, len);
        // SAFETY: `room` found the record's bytes free at `spot.idx` inside the data area; the
        // consumer does not read them before we publish, `&mut self` makes this the only
        // reference in this producer, and the caller promises no other process touches them.
        fill(unsafe { std::slice::from_raw_parts_mut(p.mem.payload(spot.idx), len) });
        p.write_record(spot, len);
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
            self.producer.flush_tail();
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

// ---------------------------------------------------------------------------------------------
// Consumer
// ---------------------------------------------------------------------------------------------

/// Store our position (one Release store) and wake a producer waiting for space.
fn publish_head<M: Memory>(mem: &M, st: &mut ConsumerState) {
    if st.head != st.published {
        st.published = st.head;
        // SYNC POINT: Release pairs with the producer's Acquire load of head: we are done
        // reading the released records before the producer may overwrite them.
        mem.header().head.store(st.head, ord!(Release));
        wait::notify(mem, &mem.header().space_ready);
    }
}

impl<M: Memory> SpscConsumer<M> {
    /// Find the next message without consuming it. `Ok(None)`: the ring is empty.
    fn next(&mut self) -> Result<Option<Next>, CorruptError> {
        let (mem, geo, st) = (&self.mem, &self.geo, &mut self.st);
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
                    publish_head(mem, st);
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

    /// The producer's end as a reason to stop: closed or dead (checked when `check_alive`).
    fn producer_gone(&self, check_alive: bool) -> Option<RecvStop> {
        match slots::peer(&self.mem, End::Producer(0), check_alive) {
            Peer::Closed => Some(RecvStop::Disconnected),
            Peer::Dead(pid) => Some(RecvStop::PeerDead { pid }),
            Peer::Present => None,
        }
    }
}

impl<M: Memory> Core<M> for SpscConsumer<M> {
    fn attach(mem: M, geo: Geometry) -> Result<Self, AttachError> {
        let (me, head) = slots::attach_consumer(&mem, &geo)?;
        let st =
            ConsumerState { head, published: head, tail_cache: head, me, liveness: LivenessClock::default() };
        Ok(SpscConsumer { mem, geo, st })
    }

    fn parts(&self) -> (&M, &Geometry) {
        (&self.mem, &self.geo)
    }
}

impl<M: Memory> ConsumerCore<M> for SpscConsumer<M> {
    fn position(&self) -> u64 {
        self.st.head
    }

    fn try_next(&mut self) -> Result<Next, RecvFail> {
        if let Some(n) = self.next()? {
            return Ok(n);
        }
        // Empty: hand everything back, then see whether the producer is still there.
        publish_head(&self.mem, &mut self.st);
        let check = self.st.liveness.due();
        match self.producer_gone(check) {
            None => Err(RecvFail::Empty),
            // The producer may have sent its last message just before it closed.
            Some(gone) => self.next()?.ok_or(RecvFail::Stop(gone)),
        }
    }

    fn wait_step(&mut self, _deadline: Option<Instant>) -> Result<Option<Next>, RecvStop> {
        Ok(self.next()?)
    }

    fn producers_gone(&mut self, check_alive: bool) -> Option<RecvStop> {
        self.producer_gone(check_alive)
    }

    /// Mark a record consumed. The space goes back to the producer in steps (see
    /// [`Consumer::flush`](crate::Consumer::flush)): while the consumer lags, one store and one
    /// wake-up check per quarter ring instead of per message.
    fn consume(&mut self, n: Next) {
        self.st.head += record_size(n.len) as u64;
        // Hand space back per quarter ring, or at once when this was the last message known:
        // a lagging consumer batches its releases, one that is caught up never holds space.
        if self.st.head - self.st.published >= self.geo.capacity / 4 || self.st.head == self.st.tail_cache {
            publish_head(&self.mem, &mut self.st);
        }
    }

    fn advance(&mut self, n: Next) {
        self.st.head += record_size(n.len) as u64;
    }

    fn next_in_batch(&mut self) -> Option<Next> {
        self.next().ok().flatten()
    }

    fn flush(&mut self) {
        publish_head(&self.mem, &mut self.st);
    }
}

impl<M: Memory> Drop for SpscConsumer<M> {
    fn drop(&mut self) {
        if !self.st.me.is_ours() {
            return; // a forked child's copy: handing back or closing would be the parent's
        }
        publish_head(&self.mem, &mut self.st);
        // Closed first; our lock (in `st.me`) is released after this, when the state drops.
        slots::close_end(&self.mem, End::Consumer, &self.st.me);
    }
}
