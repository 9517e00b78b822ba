//! Broadcast ring: one producer, up to `max_subscribers` subscribers, each receiving every
//! message published after it joined, in order, whole. The protocol core behind
//! [`broadcast::Producer`](Producer) and [`broadcast::Subscriber`](Subscriber).
//!
//! ```
//! use std::sync::Arc;
//! use shm_core::Region;
//! use shm_ring::{broadcast, RingConfig};
//!
//! let config = RingConfig::broadcast(1 << 16, 4);
//! let region = Arc::new(Region::anonymous(config.region_len())?);
//! let mut producer = broadcast::Producer::create(region.clone(), &config)?;
//! let mut a = broadcast::Subscriber::open(region.clone())?;
//! let mut b = broadcast::Subscriber::open(region)?;
//! producer.send(b"to everyone")?;
//! let mut buf = Vec::new();
//! a.recv(&mut buf)?;
//! assert_eq!(buf, b"to everyone");
//! b.recv(&mut buf)?;
//! assert_eq!(buf, b"to everyone");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Protocol
//! Records are laid out as in an SPSC ring (lap-tagged record words, padding, and the
//! *terminator*, the lap's free word, past the last record published), except that a message
//! record's header is two words: the record word, then the message's sequence number (0 for
//! the first message of the ring). Each subscriber waits on the record word at its own
//! position, as the SPSC consumer does, and stores its position (`cursor`, on its own line of
//! the subscriber table) when it hands space back. The producer never reads a record a
//! subscriber wrote, only their cursors.
//!
//! **Reservations.** The producer writes only below `reserved`, which it raises an eighth of
//! the ring at a time. Before it raises it to `E` it walks `oldest` (the first record that is
//! still whole, published in `head`) past `E - capacity`, stores `head`, then `reserved`
//! (Release), then issues a SeqCst fence; only then does it write past the old reservation.
//! With the **Block** policy `E` is at most the slowest live subscriber's cursor plus the
//! capacity, and after the fence the producer reads every cursor again and keeps `E` within the
//! slowest of them.
//!
//! **Joining.** A subscriber takes a free slot, stores a cursor no further than the `head` it
//! read before, issues a SeqCst fence, reads `head` again, and starts at or after that second
//! `head`. The two fences make a store-buffer handshake (as in `wait.rs`): either the
//! producer's second look at the cursors sees the first cursor (and keeps within it), or the
//! subscriber's second read sees the producer's `head`: in both cases nothing the subscriber
//! will read is written over.
//!
//! **Overwrite.** The producer never waits. A subscriber copies each message into a buffer of
//! its own, then (Acquire fence) reads `reserved`: if it is no further than the message's
//! position plus the capacity, no byte of the message can have been written over (any store
//! the copy saw from a later lap was made after the producer's fence that follows its store of
//! `reserved`, so the subscriber's fence makes that store visible). Otherwise it was overtaken:
//! it moves to `head` and reports how many messages it lost (from the sequence numbers) before
//! it delivers the oldest one left. Since the producer reserves an eighth of the ring ahead of
//! what it writes, a subscriber more than about seven eighths of the ring behind counts as
//! overtaken (the messages there are no longer guaranteed whole), and history keeps as much. So it never hands out a torn message, and a guard on such
//! a ring lends that checked copy, not the ring's bytes.
//!
//! **Liveness.** A subscriber that closes stops holding the producer back at once; one that
//! dies does once the producer finds positive evidence of it (its slot lock released, as for
//! the other kinds), which a blocked producer looks for every sleep slice. The producer never
//! fails for want of subscribers: with none, it writes over the oldest messages (kept for the
//! `history` of later subscribers).

use std::time::Instant;

use crate::config::{Geometry, Lap};
use crate::error::{corrupt, AttachError, CorruptError, RecvFail, RecvStop, Role, SendFail, SendStop};
use crate::handshake::AttachOptions;
use crate::identity::{self, Owner};
use crate::layout::{broadcast_record_size, lap_tag, Policy, RecordHeader, MAX_POSITION, TYPE_MSG, TYPE_PAD};
use crate::memory::{DefaultMemory, Memory};
use crate::protocol::{Broadcast, ConsumerCore, Core, Next, ProducerCore, RingKind};
use crate::slots::{self, End, Held, LivenessClock, Peer};
use crate::sync::{fence, Ordering};
use crate::wait;

impl RingKind for Broadcast {
    const KIND: crate::Kind = crate::Kind::Broadcast;
    type Producer<M: Memory> = BroadcastProducer<M>;
    type Consumer<M: Memory> = BroadcastSubscriber<M>;
}

/// The sending end of a broadcast ring.
pub type Producer<M = DefaultMemory> = crate::Producer<Broadcast, M>;
/// A receiving end of a broadcast ring: one of up to `max_subscribers`.
pub type Subscriber<M = DefaultMemory> = crate::Consumer<Broadcast, M>;
/// Space reserved in a broadcast ring ([`crate::Grant`]).
pub type Grant<'a, M = DefaultMemory> = crate::Grant<'a, Broadcast, M>;
/// A message read from a broadcast ring ([`crate::ReadGuard`]).
pub type ReadGuard<'a, M = DefaultMemory> = crate::ReadGuard<'a, Broadcast, M>;

/// Bytes of the terminator the producer writes past what it publishes.
const TERMINATOR: u64 = 8;

/// How far the producer raises its reservation at a time: an eighth of the ring.
fn chunk(geo: &Geometry) -> u64 {
    geo.capacity / 8
}

/// What a record word read at a position says (see `spsc::Word`).
enum Word {
    /// A message of this lap: its payload length.
    Message(usize),
    /// Padding of this lap: the bytes to skip.
    Padding(usize),
    /// Nothing yet: the terminator (or a record of the lap before).
    Empty,
    /// Anything else (a record that does not fit, a foreign word): corrupt, or overwritten.
    Other,
}

