//! Single-producer single-consumer ring: the protocol core behind
//! [`spsc::Producer`](Producer) and [`spsc::Consumer`](Consumer).
//!
//! # Protocol (layout version 3)
//! The consumer never reads the producer's position: it waits on the **record word at its own
//! position**, which holds either this lap's free word ([`layout::free_word`]: nothing there
//! yet) or the header of the next record. So in a steady stream one cache line moves per
//! message, the record's own.
//!
//! The producer keeps that true with a *terminator*: before it publishes records it writes the
//! free word of the lap at the position just past them, and it publishes by one Release store
//! of the record word at the old end, the word the consumer is waiting at. Everything the
//! consumer can reach was written before the store that made it reachable, so it never meets a
//! stale word of an earlier lap; nothing is rewritten when space is handed back. Record headers
//! carry a lap tag (the low 24 bits of the lap): when a publish fills the ring exactly there is
//! no room for a terminator, and the word past the records is the header of the consumer's
//! next record, one lap behind, which the consumer reads as "nothing yet" until the producer
//! writes over it. A full ring holds `capacity` bytes of records, as before.
//!
//! The producer also stores `tail` (for a successor producer, `len` and `inspect`; no one waits
//! on it) and the consumer hands space back with one Release store of `head`: at a threshold
//! that always leaves a producer facing an otherwise empty ring room for a largest message
//! (`hand_back_at`), and before it sleeps. It looks for a producer waiting for room (a fence,
//! the costly part) only every quarter ring, when that producer's announcement shows, and
//! when it finds the ring empty (`hand_back_if_due`). A busy stream costs no system call and
//! no read-modify-write.
//!
//! A producer killed between its publishing store and its store of `tail` leaves `tail` behind
//! the records it published; its successor walks the record words from `max(tail, head)` to
//! the real end at attach (`published_end`), so it never writes over a published record.
//!
//! [`layout::free_word`]: crate::layout::free_word

use std::time::Instant;

use crate::config::{self, Geometry, Lap};
use crate::error::corrupt;
use crate::error::{AttachError, CorruptError, RecvFail, RecvStop, Role, SendFail, SendStop, TrySendError};
use crate::layout::{lap_tag, record_size, RecordHeader, RECORD_HEADER, TYPE_MSG, TYPE_PAD};
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

/// What a record word read at the consumer position says.
enum Word {
    /// A record of this lap.
    Record(RecordHeader),
    /// Nothing yet: the terminator, or (in a ring that was exactly full) the header of last
    /// lap's record at the same index, which the producer has not written over yet.
    Empty,
    /// Neither.
    Other,
}

impl Lap {
    #[inline]
    fn classify(&self, raw: u64) -> Word {
        let rh = RecordHeader::from_word(raw);
        let header = matches!(rh.kind(), TYPE_MSG | TYPE_PAD);
        if header && rh.tag() == lap_tag(self.lap) {
            Word::Record(rh)
        } else if raw == self.free || (header && rh.tag() == lap_tag(self.lap.wrapping_sub(1))) {
            Word::Empty
        } else {
            Word::Other
        }
    }
}

/// The bytes a record of this lap at data-area index `idx` takes: a message's record, or for
/// padding the rest of the data area (as written, not yet validated).
fn span(geo: &Geometry, rh: RecordHeader, idx: usize) -> usize {
    if rh.kind() == TYPE_MSG {
        record_size(rh.len as usize)
    } else {
        geo.capacity as usize - idx
    }
}