/// Classify the record word `raw` found at `position` (data index `idx`), in `lap`.
#[inline]
fn classify(geo: &Geometry, lap: &Lap, raw: u64, idx: usize) -> Word {
    let rh = RecordHeader::from_word(raw);
    let kind = rh.kind();
    let header = matches!(kind, TYPE_MSG | TYPE_PAD);
    if header && rh.tag() == lap_tag(lap.lap) {
        let len = rh.len as usize;
        let room = geo.capacity as usize - idx;
        if kind == TYPE_MSG {
            if len <= geo.max_message && broadcast_record_size(len) <= room {
                return Word::Message(len);
            }
        } else if idx != 0 && len + 8 == room && room < broadcast_record_size(geo.max_message) {
            return Word::Padding(room);
        }
        Word::Other
    } else if raw == lap.free || (header && rh.tag() == lap_tag(lap.lap.wrapping_sub(1))) {
        Word::Empty
    } else {
        Word::Other
    }
}

/// The protocol state of a broadcast producer.
#[doc(hidden)]
pub struct BroadcastProducer<M: Memory> {
    mem: M,
    geo: Geometry,
    st: ProducerState,
}

#[derive(Debug)]
struct ProducerState {
    /// The end of the records written (published or not).
    tail: u64,
    /// The end of the records published (the terminator is there).
    published: u64,
    /// The record word at `published`, stored last (Release) at the next publish.
    pending: Option<(usize, u64)>,
    /// The free word of the lap at the end (the terminator).
    free: Lap,
    /// The sequence number of the next message.
    seq: u64,
    /// We write only below this (see the module docs).
    reserved: u64,
    /// The highest reservation stored to the header (never lowered).
    reserved_stored: u64,
    /// The first record still whole: published in `head`.
    oldest: u64,
    /// The end of the records a predecessor wrote (our position at attach): `advance_oldest`
    /// reads those with read-modify-writes, as `find_end` does.
    inherited: u64,
    /// Per subscriber slot: the owner word of a holder found dead, skipped while unchanged.
    dead: Vec<u64>,
    /// The end the last reservation that failed needed (subscribers behind it hold us back).
    want: u64,
    me: Held,
    liveness: LivenessClock,
}

impl<M: Memory> std::fmt::Debug for BroadcastProducer<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("broadcast::Producer")
            .field("capacity", &self.geo.capacity)
            .field("max_message", &self.geo.max_message)
            .field("policy", &self.geo.policy)
            .field("tail", &self.st.tail)
            .field("seq", &self.st.seq)
            .finish()
    }
}

/// Where the next record goes (its data index) and the padding before it (0: none).
#[doc(hidden)]
#[derive(Clone, Copy, Debug)]
pub struct Spot {
    idx: usize,
    pad: usize,
}

/// The live subscribers' slowest cursor, if any subscriber is attached and not known dead.
/// Cursors ahead of `published` hold nothing back and count as `published`. (The second look
/// of a reservation comes after the SeqCst fence of the join handshake: see `reserve`.)
fn slowest<M: Memory>(mem: &M, geo: &Geometry, dead: &[u64], published: u64) -> Option<u64> {
    let mut min: Option<u64> = None;
    for (i, &dead_word) in dead.iter().enumerate().take(geo.subscribers as usize) {
        let e = mem.subscriber(i);
        // Acquire: not needed (only compared; the cursor's Acquire below orders what matters).
        let w = e.slot.owner.load(ord!(Acquire));
        if Owner::decode(w).state != identity::ATTACHED || w == dead_word {
            continue;
        }
        // SYNC POINT: Acquire pairs with the subscriber's Release stores of its cursor: the
        // space behind it is no longer read. (Weakened alone it is not caught: in the models
        // the SeqCst fences of the wake-up handshake order the same stores.)
        let c = e.cursor.load(ord!(Acquire)).min(published);
        min = Some(min.map_or(c, |m| m.min(c)));
    }
    min
}

impl<M: Memory> BroadcastProducer<M> {
    #[inline(always)]
    fn room(&mut self, len: usize) -> Result<Spot, SendFail> {
        self.geo.check_len(len)?;
        let rec = broadcast_record_size(len);
        let (geo, st) = (&self.geo, &self.st);
        let idx = (st.tail & geo.mask) as usize;
        if rec <= geo.capacity as usize - idx && st.tail + rec as u64 + TERMINATOR <= st.reserved {
            return Ok(Spot { idx, pad: 0 });
        }
        self.room_slow(rec)
    }

    #[inline(never)]
    fn room_slow(&mut self, rec: usize) -> Result<Spot, SendFail> {
        let idx = (self.st.tail & self.geo.mask) as usize;
        let contiguous = self.geo.capacity as usize - idx;
        let pad = if rec <= contiguous { 0 } else { contiguous };
        let end = self.st.tail + (pad + rec) as u64 + TERMINATOR;
        if end > self.st.reserved {
            self.reserve(end)?;
        }
        Ok(Spot { idx: if pad > 0 { 0 } else { idx }, pad })
    }

    /// Raise the reservation to at least `end`, or say `Full` (see the module docs).
    fn reserve(&mut self, end: u64) -> Result<(), SendFail> {
        let (mem, geo) = (&self.mem, &self.geo);
        let st = &mut self.st;
        let block = geo.policy == Policy::Block;
        // What we can walk `oldest` to: published records only (unpublished ones of a batch
        // have their first word still pending).
        let mut target = end.max(st.tail + chunk(geo)).min(st.published + geo.capacity);
        if block {
            if let Some(m) = slowest(mem, geo, &st.dead, st.published) {
                target = target.min(m + geo.capacity);
            }
        }
        if target < end {
            return Err(self.full(end));
        }
        advance_oldest(
            mem,
            geo,
            &mut st.oldest,
            st.published,
            target.saturating_sub(geo.capacity),
            st.inherited,
        )?;
        let h = mem.header();
        // SYNC POINT: Release pairs with a joining or overtaken subscriber's Acquire load: the
        // records from there are whole. (The join's ordering is the fence below.)
        h.head.store(st.oldest, ord!(Release));
        if target > st.reserved_stored {
            st.reserved_stored = target;
            // SYNC POINT: Release pairs with an overtaken subscriber's Acquire load of
            // `reserved`: the `head` stored before is visible to it.
            h.reserved.store(target, ord!(Release));
        }
        // SYNC POINT: two roles. Every store into the new reservation comes after this fence,
        // so a subscriber whose copy saw one of them sees `reserved` (its Acquire fence; a
        // Release fence would do). And the producer's half of the join (see the module docs):
        // SeqCst, paired with the joining subscriber's fence, so that either it sees the
        // `head` stored above or the look at the cursors below sees its cursor.
        fence(ord!(SeqCst));
        if block {
            // The second look: a subscriber that joined meanwhile with an earlier cursor
            // holds us within it.
            if let Some(m) = slowest(mem, geo, &st.dead, st.published) {
                target = target.min(m + geo.capacity);
            }
        }
        if target < end {
            // (Our reservation stays: a subscriber that joined during it starts at or after
            // the `head` stored for it.)
            return Err(self.full(end));
        }
        st.reserved = target;
        Ok(())
    }

    /// No room for `end`: look for dead subscribers holding us back when due, then `Full`.
    fn full(&mut self, end: u64) -> SendFail {
        self.st.want = end;
        if self.st.liveness.due() {
            self.find_dead(end);
        }
        SendFail::Full
    }

    /// Mark every attached subscriber whose cursor holds us back from `end` and whose process
    /// is positively gone as dead (skipped from now on).
    fn find_dead(&mut self, end: u64) {
        let (mem, geo, st) = (&self.mem, &self.geo, &mut self.st);
        for i in 0..geo.subscribers as usize {
            let e = mem.subscriber(i);
            let w = e.slot.owner.load(ord!(Acquire));
            if Owner::decode(w).state != identity::ATTACHED || w == st.dead[i] {
                continue;
            }
            // Relaxed: only compared.
            let c = e.cursor.load(Ordering::Relaxed).min(st.published);
            if c + geo.capacity < end && slots::holder_gone(mem, End::Subscriber(i), w) {
                st.dead[i] = w;
            }
        }
    }

    /// Write the record headers (and the message's sequence number) and advance our position
    /// without publishing: the word at `published` is kept for `publish` to store last.
    #[inline]
    fn write_record(&mut self, spot: Spot, len: usize) {
        let (mem, geo, st) = (&self.mem, &self.geo, &mut self.st);
        let at = (st.tail & geo.mask) as usize;
        let lap = geo.lap(st.tail);
        let msg_lap = if spot.pad > 0 { lap + 1 } else { lap };
        let msg = RecordHeader::tagged(TYPE_MSG, len as u32, msg_lap).to_word();
        mem.record(spot.idx + 8).store(st.seq, Ordering::Relaxed);
        // Wrapping: the count came from shared memory (a successor's start), which bounds nothing.
        st.seq = st.seq.wrapping_add(1);
        let first = if spot.pad > 0 {
            mem.record(spot.idx).store(msg, Ordering::Relaxed);
            RecordHeader::tagged(TYPE_PAD, (spot.pad - 8) as u32, lap).to_word()
        } else {
            msg
        };
        if st.tail == st.published {
            st.pending = Some((at, first));
        } else {
            mem.record(at).store(first, Ordering::Relaxed);
        }
        st.tail += (spot.pad + broadcast_record_size(len)) as u64;
    }

    /// Publish what was written: the terminator at the new end, the pending record word
    /// (Release), then `next_seq` and `tail`, and wake sleeping subscribers.
    #[inline]
    fn publish(&mut self, store_tail: bool) {
        let (mem, geo, st) = (&self.mem, &self.geo, &mut self.st);
        let Some((at, word)) = st.pending.take() else { return };
        let end = (st.tail & geo.mask) as usize;
        mem.record(end).store(st.free.at(geo, st.tail).free, Ordering::Relaxed);
        // SYNC POINT: Release pairs with the subscribers' Acquire load of the record word at
        // their position: the payloads, the other record words and the terminator are visible.
        mem.record(at).store(word, ord!(Release));
        st.published = st.tail;
        if !store_tail {
            return;
        }
        let h = mem.header();
        // Release (both): not needed for reading records (no subscriber waits on them); a
        // joining subscriber and a successor producer start from them.
        h.next_seq.store(st.seq, ord!(Release));
        h.tail.store(st.tail, ord!(Release));
        wait::notify(mem, &h.data_ready);
    }

    /// Messages published so far (the sequence number of the next one).
    fn sent(&self) -> u64 {
        self.st.seq
    }
}

/// Walk `oldest` over whole records until it is at or past `to` (at most `published`).
/// Bounded: every step moves at least 8 bytes, and `to - oldest <= capacity`. Records below
/// `inherited` were written by a predecessor.
fn advance_oldest<M: Memory>(
    mem: &M,
    geo: &Geometry,
    oldest: &mut u64,
    published: u64,
    to: u64,
    inherited: u64,
) -> Result<(), CorruptError> {
    let mut lap = Lap::new(geo, *oldest);
    while *oldest < to.min(published) {
        let o = *oldest;
        let idx = (o & geo.mask) as usize;
        // Relaxed: our own record words; a predecessor's (possibly dead: see `attach`) read
        // with a read-modify-write that changes nothing, for the newest value.
        let raw = if o < inherited {
            mem.record(idx).fetch_or(0, Ordering::Relaxed)
        } else {
            mem.record(idx).load(Ordering::Relaxed)
        };
        let size = match classify(geo, lap.at(geo, o), raw, idx) {
            Word::Message(len) => broadcast_record_size(len),
            Word::Padding(size) => size,
            Word::Empty | Word::Other => {
                return Err(corrupt(
                    "record word",
                    raw,
                    o,
                    "a published record of this lap (the oldest records)",
                ))
            }
        };
        if o + size as u64 > published {
            return Err(corrupt(
                "record length",
                size as u64,
                o,
                "a record ending at or before the published end",
            ));
        }
        *oldest = o + size as u64;
    }
    Ok(())
}