/// The end of the published records of an SPSC ring, walking from `start` (the stored tail,
/// or the consumer position `head` if that is further): the first position whose word is not a
/// record of its lap (the terminator, or in a full ring the consumer's next record, one lap
/// before). More than `start` only after a producer died between its publishing store and its
/// store of `tail`. `word_at(index)` reads the record word at a data-area index. Bounded: one
/// lap of records at most; `head` and `start` must have passed `config::check_positions`.
pub(crate) fn published_end(
    geo: &Geometry,
    head: u64,
    start: u64,
    word_at: impl Fn(usize) -> u64,
) -> Result<u64, CorruptError> {
    let mut t = start;
    let mut lap = Lap::new(geo, t);
    for _ in 0..=geo.capacity / 8 {
        let idx = (t & geo.mask) as usize;
        let raw = word_at(idx);
        let size = match lap.at(geo, t).classify(raw) {
            _ if t - head == geo.capacity => return Ok(t), // full
            Word::Empty => return Ok(t),
            Word::Record(rh) => span(geo, rh, idx),
            Word::Other => break,
        };
        if size > geo.capacity as usize - idx || t + size as u64 - head > geo.capacity {
            break;
        }
        t += size as u64;
    }
    Err(corrupt(
        "record word",
        word_at((t & geo.mask) as usize),
        t,
        "a record header, or the terminator (this lap's free word) within one lap",
    ))
}

/// Bytes of the terminator: the free word the producer writes past the records it publishes.
const TERMINATOR: u64 = 8;

#[derive(Debug)]
struct ProducerState {
    /// Our position: the end of the records written (published or not).
    tail: u64,
    /// The end of the records published: the consumer may read everything before it, and
    /// waits at it on the terminator.
    published: u64,
    /// The record word at `published` and its index, stored last (Release) when the records
    /// written after `published` are published. `None`: nothing written since.
    pending: Option<(usize, u64)>,
    /// A cache of one lap's free word (the lap of the last terminator worked out); always read
    /// through `Lap::at`, which moves it to the lap asked for.
    free: Lap,
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
    /// Our position when we last looked for a producer waiting for room (after a fence), at
    /// most `published`. Until it catches up with `published`, a producer that went to sleep
    /// just as we stored `head` may not have been woken.
    notified: u64,
    /// The free word of the lap at `head`: what the record word there holds until the
    /// producer publishes the next record.
    free: Lap,
    /// Consumed bytes we hold before handing them back on our own (see [`hand_back_at`]).
    hand_back_at: u64,
    /// Bytes handed back between two looks for a waiting producer (a quarter of the ring).
    wake_at: u64,
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
            .field("published", &self.st.published)
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
    /// For a lone message (no padding, nothing else unpublished): its two stores, worked out
    /// when it is claimed. See [`SpscProducer::claim`].
    ready: Option<Ready>,
}

/// The stores that publish one message of `len` bytes at the producer position: the
/// terminator after it (index and word; `None` when the message fills the ring exactly), then
/// the header at the position.
#[derive(Clone, Copy, Debug)]
struct Ready {
    len: usize,
    header: u64,
    terminator: Option<(usize, u64)>,
}

impl<M: Memory> SpscProducer<M> {
    /// Find room for a record of `rec` bytes, reloading the consumer position if needed.
    #[inline(always)]
    fn room(&mut self, rec: usize) -> Result<Spot, SendFail> {
        // The common case inline: the record fits before the end of the data area, in the
        // space last seen free, and the consumer is attached.
        let (geo, st) = (&self.geo, &self.st);
        let idx = (st.tail & geo.mask) as usize;
        if rec <= geo.capacity as usize - idx
            && st.tail + rec as u64 - st.head_cache <= geo.capacity
            && slots::peer(&self.mem, End::Consumer, false) == Peer::Present
        {
            return Ok(Spot { idx, pad: 0, ready: None });
        }
        self.room_slow(rec)
    }

    /// [`room`](SpscProducer::room) in full.
    #[inline(never)]
    fn room_slow(&mut self, rec: usize) -> Result<Spot, SendFail> {
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
        Ok(Spot { idx: if pad > 0 { 0 } else { idx }, pad, ready: None })
    }