/// What [`walk`] found.
struct Walked {
    /// Where it stopped: the published end, or the message it was asked to stop at.
    end: u64,
    /// Messages walked over.
    messages: u64,
    /// The sequence number after the last message walked over.
    seq_after: Option<u64>,
    /// The sequence number of the message it stopped at, if it stopped at one.
    seq_at: Option<u64>,
}

/// Walk the published records from `from` (a record boundary) to the end, or to the message
/// after `stop_after` messages. Bounded by one lap.
fn walk<M: Memory>(mem: &M, geo: &Geometry, from: u64, stop_after: u64) -> Result<Walked, CorruptError> {
    let mut w = Walked { end: from, messages: 0, seq_after: None, seq_at: None };
    let mut lap = Lap::new(geo, from);
    for _ in 0..=geo.capacity / 8 {
        let t = w.end;
        let idx = (t & geo.mask) as usize;
        // Acquire: pairs with the producer's Release stores of record words.
        let raw = mem.record(idx).load(ord!(Acquire));
        match classify(geo, lap.at(geo, t), raw, idx) {
            Word::Empty => return Ok(w),
            Word::Message(len) => {
                // Relaxed: ordered by the Acquire above (as the payload).
                let seq = mem.record(idx + 8).load(Ordering::Relaxed);
                if w.messages == stop_after {
                    w.seq_at = Some(seq);
                    return Ok(w);
                }
                w.messages += 1;
                w.seq_after = Some(seq.wrapping_add(1));
                w.end = t + broadcast_record_size(len) as u64;
            }
            Word::Padding(size) => w.end = t + size as u64,
            Word::Other => {
                return Err(corrupt("record word", raw, t, "a record or the terminator (joining)"))
            }
        }
    }
    Err(corrupt("record word", 0, w.end, "the terminator within one lap (joining)"))
}

/// The end of the published records from `start` (the stored tail, a record boundary at most
/// a capacity past `oldest`, both checked by the caller), and the sequence number after the
/// last message there (`seq` if none): walking record words with `word_at(index)` until one
/// that is not a record of its lap, never further than a capacity past `oldest`. More than
/// `start` only after a producer died between its publishing store and its store of `tail`.
pub(crate) fn published_end(
    geo: &Geometry,
    oldest: u64,
    start: u64,
    seq: u64,
    word_at: impl Fn(usize) -> u64,
) -> Result<(u64, u64), CorruptError> {
    let (mut t, mut seq) = (start, seq);
    let mut lap = Lap::new(geo, t);
    for _ in 0..=geo.capacity / 8 {
        let idx = (t & geo.mask) as usize;
        let raw = word_at(idx);
        let size = match classify(geo, lap.at(geo, t), raw, idx) {
            Word::Empty => return Ok((t, seq)),
            Word::Message(len) => {
                seq = word_at(idx + 8).wrapping_add(1);
                broadcast_record_size(len)
            }
            Word::Padding(size) => size,
            Word::Other => break,
        };
        if t + size as u64 - oldest > geo.capacity {
            break; // records of more than a lap: corrupt
        }
        t += size as u64;
    }
    Err(corrupt(
        "record word",
        word_at((t & geo.mask) as usize),
        t,
        "a record header, or the terminator within one lap",
    ))
}

/// Messages between the record boundaries `from` and `to` (`None` if the words there are not
/// records of their laps), for `status`.
pub(crate) fn messages_between(
    geo: &Geometry,
    from: u64,
    to: u64,
    word_at: impl Fn(usize) -> u64,
) -> Option<u64> {
    let (mut t, mut n) = (from, 0);
    let mut lap = Lap::new(geo, t);
    while t < to && to - from <= geo.capacity {
        let idx = (t & geo.mask) as usize;
        match classify(geo, lap.at(geo, t), word_at(idx), idx) {
            Word::Message(len) => {
                n += 1;
                t += broadcast_record_size(len) as u64;
            }
            Word::Padding(size) => t += size as u64,
            Word::Empty | Word::Other => return None,
        }
    }
    (t == to).then_some(n)
}

/// The end of the published records from `start`, and the sequence number after the last
/// message there (`seq` if none): walking record words until one that is not a record of its
/// lap. Bounded by one lap.
fn find_end<M: Memory>(
    mem: &M,
    geo: &Geometry,
    oldest: u64,
    start: u64,
    seq: u64,
) -> Result<(u64, u64), CorruptError> {
    // A read-modify-write that changes nothing, as in `spsc::find_end`: the newest value.
    // Acquire: not needed (only headers and sequence numbers are read).
    published_end(geo, oldest, start, seq, |idx| mem.record(idx).fetch_or(0, ord!(Acquire)))
}

impl<M: Memory> Core<M> for BroadcastProducer<M> {
    fn attach(mem: M, geo: Geometry) -> Result<Self, AttachError> {
        let (me, _generation) = slots::claim_slot(&mem, End::Producer(0), Role::Producer)?;
        let h = mem.header();
        // A producer that died asleep may have left its announcement; only we wait here.
        h.space_ready.waiters.store(0, Ordering::Relaxed);
        // Our predecessor's last values: a closed one's are ordered before us by the slot claim
        // (its Acquire pairs with `release_slot`'s Release); a dead one's death was learnt from
        // the kernel, which orders nothing of the ring, so read-modify-writes that change
        // nothing read the newest values (as `find_end` does for the records).
        // Relaxed: as said.
        let oldest = h.head.fetch_or(0, Ordering::Relaxed);
        let stored = h.tail.fetch_or(0, Ordering::Relaxed);
        let seq = h.next_seq.fetch_or(0, Ordering::Relaxed);
        let reserved = h.reserved.fetch_or(0, Ordering::Relaxed);
        let found = crate::config::check_positions(oldest, stored, geo.capacity).and_then(|()| {
            // A reservation is never more than a capacity past the oldest record (see
            // `reserve`); one further would make every Overwrite subscriber think itself
            // overtaken for good, since we only ever store higher ones.
            if reserved > oldest + geo.capacity {
                return Err(corrupt(
                    "reservation end",
                    reserved,
                    oldest,
                    "at most a capacity past the oldest record",
                ));
            }
            find_end(&mem, &geo, oldest, stored, seq)
        });
        let (tail, seq) = match found {
            Ok(v) => v,
            Err(e) => {
                slots::release_slot(mem.slot(0), &me);
                return Err(e.into());
            }
        };
        if tail != stored {
            h.next_seq.store(seq, ord!(Release));
            h.tail.store(tail, ord!(Release));
        }
        let st = ProducerState {
            tail,
            published: tail,
            pending: None,
            free: Lap::new(&geo, tail),
            seq,
            // Reserve afresh before writing anything (a dead predecessor's reservation says
            // nothing of the subscribers now).
            reserved: tail,
            reserved_stored: reserved,
            inherited: tail,
            oldest,
            dead: vec![0; geo.subscribers as usize],
            want: tail,
            me,
            liveness: LivenessClock::default(),
        };
        Ok(BroadcastProducer { mem, geo, st })
    }

    fn parts(&self) -> (&M, &Geometry) {
        (&self.mem, &self.geo)
    }
}

impl<M: Memory> ProducerCore<M> for BroadcastProducer<M> {
    type Claim = Spot;

    /// Bytes between the slowest live subscriber and our end (Block), or published and kept
    /// (Overwrite: from the oldest record).
    fn len_bytes(&self) -> usize {
        let (mem, geo, st) = (&self.mem, &self.geo, &self.st);
        let from = match geo.policy {
            Policy::Block => slowest(mem, geo, &st.dead, st.published).unwrap_or(st.tail),
            Policy::Overwrite => st.oldest,
        };
        (st.tail - from.min(st.tail)).min(geo.capacity) as usize
    }

    #[inline(always)]
    fn try_claim(&mut self, len: usize) -> Result<Spot, SendFail> {
        self.room(len)
    }

    /// Never `Disconnected`: a broadcast producer goes on whoever listens. With
    /// `check_alive`, subscribers holding it back that are positively dead are dropped (the
    /// next attempt finds the room they held).
    fn consumer_gone(&mut self, check_alive: bool) -> Option<SendStop> {
        if check_alive {
            self.find_dead(self.st.want);
        }
        None
    }

    fn payload_index(spot: &Spot) -> usize {
        spot.idx + 8
    }

    #[inline]
    fn commit(&mut self, spot: Spot, len: usize) {
        self.write_record(spot, len);
        self.publish(true);
    }

    fn abort(&mut self, _spot: Spot) {
        // Nothing was published and our position did not move.
    }
}

/// What only a broadcast producer has.
impl<M: Memory> Producer<M> {
    /// Messages sent so far on this ring (by this producer and the ones before it): the
    /// sequence number the next message gets.
    pub fn sent(&self) -> u64 {
        self.core.sent()
    }

    /// The ring's policy.
    pub fn policy(&self) -> Policy {
        self.core.geo.policy
    }

    /// Send as many messages of `msgs` as fit now and publish them together, with one store
    /// (and one wake-up of sleeping subscribers); returns how many were sent (they are taken
    /// from the iterator; the first that did not fit stays in it).
    ///
    /// Errors only when nothing was sent: the error for the first message (handed back as
    /// `()`: it is still in the iterator).
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use shm_core::Region;
    /// # use shm_ring::{broadcast, RingConfig};
    /// let config = RingConfig::broadcast(4096, 2);
    /// let region = Arc::new(Region::anonymous(config.region_len())?);
    /// let mut p = broadcast::Producer::create(region.clone(), &config)?;
    /// let mut s = broadcast::Subscriber::open(region)?;
    /// let mut msgs = [&b"a"[..], b"bb", b"ccc"].into_iter().peekable();
    /// assert_eq!(p.send_batch(&mut msgs)?, 3);
    /// assert_eq!(s.recv_batch(10, |m| assert!(!m.is_empty()))?, 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_batch<I, T>(
        &mut self,
        msgs: &mut std::iter::Peekable<I>,
    ) -> Result<usize, crate::TrySendError<()>>
    where
        I: Iterator<Item = T>,
        T: AsRef<[u8]>,
    {
        let core = &mut self.core;
        let mut sent = 0;
        while let Some(msg) = msgs.peek() {
            let bytes = msg.as_ref();
            match core.room(bytes.len()) {
                Ok(spot) => {
                    core.mem.copy_in(spot.idx + 8, 0, bytes);
                    core.write_record(spot, bytes.len());
                    msgs.next();
                    sent += 1;
                }
                Err(e) if sent == 0 => return Err(crate::TrySendError::new(e, ())),
                Err(_) => break,
            }
        }
        if sent > 0 {
            core.publish(true);
        }
        Ok(sent)
    }

    /// Test hook: publish a message but leave `tail` and `next_seq` behind, as a producer
    /// killed right after its publishing store would.
    #[doc(hidden)]
    pub fn send_without_tail(&mut self, msg: &[u8]) -> Result<(), SendFail> {
        let spot = self.core.room(msg.len())?;
        self.core.mem.copy_in(spot.idx + 8, 0, msg);
        self.core.write_record(spot, msg.len());
        self.core.publish(false);
        Ok(())
    }
}

impl<M: Memory> Drop for BroadcastProducer<M> {
    fn drop(&mut self) {
        if !self.st.me.is_ours() {
            return; // a forked child's copy: the end (and the slot) is the parent's
        }
        slots::close_end(&self.mem, End::Producer(0), &self.st.me);
    }
}

// ---------------------------------------------------------------------------------------------
// Subscriber
// ---------------------------------------------------------------------------------------------

/// The protocol state of a broadcast subscriber.
#[doc(hidden)]
pub struct BroadcastSubscriber<M: Memory> {
    mem: M,
    geo: Geometry,
    st: SubscriberState,
}