    /// Write the record headers and advance our position, without publishing anything yet: the
    /// word at the published end (the consumer waits at it) is kept for [`flush_tail`] to store
    /// last; any other is in space the consumer cannot reach before that store.
    ///
    /// [`flush_tail`]: SpscProducer::flush_tail
    #[inline]
    fn write_record(&mut self, spot: Spot, len: usize) {
        let (mem, geo, st) = (&self.mem, &self.geo, &mut self.st);
        let at = (st.tail & geo.mask) as usize;
        let lap = geo.lap(st.tail);
        let first = if spot.pad > 0 {
            // The message goes to index 0 (`spot.idx`) of the next lap, after padding to the end.
            let msg = RecordHeader::tagged(TYPE_MSG, len as u32, lap + 1);
            mem.record(spot.idx).store(msg.to_word(), Ordering::Relaxed);
            RecordHeader::tagged(TYPE_PAD, (spot.pad - RECORD_HEADER) as u32, lap)
        } else {
            RecordHeader::tagged(TYPE_MSG, len as u32, lap)
        }
        .to_word();
        if st.tail == st.published {
            st.pending = Some((at, first));
        } else {
            mem.record(at).store(first, Ordering::Relaxed);
        }
        st.tail += (spot.pad + record_size(len)) as u64;
    }

    /// Publish everything written so far: the terminator at the new end, then the record word
    /// the consumer waits at (one Release store), then `tail`; then wake a sleeper.
    #[inline]
    fn flush_tail(&mut self) {
        self.publish(true)
    }

    /// [`flush_tail`](SpscProducer::flush_tail), which stores `tail` and wakes a sleeper only
    /// with `store_tail` (without: as a producer killed right after its publishing store).
    #[inline]
    fn publish(&mut self, store_tail: bool) {
        let (mem, geo, st) = (&self.mem, &self.geo, &mut self.st);
        debug_assert_eq!(st.pending.is_some(), st.tail != st.published, "pending iff unpublished records");
        let Some((at, word)) = st.pending.take() else { return };
        // The terminator, where there is room for it. In a ring now exactly full the word at
        // the new end is the header of the consumer's next record, from the lap before, which
        // the consumer takes for "nothing yet" when it gets there, until we write over it.
        if st.tail + TERMINATOR - st.head_cache <= geo.capacity {
            let end = (st.tail & geo.mask) as usize;
            mem.record(end).store(st.free.at(geo, st.tail).free, Ordering::Relaxed);
        }
        // SYNC POINT: Release pairs with the consumer's Acquire load of the record word at its
        // position: the payloads, the other record words and the terminator written before are
        // visible to a consumer that sees this word.
        mem.record(at).store(word, ord!(Release));
        st.published = st.tail;
        if !store_tail {
            return;
        }
        // Release: not needed (no consumer waits on it; a successor producer walks on from it
        // to the real end, and `len` only compares it).
        mem.header().tail.store(st.tail, ord!(Release));
        wait::notify(mem, &mem.header().data_ready);
    }

    /// The end of the published records (see [`published_end`]).
    fn find_end(mem: &M, geo: &Geometry, head: u64, start: u64) -> Result<u64, CorruptError> {
        // A read-modify-write that changes nothing: it reads the newest value of each word, so
        // the walk sees a dead predecessor's last publishing store even where nothing orders
        // it before us (its death is learnt from the kernel, not through the ring).
        // Acquire: not needed (only record headers are read, to find the end; no payload is
        // read on their strength, and our writes beyond the end wait for `head`).
        published_end(geo, head, start, |idx| mem.record(idx).fetch_or(0, ord!(Acquire)))
    }