#[derive(Debug)]
struct SubscriberState {
    /// Our slot in the subscriber table.
    index: usize,
    /// Our position.
    cursor: u64,
    /// The last value stored to our cursor word.
    stored: u64,
    /// Our position when we last looked for a producer waiting for room.
    notified: u64,
    /// The free word of the lap at `cursor`.
    free: Lap,
    /// Bytes we read before storing our cursor on our own ([`hand_back_at`]).
    hand_back_at: u64,
    /// Bytes between two looks for a producer waiting for room (a quarter of the ring).
    wake_at: u64,
    /// The sequence number of the next message we expect (Overwrite: to count what we lost).
    seq: u64,
    /// Overtaken: the sequence number we expected then, until the next message is found.
    lagged_from: Option<u64>,
    /// Messages lost, found and not handed out yet: every look returns it until a receive
    /// ([`try_next`](ConsumerCore::try_next), [`wait_step`](ConsumerCore::wait_step)) does
    /// (a batch's look ends the batch and leaves it for the next call).
    report: Option<u64>,
    /// Overwrite: the checked copy of the message handed out.
    stage: Vec<u8>,
    /// Where `stage` holds a message copied from (`Next::idx`), if it does.
    staged_at: Option<usize>,
    me: Held,
    liveness: LivenessClock,
}

impl<M: Memory> std::fmt::Debug for BroadcastSubscriber<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("broadcast::Subscriber")
            .field("capacity", &self.geo.capacity)
            .field("policy", &self.geo.policy)
            .field("slot", &self.st.index)
            .field("cursor", &self.st.cursor)
            .finish()
    }
}

/// How many bytes a subscriber may read before it stores its cursor on its own: a quarter of
/// the ring, but never so many that a producer facing a ring that is otherwise read could lack
/// room for a largest message (with its padding and the terminator), as `spsc::hand_back_at`.
fn hand_back_at(geo: &Geometry) -> u64 {
    let largest = 2 * broadcast_record_size(geo.max_message) as u64 + TERMINATOR;
    (geo.capacity / 4).min(geo.capacity.saturating_sub(largest)).max(8)
}

/// A subscriber's expected sequence number when it does not know it yet (it started where no
/// message told it): the first message it reads sets it, and no loss is counted before that.
const UNKNOWN_SEQ: u64 = u64::MAX;

/// How many times one look follows an overtaking producer before it gives up for this call.
const CHASES: usize = 4;

impl<M: Memory> BroadcastSubscriber<M> {
    /// After a message: store our cursor if we read [`hand_back_at`] bytes since the last
    /// store (one Release store), and look for a producer waiting for room (a fence) every
    /// quarter ring or when its announcement shows, as `spsc::hand_back_if_due` does (with
    /// the same bounded delay for a producer that announced itself between two looks).
    #[inline]
    fn hand_back_if_due(&mut self) {
        let st = &mut self.st;
        let h = self.mem.header();
        if st.cursor - st.notified >= st.wake_at
            || (st.cursor != st.notified && h.space_ready.waiters.load(Ordering::Relaxed) != 0)
        {
            self.publish_cursor();
        } else if st.cursor - st.stored >= st.hand_back_at {
            st.stored = st.cursor;
            // SYNC POINT: Release, as in `publish_cursor`.
            self.mem.subscriber(st.index).cursor.store(st.cursor, ord!(Release));
        }
    }

    /// Store our cursor if it moved, and wake a producer waiting for room if we have not
    /// looked since it moved (nothing at all when neither is due).
    fn publish_cursor(&mut self) {
        let st = &mut self.st;
        let e = self.mem.subscriber(st.index);
        if st.cursor != st.stored {
            st.stored = st.cursor;
            // SYNC POINT: Release pairs with the producer's Acquire loads of the cursors: we
            // are done reading the space behind it. (Weakened alone it is not caught: the
            // SeqCst fence of the `notify` below orders it too.)
            e.cursor.store(st.cursor, ord!(Release));
        }
        if st.notified != st.cursor {
            st.notified = st.cursor;
            wait::notify(&self.mem, &self.mem.header().space_ready);
        }
    }

    /// The next message without consuming it. Block: as the SPSC consumer. Overwrite: copied
    /// into `stage` and checked. `Ok(None)`: nothing there now.
    #[inline]
    fn next(&mut self) -> Result<Option<Next>, RecvStop> {
        if self.geo.policy == Policy::Overwrite {
            return self.next_checked();
        }
        let (mem, geo, st) = (&self.mem, &self.geo, &mut self.st);
        // Bounded: padding is never at index 0, so at most two words.
        loop {
            let idx = (st.cursor & geo.mask) as usize;
            // SYNC POINT: Acquire pairs with the producer's Release store of this word.
            let raw = mem.record(idx).load(ord!(Acquire));
            match classify(geo, st.free.at(geo, st.cursor), raw, idx) {
                Word::Message(len) => return Ok(Some(Next { idx: idx + 8, len })),
                Word::Empty => return Ok(None),
                Word::Padding(size) => st.cursor += size as u64,
                Word::Other => {
                    return Err(corrupt(
                        "record word",
                        raw,
                        st.cursor,
                        "this lap's free word or a record of this lap that fits",
                    )
                    .into())
                }
            }
        }
    }

    /// Whether what we read at `position` since our last Acquire load may have been written
    /// over: the producer reserved past `position + capacity`.
    #[inline]
    fn overtaken_at(&self, position: u64) -> bool {
        // SYNC POINT: Acquire fence after the copy (see the module docs).
        fence(ord!(Acquire));
        // Acquire: not needed (a newer `head` for an overtaken subscriber to jump to; it reads
        // `head` with Acquire itself, and checks what it finds there again).
        self.mem.header().reserved.load(ord!(Acquire)) > position.saturating_add(self.geo.capacity)
    }

    /// Overwrite: the next message, copied into `stage` and checked (see the module docs).
    fn next_checked(&mut self) -> Result<Option<Next>, RecvStop> {
        if let Some(skipped) = self.st.report {
            return Err(RecvStop::Lagged { skipped }); // until a receive hands it out
        }
        let mut chases = 0;
        loop {
            let (mem, geo) = (&self.mem, &self.geo);
            let c = self.st.cursor;
            let idx = (c & geo.mask) as usize;
            // SYNC POINT: Acquire, as in `next`.
            let raw = mem.record(idx).load(ord!(Acquire));
            let word = classify(geo, self.st.free.at(geo, c), raw, idx);
            if let Word::Message(len) = word {
                // Relaxed: read before the fence of `overtaken_at`, as the payload.
                let seq = mem.record(idx + 8).load(Ordering::Relaxed);
                let stage = &mut self.st.stage;
                stage.resize(len, 0);
                // The producer may be writing over it: checked below.
                mem.copy_out_racing(idx + 8, stage);
                if !self.overtaken_at(c) {
                    if let Some(from) = self.st.lagged_from.take().filter(|&f| f != UNKNOWN_SEQ) {
                        // Report the loss first; the message is read again by the next call.
                        self.st.seq = seq;
                        self.st.staged_at = None;
                        let skipped = seq.saturating_sub(from);
                        self.st.report = Some(skipped);
                        return Err(RecvStop::Lagged { skipped });
                    }
                    self.st.seq = seq;
                    self.st.staged_at = Some(idx + 8);
                    return Ok(Some(Next { idx: idx + 8, len }));
                }
            } else if !self.overtaken_at(c) {
                match word {
                    Word::Empty => return Ok(None),
                    Word::Padding(size) => {
                        self.st.cursor += size as u64;
                        continue;
                    }
                    _ => {
                        return Err(corrupt(
                            "record word",
                            raw,
                            c,
                            "this lap's free word or a record of this lap that fits",
                        )
                        .into())
                    }
                }
            }
            // Overtaken: go on from the oldest record left.
            self.st.staged_at = None;
            if self.st.lagged_from.is_none() {
                self.st.lagged_from = Some(self.st.seq);
            }
            // Acquire: pairs with the producer's Release store (the records before it are
            // whole; reading them is checked again anyway).
            let oldest = self.mem.header().head.load(ord!(Acquire));
            if oldest % 8 == 0 && oldest > self.st.cursor && oldest < MAX_POSITION {
                self.st.cursor = oldest;
            }
            chases += 1;
            if chases >= CHASES {
                return Ok(None); // overtaken at every look: look again at the next call
            }
        }
    }

    /// [`try_next`](ConsumerCore::try_next) when the ring was empty.
    #[inline(never)]
    fn try_next_empty(&mut self) -> Result<Next, RecvFail> {
        self.publish_cursor();
        let check = self.st.liveness.due();
        match self.producer_gone(check) {
            None => Err(RecvFail::Empty),
            // The producer may have sent its last message just before it closed.
            Some(gone) => self.next().map_err(|e| self.handed_out(e))?.ok_or(RecvFail::Stop(gone)),
        }
    }

    fn producer_gone(&self, check_alive: bool) -> Option<RecvStop> {
        match slots::peer(&self.mem, End::Producer(0), check_alive) {
            Peer::Closed => Some(RecvStop::Disconnected),
            Peer::Dead(pid) => Some(RecvStop::PeerDead { pid }),
            Peer::Present => None,
        }
    }