    /// Room for a payload of `len` bytes, which may be at most the max message size.
    ///
    /// For a lone message the publishing stores are worked out here, before the payload is
    /// written, so that [`commit`](ProducerCore::commit) stores them right after it: the
    /// consumer polls the line the message goes to, and every store to it that comes late
    /// (after the consumer took the line back to look) moves the line once more.
    #[inline(always)]
    fn claim(&mut self, len: usize) -> Result<Spot, SendFail> {
        let mut spot = self.claim_room(len)?;
        let (geo, st) = (&self.geo, &mut self.st);
        if spot.pad == 0 && st.tail == st.published {
            let end = st.tail + record_size(len) as u64;
            let terminator = (end + TERMINATOR - st.head_cache <= geo.capacity)
                .then(|| ((end & geo.mask) as usize, st.free.at(geo, end).free));
            let header = RecordHeader::tagged(TYPE_MSG, len as u32, geo.lap(st.tail)).to_word();
            spot.ready = Some(Ready { len, header, terminator });
        }
        Ok(spot)
    }

    /// Room for a payload of `len` bytes, for a record of a batch (published by the batch's
    /// one store, so with nothing worked out in advance).
    #[inline(always)]
    fn claim_room(&mut self, len: usize) -> Result<Spot, SendFail> {
        self.geo.check_len(len)?;
        self.room(record_size(len))
    }

    /// Publish the record of `len` bytes at `spot`: with the stores worked out at claim if
    /// there are any for this length, else as a batch would. `store_tail` as in [`publish`].
    ///
    /// [`publish`]: SpscProducer::publish
    #[inline(always)]
    fn commit_with(&mut self, spot: Spot, len: usize, store_tail: bool) {
        match spot.ready {
            Some(ready) if ready.len == len => self.publish_ready(spot, ready, store_tail),
            _ => {
                self.write_record(spot, len);
                self.publish(store_tail);
            }
        }
    }

    /// Publish a lone message claimed with its stores worked out (see [`claim`]), as
    /// [`write_record`] and [`flush_tail`] would.
    ///
    /// [`claim`]: SpscProducer::claim
    /// [`write_record`]: SpscProducer::write_record
    /// [`flush_tail`]: SpscProducer::flush_tail
    #[inline(always)]
    fn publish_ready(&mut self, spot: Spot, ready: Ready, store_tail: bool) {
        let (mem, st) = (&self.mem, &mut self.st);
        debug_assert!(st.pending.is_none() && st.tail == st.published && spot.pad == 0);
        if let Some((end, word)) = ready.terminator {
            mem.record(end).store(word, Ordering::Relaxed);
        }
        // SYNC POINT: Release, as in `publish`: the payload and the terminator are visible to
        // a consumer that sees this header.
        mem.record(spot.idx).store(ready.header, ord!(Release));
        st.tail += record_size(ready.len) as u64;
        st.published = st.tail;
        if !store_tail {
            return; // as a producer killed right after its publishing store (the test hook)
        }
        // Release: not needed (as in `publish`).
        mem.header().tail.store(st.tail, ord!(Release));
        wait::notify(mem, &mem.header().data_ready);
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
        let stored = h.tail.load(Ordering::Relaxed);
        // The stored tail may trail what was published (see the module docs): the consumer may
        // even be past it. Start from the further of the two and walk to the terminator.
        let tail = config::check_positions(head, stored.max(head), geo.capacity)
            .and_then(|()| Self::find_end(&mem, &geo, head, stored.max(head)));
        let tail = match tail {
            Ok(t) => t,
            Err(e) => {
                slots::release_slot(mem.slot(0), &me);
                return Err(e.into());
            }
        };
        if tail != stored {
            // Release: not needed (see `flush_tail`).
            h.tail.store(tail, ord!(Release));
        }
        let st = ProducerState {
            tail,
            published: tail,
            pending: None,
            free: Lap::new(&geo, tail),
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

    #[inline(always)]
    fn try_claim(&mut self, len: usize) -> Result<Spot, SendFail> {
        self.claim(len)
    }

    fn consumer_gone(&mut self, check_alive: bool) -> Option<SendStop> {
        slots::consumer_gone(&self.mem, self.st.consumer_at_attach, check_alive)
    }

    fn payload_index(spot: &Spot) -> usize {
        spot.idx
    }

    #[inline(always)]
    fn commit(&mut self, spot: Spot, len: usize) {
        self.commit_with(spot, len, true);
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
            match core.claim_room(bytes.len()) {
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

    /// Test hook: send `msg` as a producer killed between its publishing store and its store of
    /// `tail` does: the record is published, the stored tail stays behind it. Forget the
    /// producer afterwards (`std::mem::forget`), as a dead one is never dropped.
    #[doc(hidden)]
    pub fn try_send_leaving_tail_behind(&mut self, msg: &[u8]) -> Result<(), TrySendError<()>> {
        let core = &mut self.core;
        let spot = core.claim(msg.len()).map_err(|e| TrySendError::new(e, ()))?;
        core.mem.copy_in(spot.idx, 0, msg);
        core.commit_with(spot, msg.len(), false); // the stores a real send makes, less `tail`
        Ok(())
    }

    /// Write several messages in place and publish them together: each
    /// [`BatchWriter::push`] writes one message directly into the ring, and
    /// [`BatchWriter::commit`] publishes all of them with one store. Dropping the writer without
    /// committing sends none of them.
    pub fn write_batch(&mut self) -> BatchWriter<'_, M> {
        let (start, pending) = (self.core.st.tail, self.core.st.pending);
        BatchWriter { producer: &mut self.core, start, pending, count: 0, buf: Vec::new() }
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
    /// The publishing word pending before the batch (written, unpublished records left by a
    /// leaked batch or a panic in `send_batch`), restored with `start`.
    pending: Option<(usize, u64)>,
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
    #[inline]
    pub fn push(&mut self, len: usize, fill: impl FnOnce(&mut [u8])) -> Result<(), TrySendError<()>> {
        let p = &mut *self.producer;
        let spot = p.claim_room(len).map_err(|e| TrySendError::new(e, ()))?;
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
    #[inline]
    pub unsafe fn push_unchecked(
        &mut self,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<(), TrySendError<()>> {
        let p = &mut *self.producer;
        let spot = p.claim_room(len).map_err(|e| TrySendError::new(e, ()))?;
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
        self.pending = self.producer.st.pending;
        n
    }
}

impl<M: Memory> Drop for BatchWriter<'_, M> {
    fn drop(&mut self) {
        // Not committed: forget what was written (it was never published: the terminator at
        // `start` is still there, and the consumer reads nothing past it).
        self.producer.st.tail = self.start;
        self.producer.st.pending = self.pending;
    }
}

// ---------------------------------------------------------------------------------------------
// Consumer
// ---------------------------------------------------------------------------------------------

/// How many consumed bytes the consumer may hold before it hands them back on its own: a
/// quarter of the ring, but never so many that a producer facing a ring that is otherwise empty
/// could lack room for a largest message (with its padding, up to two largest records; so with
/// the default max message, none). So a consumer that has read everything and then does
/// something else for a long time never holds space a producer needs: the producer finds room
/// with no wake-up. A consumer hands back everything before it sleeps, on `flush`, at the end
/// of a batch and on close.
fn hand_back_at(geo: &Geometry) -> u64 {
    let largest = 2 * record_size(geo.max_message) as u64;
    (geo.capacity / 4).min(geo.capacity.saturating_sub(largest))
}

/// After a message: hand back what we consumed if we hold [`hand_back_at`] bytes or more (one
/// Release store), and wake a producer waiting for room if it announced itself, or in any case
/// every quarter of the ring ([`publish_head`]: a fence and a look at the announcement).
///
/// The look is the costly part (a fence per message took up to a tenth of a round trip), so
/// the stores between two looks are plain. A producer that announced itself just as one of
/// them was made may then not be woken by it; it is woken at the next message (this Relaxed
/// load sees its flag: the flag is only a hint here), at the next quarter ring (the fence), or
/// by [`hand_back_caught_up`] when we find the ring empty, before we sleep, on close, on `len`
/// and `is_empty`, and when a message is left in the ring for a buffer too small or a size
/// that does not match (a `flush`). Only a consumer that stops calling the ring at that very
/// moment leaves it asleep, for one sleep slice at most ([`wait::SLICE`]): it then finds the
/// room by itself.
#[inline]
fn hand_back_if_due<M: Memory>(mem: &M, st: &mut ConsumerState) {
    if st.head - st.notified >= st.wake_at
        || (st.head != st.notified && mem.header().space_ready.waiters.load(Ordering::Relaxed) != 0)
    {
        publish_head(mem, st);
    } else if st.head != st.published && st.head - st.published >= st.hand_back_at {
        st.published = st.head;
        // SYNC POINT: Release, as in `publish_head`.
        mem.header().head.store(st.head, ord!(Release));
    }
}

/// When the ring is empty: [`hand_back_if_due`], and if a store of `head` has not been
/// followed by a look for a waiting producer yet, hand back everything and look now (the
/// consumer waits anyway).
#[inline]
fn hand_back_caught_up<M: Memory>(mem: &M, st: &mut ConsumerState) {
    hand_back_if_due(mem, st);
    if st.published != st.notified {
        publish_head(mem, st);
    }
}

/// Hand back everything (one Release store) and wake a producer waiting for room.
fn publish_head<M: Memory>(mem: &M, st: &mut ConsumerState) {
    if st.head != st.published {
        st.published = st.head;
        // SYNC POINT: Release pairs with the producer's Acquire load of head: we are done
        // reading the released records before the producer may overwrite them.
        mem.header().head.store(st.head, ord!(Release));
    }
    if st.notified != st.head {
        st.notified = st.head;
        wait::notify(mem, &mem.header().space_ready);
    }
}

impl<M: Memory> SpscConsumer<M> {
    /// Find the next message without consuming it. `Ok(None)`: the ring is empty.
    ///
    /// Bounded: at most two record words, since padding is never at index 0.
    #[inline(always)]
    fn next(&mut self) -> Result<Option<Next>, CorruptError> {
        let (mem, geo, st) = (&self.mem, &self.geo, &mut self.st);
        let idx = (st.head & geo.mask) as usize;
        // SYNC POINT: Acquire pairs with the producer's Release store of this word in
        // `publish`: the record's payload (and the words after it up to the terminator) are
        // visible once its header is.
        let raw = mem.record(idx).load(ord!(Acquire));
        // The two common cases first, inline: a message of this lap inside the data area, or
        // this lap's terminator. Everything else (padding, the exactly-full case, a corrupt
        // word) is left to `next_from`, which classifies the same word again in full.
        let rh = RecordHeader::from_word(raw);
        let len = rh.len as usize;
        if rh.kind() == TYPE_MSG
            && rh.tag() == lap_tag(geo.lap(st.head))
            && len <= geo.max_message
            && idx + record_size(len) <= geo.capacity as usize
        {
            return Ok(Some(Next { idx, len }));
        }
        if raw == st.free.at(geo, st.head).free {
            return Ok(None);
        }
        self.next_from(raw)
    }

    /// [`next`](SpscConsumer::next) from the record word `raw` just read at our position, for
    /// the cases it does not take inline.
    #[cold]
    #[inline(never)]
    fn next_from(&mut self, mut raw: u64) -> Result<Option<Next>, CorruptError> {
        let (mem, geo, st) = (&self.mem, &self.geo, &mut self.st);
        loop {
            let idx = (st.head & geo.mask) as usize;
            let rh = match st.free.at(geo, st.head).classify(raw) {
                Word::Record(rh) => rh,
                Word::Empty => return Ok(None),
                Word::Other => {
                    return Err(corrupt(
                        "record word",
                        raw,
                        st.head,
                        "this lap's free word or a record header of this lap",
                    ))
                }
            };
            let len = rh.len as usize;
            if rh.kind() == TYPE_MSG {
                if len > geo.max_message || idx + record_size(len) > geo.capacity as usize {
                    return Err(corrupt(
                        "record length",
                        len as u64,
                        st.head,
                        "at most the ring's max message, inside the data area",
                    ));
                }
                return Ok(Some(Next { idx, len }));
            }
            st.head += geo.padding_size(idx, len, st.head)? as u64;
            let idx = (st.head & geo.mask) as usize;
            // Acquire: not needed (this word was written before the store that published the
            // padding, and a load of ours with Acquire has already seen that store or a later one).
            raw = mem.record(idx).load(ord!(Acquire));
        }
    }

    /// [`try_next`](ConsumerCore::try_next) when the ring was empty: hand back what is due,
    /// then see whether the producer is still there.
    #[inline(never)]
    fn try_next_empty(&mut self) -> Result<Next, RecvFail> {
        hand_back_caught_up(&self.mem, &mut self.st);
        let check = self.st.liveness.due();
        match self.producer_gone(check) {
            None => Err(RecvFail::Empty),
            // The producer may have sent its last message just before it closed.
            Some(gone) => self.next()?.ok_or(RecvFail::Stop(gone)),
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
        let free = Lap::new(&geo, head);
        let hand_back_at = hand_back_at(&geo);
        let st = ConsumerState {
            head,
            published: head,
            notified: head,
            free,
            hand_back_at,
            wake_at: geo.capacity / 4,
            me,
            liveness: LivenessClock::default(),
        };
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

    /// From our position to the stored tail, and never less than the record at our position:
    /// the tail is stored after the records are published (and never, by a producer killed
    /// in between), so it may trail them.
    fn len_bytes(&self) -> usize {
        let (mem, geo, st) = (&self.mem, &self.geo, &self.st);
        // A consumer may poll `is_empty` instead of receiving: it still looks for a producer
        // asleep for room that a plain store of `head` may have missed (see
        // `hand_back_if_due`). (`&self`: `notified` stays behind, so every such call looks,
        // until the next receive.)
        if st.published != st.notified {
            wait::notify(mem, &mem.header().space_ready);
        }
        // Acquire: not needed (a byte count for the caller, no record is read after it).
        let tail = mem.header().tail.load(ord!(Acquire));
        let stored = tail.saturating_sub(st.head).min(geo.capacity);
        let idx = (st.head & geo.mask) as usize;
        // Relaxed: only looked at (`next` reads it again with Acquire).
        let at_head = match Lap::new(geo, st.head).classify(mem.record(idx).load(Ordering::Relaxed)) {
            Word::Record(rh) => span(geo, rh, idx),
            _ => 0,
        };
        (stored as usize).max(at_head.min(geo.capacity as usize))
    }

    #[inline(always)]
    fn try_next(&mut self) -> Result<Next, RecvFail> {
        match self.next() {
            Ok(Some(n)) => Ok(n),
            Ok(None) => self.try_next_empty(),
            Err(e) => Err(e.into()),
        }
    }

    fn wait_step(&mut self, _deadline: Option<Instant>) -> Result<Option<Next>, RecvStop> {
        let n = self.next()?;
        if n.is_none() {
            hand_back_caught_up(&self.mem, &mut self.st);
        }
        Ok(n)
    }

    /// Asked before every sleep of a blocking receive: everything consumed is handed back
    /// first, so that we never sleep holding space (a producer waiting for it is woken).
    fn producers_gone(&mut self, check_alive: bool) -> Option<RecvStop> {
        publish_head(&self.mem, &mut self.st);
        self.producer_gone(check_alive)
    }

    /// Mark a record consumed. The space goes back to the producer as [`hand_back_if_due`]
    /// says (see also [`Consumer::flush`](crate::Consumer::flush)): one fence and wake-up
    /// check per quarter ring instead of per message.
    #[inline(always)]
    fn consume(&mut self, n: Next) {
        self.st.head += record_size(n.len) as u64;
        hand_back_if_due(&self.mem, &mut self.st);
    }

    #[inline(always)]
    fn advance(&mut self, n: Next) {
        self.st.head += record_size(n.len) as u64;
    }

    #[inline(always)]
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