    /// Take a free subscriber slot and join at the producer's end (or `history` messages
    /// before it, as many as are still whole): see "Joining" in the module docs.
    fn join(mem: M, geo: Geometry, history: u64) -> Result<Self, AttachError> {
        let mut taken = None;
        for i in 0..geo.subscribers as usize {
            match slots::claim_slot(&mem, End::Subscriber(i), Role::Consumer) {
                Ok((me, _generation)) => {
                    taken = Some((i, me));
                    break;
                }
                Err(AttachError::AlreadyAttached { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        let (index, me) = taken.ok_or(AttachError::NoFreeSubscriberSlot { slots: geo.subscribers })?;
        let h = mem.header();
        let e = mem.subscriber(index);
        // Acquire: the value is only a bound for the producer (see below).
        let first = h.head.load(ord!(Acquire));
        // Relaxed: published by the fence below.
        e.cursor.store(first, Ordering::Relaxed);
        // SYNC POINT: our half of the join, a store-buffer handshake on SeqCst fences (as in
        // `wait.rs`): either the producer's fence (after its store of `head`) comes first in
        // the SeqCst order and our load of `head` below sees that store, or ours comes first
        // and its look at the cursors after its fence sees our claim of the slot and this
        // cursor, both made before ours.
        fence(ord!(SeqCst));
        // Acquire: pairs with the producer's Release store (the records from there are whole).
        let oldest = h.head.load(ord!(Acquire));
        let start = match Self::start(&mem, &geo, oldest, history) {
            Ok(s) => s,
            Err(err) => {
                slots::release_slot(&e.slot, &me);
                // Our cursor (or a previous holder's) may have held a producer back.
                wait::wake_all(&mem, &h.space_ready);
                return Err(err.into());
            }
        };
        let (cursor, seq) = start;
        // Release: as every later store of our cursor (we read nothing behind it).
        e.cursor.store(cursor, ord!(Release));
        // While we joined, our first cursor (or the previous holder's, before it) may have
        // held the producer back: wake it if it sleeps.
        wait::notify(&mem, &h.space_ready);
        let st = SubscriberState {
            index,
            cursor,
            stored: cursor,
            notified: cursor,
            free: Lap::new(&geo, cursor),
            hand_back_at: hand_back_at(&geo),
            wake_at: geo.capacity / 4,
            seq,
            lagged_from: None,
            report: None,
            stage: Vec::new(),
            staged_at: None,
            me,
            liveness: LivenessClock::default(),
        };
        Ok(BroadcastSubscriber { mem, geo, st })
    }

    /// Where a subscriber joining now starts, from the oldest whole record `oldest`: the
    /// published end, or the `history` last messages before it; and the sequence number of
    /// the message there. Walks the records twice at most (bounded by one lap each;
    /// Overwrite: checked against `reserved` after the walk, and walked again from the newer
    /// oldest record if overtaken, a few times).
    fn start(mem: &M, geo: &Geometry, oldest: u64, history: u64) -> Result<(u64, u64), CorruptError> {
        let h = mem.header();
        let mut from = oldest;
        for _ in 0..CHASES {
            // Acquire (both): the producer's Release stores. `next_seq` numbers the first
            // message of a ring that holds none.
            let seq_now = h.next_seq.load(ord!(Acquire));
            let tail = h.tail.load(ord!(Acquire));
            if from % 8 != 0 || from > tail || tail - from > geo.capacity || tail >= MAX_POSITION {
                return Err(corrupt(
                    "oldest record position",
                    from,
                    tail,
                    "a multiple of 8 within capacity behind the producer position",
                ));
            }
            // The messages from `from` to the end, then where the `history` last ones start.
            let walked = walk(mem, geo, from, u64::MAX).map(|w| (w.end, w.messages, w.seq_after));
            let found = walked.and_then(|(end, messages, seq_after)| {
                if history == 0 || messages == 0 {
                    return Ok((end, seq_after.unwrap_or(seq_now)));
                }
                let skip = messages.saturating_sub(history);
                let w = walk(mem, geo, from, skip)?;
                Ok((w.end, w.seq_at.unwrap_or(seq_now)))
            });
            let overtaken = geo.policy == Policy::Overwrite && {
                fence(ord!(Acquire));
                h.reserved.load(ord!(Acquire)) > from + geo.capacity
            };
            match found {
                Ok(start) if !overtaken => return Ok(start),
                Err(e) if !overtaken => return Err(e),
                _ => {}
            }
            // Overtaken while walking: walk again from the producer's newer oldest record.
            // Acquire: as in `next_checked`.
            from = h.head.load(ord!(Acquire)).max(from);
        }
        // Overtaken at every walk: start at the producer's end, with no history, and count
        // from the first message read (`tail` and `next_seq` are two stores: a pair read
        // between them would be one message apart).
        let tail = h.tail.load(ord!(Acquire));
        if tail % 8 != 0 || tail >= MAX_POSITION || tail < from {
            return Err(corrupt(
                "producer position",
                tail,
                from,
                "a multiple of 8 below 2^62, at or past the oldest record",
            ));
        }
        Ok((tail, UNKNOWN_SEQ))
    }

    /// An error a receive returns: a loss report is handed out now.
    fn handed_out(&mut self, e: RecvStop) -> RecvStop {
        if let RecvStop::Lagged { .. } = e {
            self.st.report = None;
        }
        e
    }

    /// Where the message `n` is: in `stage` (Overwrite, checked) or in the ring.
    fn staged_bytes(&self, n: Next) -> Option<&[u8]> {
        (self.st.staged_at == Some(n.idx)).then_some(&self.st.stage[..n.len.min(self.st.stage.len())])
    }
}

impl<M: Memory> Core<M> for BroadcastSubscriber<M> {
    fn attach(mem: M, geo: Geometry) -> Result<Self, AttachError> {
        Self::join(mem, geo, 0)
    }

    fn attach_with(mem: M, geo: Geometry, options: &AttachOptions) -> Result<Self, AttachError> {
        Self::join(mem, geo, options.get_history())
    }

    fn parts(&self) -> (&M, &Geometry) {
        (&self.mem, &self.geo)
    }
}

impl<M: Memory> ConsumerCore<M> for BroadcastSubscriber<M> {
    fn position(&self) -> u64 {
        self.st.cursor
    }

    fn try_next(&mut self) -> Result<Next, RecvFail> {
        match self.next() {
            Ok(Some(n)) => Ok(n),
            Ok(None) => self.try_next_empty(),
            Err(e) => Err(self.handed_out(e).into()),
        }
    }

    fn wait_step(&mut self, _deadline: Option<Instant>) -> Result<Option<Next>, RecvStop> {
        let n = self.next().map_err(|e| self.handed_out(e))?;
        if n.is_none() {
            self.publish_cursor();
        }
        Ok(n)
    }

    fn producers_gone(&mut self, check_alive: bool) -> Option<RecvStop> {
        self.publish_cursor();
        self.producer_gone(check_alive)
    }

    #[inline]
    fn consume(&mut self, n: Next) {
        self.advance(n);
        self.hand_back_if_due();
    }

    #[inline]
    fn advance(&mut self, n: Next) {
        self.st.cursor += broadcast_record_size(n.len) as u64;
        self.st.seq = self.st.seq.wrapping_add(1);
        self.st.staged_at = None;
    }

    fn next_in_batch(&mut self) -> Option<Next> {
        self.next().ok().flatten()
    }

    fn flush(&mut self) {
        self.publish_cursor();
    }

    fn staged(&self, n: Next) -> Option<&[u8]> {
        self.staged_bytes(n)
    }
}

/// What only a broadcast subscriber has.
impl<M: Memory> Subscriber<M> {
    /// Our slot in the subscriber table.
    pub fn slot(&self) -> usize {
        self.core.st.index
    }

    /// The ring's policy.
    pub fn policy(&self) -> Policy {
        self.core.geo.policy
    }

    /// The sequence number of the next message we expect (messages are numbered from 0 in the
    /// order they were sent on the ring); `u64::MAX` while it is not known (an `Overwrite`
    /// subscriber overtaken at every look while it joined starts at the producer's end and
    /// learns it from the first message it reads).
    pub fn next_seq(&self) -> u64 {
        self.core.st.seq
    }
}

impl<M: Memory> Drop for BroadcastSubscriber<M> {
    fn drop(&mut self) {
        if !self.st.me.is_ours() {
            return;
        }
        self.publish_cursor();
        slots::close_end(&self.mem, End::Subscriber(self.st.index), &self.st.me);
    }
}
