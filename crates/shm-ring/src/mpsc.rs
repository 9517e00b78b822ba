//! Many-producer single-consumer ring: producers in any number of threads and processes, one
//! consumer.
//!
//! # Protocol
//! A producer reads `tail` (position `t`), checks for room against the consumer position, and
//! claims `t` with one compare-and-swap of the record word at `t`'s index: from "free for
//! lap(t)" to "claimed by (slot, generation), length n". Its identity is in the claim itself, so
//! there is no instant at which the ring holds space nobody can be named for. It then advances
//! `tail` past the record with a CAS that any producer (or the consumer) also performs on its
//! behalf when it finds the claim, writes the payload, and commits with a Release store of the
//! message word. A record that does not fit before the end of the data area is preceded by a
//! padding record, claimed the same way.
//!
//! The consumer reads records in position order and stops at a claimed, uncommitted one. It
//! skips it only when its producer is known to be gone: its slot's generation changed (a new
//! producer took the slot of a dead one), its slot is closed, or its process died (pid + start
//! time). A live but slow producer is waited for, never skipped. Consumed space is rewritten as
//! free for the next lap before it is handed back, so stale data can never look committed.
//!
//! # Disconnect
//! A consumer cannot know about producers that have not attached yet. So
//! [`RecvError::Disconnected`](crate::RecvError::Disconnected) means: the ring is empty *now*, no producer is attached, and at
//! least one has attached and closed; it is not final, since another producer may open the
//! ring later and receiving then goes on. Make sure every producer that is expected has
//! attached (a handshake of your own) before treating it as the end of the stream. A producer
//! that died without closing gives [`RecvError::PeerDead`](crate::RecvError::PeerDead) instead, once its messages are read.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{self, Geometry, Lap};
use crate::error::{
    corrupt, AttachError, CorruptError, RecvFail, RecvStop, Role, SendFail, SendStop, TrySendError,
};
use crate::identity::{self, Owner};
use crate::layout::{
    self, record_size, RecordHeader, Slot, RECORD_HEADER, TYPE_CLAIMED, TYPE_FREE, TYPE_MSG, TYPE_PAD,
    TYPE_SKIP,
};
use crate::memory::{DefaultMemory, Memory};
use crate::protocol::{ConsumerCore, Core, Mpsc, Next, ProducerCore, RingKind};
use crate::slots::{self, End, Held, LivenessClock, Peer};
use crate::sync::Ordering;
use crate::wait;

impl RingKind for Mpsc {
    const KIND: crate::Kind = crate::Kind::Mpsc;
    type Producer<M: Memory> = MpscProducer<M>;
    type Consumer<M: Memory> = MpscConsumer<M>;
}

/// A sending end of an MPSC ring. Clone it for more threads of this process (the clones share
/// one producer slot); other processes [`open`](crate::Producer::open) their own.
pub type Producer<M = DefaultMemory> = crate::Producer<Mpsc, M>;
/// The receiving end of an MPSC ring.
pub type Consumer<M = DefaultMemory> = crate::Consumer<Mpsc, M>;
/// Claimed space in an MPSC ring ([`crate::Grant`]); dropping it uncommitted publishes a record
/// the consumer skips.
pub type Grant<'a, M = DefaultMemory> = crate::Grant<'a, Mpsc, M>;
/// A message read in place from an MPSC ring ([`crate::ReadGuard`]).
pub type ReadGuard<'a, M = DefaultMemory> = crate::ReadGuard<'a, Mpsc, M>;

/// One producer slot held by this process, shared by the clones of a [`Producer`].
struct Attachment<M: Memory> {
    mem: M,
    slot: usize,
    /// Our owner word and lock; the lock is released after `drop` marked the slot closed.
    me: Held,
    generation: u16,
}

impl<M: Memory> Drop for Attachment<M> {
    fn drop(&mut self) {
        if !self.me.is_ours() {
            return; // a forked child's copy: the slot is the parent's
        }
        slots::close_end(&self.mem, End::Producer(self.slot), &self.me);
    }
}

/// The protocol state of an MPSC producer.
#[doc(hidden)]
pub struct MpscProducer<M: Memory> {
    att: Arc<Attachment<M>>,
    geo: Geometry,
    st: ProducerState,
}

/// What each producer handle keeps to itself.
#[derive(Debug)]
struct ProducerState {
    /// Last consumer position read.
    head_cache: u64,
    /// The consumer slot's generation when we attached, and whether a consumer was attached.
    consumer_at_attach: (u32, bool),
    liveness: LivenessClock,
    /// The free word of the lap we last claimed in.
    free: Lap,
}

impl<M: Memory> Clone for Producer<M> {
    fn clone(&self) -> Self {
        crate::Producer { core: self.core.clone(), spin: crate::wait::Spin::default() }
    }
}

impl<M: Memory> Clone for MpscProducer<M> {
    fn clone(&self) -> Self {
        MpscProducer {
            att: self.att.clone(),
            geo: self.geo,
            st: ProducerState {
                head_cache: self.st.head_cache,
                consumer_at_attach: self.st.consumer_at_attach,
                liveness: LivenessClock::default(),
                free: self.st.free,
            },
        }
    }
}

impl<M: Memory> std::fmt::Debug for MpscProducer<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("mpsc::Producer")
            .field("slot", &self.att.slot)
            .field("generation", &self.att.generation)
            .field("capacity", &self.geo.capacity)
            .field("max_message", &self.geo.max_message)
            .finish()
    }
}

/// Where a claimed record is.
#[doc(hidden)]
#[derive(Clone, Copy, Debug)]
pub struct Claim {
    idx: usize,
    len: usize,
}

/// Records one step of a timed or blocking receive walks before it checks its deadline.
const WAIT_WALK_RECORDS: u64 = 4096;

/// Bytes one walk of the consumer covers at most (so one hand-back rewrites at most this much,
/// plus one record): a timed call checks its deadline between such steps.
const WALK_BYTES: u64 = 1 << 20;

/// How many claim attempts one call makes before it reports the ring full (or, blocking, goes
/// back to its wait loop, which checks the deadline and the consumer's liveness). Each failed
/// attempt means another end moved the tail (or a hostile one rewrote it), so legitimate
/// contention never comes near it.
const CLAIM_ATTEMPTS: usize = 1 << 10;

/// The outcome of one claim attempt that did not claim.
enum Retry {
    /// Someone else moved the tail: try again at once.
    Again,
    /// Stop with this error.
    Stop(SendFail),
}

fn corrupt_send(what: &'static str, found: u64, position: u64, expected: &'static str) -> SendFail {
    corrupt(what, found, position, expected).into()
}

/// The size of the record whose word `w` sits at index `idx`, for helping the tail past it.
fn claimed_size(geo: &Geometry, idx: usize, w: RecordHeader, position: u64) -> Result<usize, SendFail> {
    let contiguous = geo.capacity as usize - idx;
    let size = match w.kind() {
        TYPE_PAD => contiguous,
        TYPE_MSG | TYPE_CLAIMED | TYPE_SKIP if (w.len as usize) <= geo.max_message => {
            record_size(w.len as usize)
        }
        _ => {
            return Err(corrupt_send(
                "record word",
                w.to_word(),
                position,
                "a claimed, committed or padding record",
            ))
        }
    };
    if size > contiguous {
        return Err(corrupt_send("record length", w.len.into(), position, "a record inside the data area"));
    }
    Ok(size)
}

impl<M: Memory> MpscProducer<M> {
    /// Take a free (or dead producer's) slot of initialised memory whose geometry was validated.
    fn attach_mem(mem: M, geo: Geometry) -> Result<Self, AttachError> {
        let mut taken = None;
        for i in 0..geo.max_producers as usize {
            match slots::claim_slot(&mem, End::Producer(i), Role::Producer) {
                Ok((me, generation)) => {
                    taken = Some((i, me, generation as u16));
                    break;
                }
                Err(AttachError::AlreadyAttached { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        let (slot, me, generation) = taken.ok_or(AttachError::NoFreeSlot { slots: geo.max_producers })?;
        let att = Arc::new(Attachment { mem, slot, me, generation });
        let h = att.mem.header();
        // Acquire (owner, generation): not needed (a snapshot only compared later).
        let consumer = Owner::decode(h.consumer.owner.load(ord!(Acquire)));
        let consumer_at_attach = (h.consumer.generation(), consumer.state == identity::ATTACHED);
        // Tail, head, tail again: other producers and the consumer move both meanwhile, and only
        // a head read between two equal tails is known to be within capacity of it.
        let mut positions = (0, 0);
        for _ in 0..64 {
            // Acquire (tails): not needed (only checked; claims go through the record word,
            // room through head).
            let before = h.tail.load(ord!(Acquire));
            let head = h.head.load(ord!(Acquire));
            positions = (head, h.tail.load(ord!(Acquire)));
            if positions.1 == before {
                break;
            }
        }
        let (head, tail) = positions;
        config::check_positions(head, tail, geo.capacity)?;
        let st = ProducerState {
            head_cache: head,
            consumer_at_attach,
            liveness: LivenessClock::default(),
            free: Lap::new(&geo, tail),
        };
        Ok(MpscProducer { att, geo, st })
    }

    fn mem(&self) -> &M {
        &self.att.mem
    }

    /// Bytes claimed and not yet handed back by the consumer.
    fn bytes_in_flight(&self) -> usize {
        let h = self.mem().header();
        // Acquire (head, tail): not needed (a byte count for the caller).
        let head = h.head.load(ord!(Acquire));
        h.tail.load(ord!(Acquire)).saturating_sub(head).min(self.geo.capacity) as usize
    }

    /// One attempt to claim a record of `len` payload bytes. `stall` runs between reading the
    /// tail and the claim (a no-op but in tests, which deschedule a producer there on purpose).
    fn attempt_claim(
        att: &Attachment<M>,
        geo: &Geometry,
        st: &mut ProducerState,
        len: usize,
        advance: bool,
        stall: &mut impl FnMut(),
    ) -> Result<Claim, Retry> {
        let mem = &att.mem;
        let h = mem.header();
        if let Some(stop) = slots::consumer_gone(mem, st.consumer_at_attach, false) {
            return Err(Retry::Stop(stop.into()));
        }
        let rec = record_size(len);
        // Acquire: not needed (a stale `t` fails the keyed claim CAS; room is synchronised by head, not tail).
        let t = h.tail.load(ord!(Acquire));
        if t % 8 != 0 || t >= layout::MAX_POSITION {
            return Err(Retry::Stop(corrupt_send("producer position", t, t, "a multiple of 8 below 2^62")));
        }
        let idx = (t & geo.mask) as usize;
        let contiguous = geo.capacity as usize - idx;
        let pad = if rec <= contiguous { 0 } else { contiguous };
        let need = (pad + rec) as u64;
        let end = t.saturating_add(need);
        if end > st.head_cache.saturating_add(geo.capacity) {
            // SYNC POINT: Acquire pairs with the consumer's Release store of head: the space it
            // hands back has been rewritten as free for the next lap.
            let head = h.head.load(ord!(Acquire));
            // The tail never falls behind the consumer position (the consumer moves it up before
            // handing space back), and a tail read after `head` is at least that head.
            // Acquire: not needed (only compared; the Acquire of head just above orders it).
            if h.tail.load(ord!(Acquire)) != t {
                return Err(Retry::Again); // others moved on
            }
            if head > t || t - head > geo.capacity {
                return Err(Retry::Stop(corrupt_send(
                    "consumer position",
                    head,
                    t,
                    "at most capacity behind the producer position, never ahead",
                )));
            }
            st.head_cache = st.head_cache.max(head);
            if end > head + geo.capacity {
                if st.liveness.due() {
                    if let Peer::Dead(pid) = slots::peer(mem, End::Consumer, true) {
                        return Err(Retry::Stop(SendStop::PeerDead { pid }.into()));
                    }
                }
                return Err(Retry::Stop(SendFail::Full));
            }
        }
        stall();
        let free = st.free.at(geo, t).free;
        let (word, size) = if pad > 0 {
            (RecordHeader::new(TYPE_PAD, (pad - RECORD_HEADER) as u32, 0, 0), pad)
        } else {
            (RecordHeader::new(TYPE_CLAIMED, len as u32, att.slot as u8, att.generation), rec)
        };
        // SYNC POINT: the claim. AcqRel: Acquire pairs with the consumer's Release of head (the
        // free word we replace), Release publishes the claim to helpers and the consumer. The
        // expected value is lap(t)'s keyed free word: if `t` went stale and the ring lapped, the
        // word at its index is another lap's free word, a record header or payload, none of
        // which equals it (see `layout::free_word`), and the claim fails.
        // AcqRel/Acquire: not needed (free words are Relaxed fills, synchronised through head; helpers and the consumer use the claim word's value only, and a padding record has no payload); kept: it is the hot claim, reviewed as is.
        match mem.record(idx).compare_exchange(free, word.to_word(), ord!(AcqRel), ord!(Acquire)) {
            Ok(_) => {
                if advance {
                    // AcqRel: not needed (the tail is only compared and helped; claims are published by the record word).
                    let _ = h.tail.compare_exchange(t, t + size as u64, ord!(AcqRel), Ordering::Relaxed);
                }
                if pad > 0 {
                    return Err(Retry::Again); // padding placed: claim the record at index 0
                }
                Ok(Claim { idx, len })
            }
            Err(found) => {
                // A stale tail: the ring moved on and the word may now be anything. Only a claim
                // at the current tail is ours to help along. (A free word of another lap also
                // means our `t` is stale, even if a re-read of the tail still returns it: the
                // read may lag behind the word. Retrying is bounded by the caller.)
                let found = RecordHeader::from_word(found);
                if found.kind() == TYPE_FREE {
                    // Another lap's free word. The tail is never behind the consumer position
                    // (read after it): a ring where it is, because a hostile peer wrote a
                    // message past the tail or moved the tail back, would fail every claim
                    // here for ever, so it is refused instead.
                    // SYNC POINT: Acquire pairs with the consumer's Release store of head: the tail
                    // read after it is at least the one the consumer handed back behind.
                    let head = h.head.load(ord!(Acquire));
                    // Acquire: not needed (only compared).
                    let tail = h.tail.load(ord!(Acquire));
                    if tail < head {
                        return Err(Retry::Stop(corrupt_send(
                            "producer position",
                            tail,
                            t,
                            "at least the consumer position",
                        )));
                    }
                    return Err(Retry::Again);
                }
                // Acquire: not needed (only compared).
                if h.tail.load(ord!(Acquire)) != t {
                    return Err(Retry::Again);
                }
                // Someone claimed `t`: help the tail past their record, then retry.
                let size = claimed_size(geo, idx, found, t).map_err(Retry::Stop)?;
                // AcqRel: not needed (as the tail CAS above).
                let _ = h.tail.compare_exchange(t, t + size as u64, ord!(AcqRel), Ordering::Relaxed);
                Err(Retry::Again)
            }
        }
    }

    /// Claim with retries, at most [`CLAIM_ATTEMPTS`] of them: each retry means another end
    /// moved the tail, so only a flood of claims (or a hostile peer) reaches the limit, and a
    /// `try_*` call stays bounded whatever shared memory holds. Past the limit the ring counts as
    /// full for this call.
    fn claim_bounded(
        &mut self,
        len: usize,
        advance: bool,
        mut stall: impl FnMut(),
    ) -> Result<Claim, SendFail> {
        self.geo.check_len(len)?;
        for _ in 0..CLAIM_ATTEMPTS {
            match Self::attempt_claim(&self.att, &self.geo, &mut self.st, len, advance, &mut stall) {
                Ok(c) => return Ok(c),
                Err(Retry::Again) => crate::sync::spin_hint(),
                Err(Retry::Stop(e)) => return Err(e),
            }
        }
        Err(SendFail::Full)
    }

    /// Commit a claimed record as `kind` (a message, or a skip): one Release store of its word.
    fn commit_record(&self, c: Claim, len: usize, kind: u8) {
        let mem = self.mem();
        let word = RecordHeader::new(kind, len as u32, self.att.slot as u8, self.att.generation);
        // SYNC POINT: Release pairs with the consumer's Acquire load of the record word: the
        // payload is visible once the word says "message".
        mem.record(c.idx).store(word.to_word(), ord!(Release));
        wait::notify(mem, &mem.header().data_ready);
    }
}

impl<M: Memory> Core<M> for MpscProducer<M> {
    fn attach(mem: M, geo: Geometry) -> Result<Self, AttachError> {
        Self::attach_mem(mem, geo)
    }

    fn parts(&self) -> (&M, &Geometry) {
        (&self.att.mem, &self.geo)
    }
}

impl<M: Memory> ProducerCore<M> for MpscProducer<M> {
    type Claim = Claim;

    fn len_bytes(&self) -> usize {
        self.bytes_in_flight()
    }

    fn try_claim(&mut self, len: usize) -> Result<Claim, SendFail> {
        self.claim_bounded(len, true, || {})
    }

    fn consumer_gone(&mut self, check_alive: bool) -> Option<SendStop> {
        slots::consumer_gone(&self.att.mem, self.st.consumer_at_attach, check_alive)
    }

    fn payload_index(c: &Claim) -> usize {
        c.idx
    }

    fn commit(&mut self, c: Claim, len: usize) {
        // A message shorter than its claim would leave the rest of the record unaccounted for:
        // commit the claimed length (the front never asks for less).
        let _ = len;
        self.commit_record(c, c.len, TYPE_MSG);
    }

    fn abort(&mut self, c: Claim) {
        // The claimed space becomes a record the consumer skips.
        self.commit_record(c, c.len, TYPE_SKIP);
    }
}

/// What only an MPSC producer has: its slot, and test hooks.
impl<M: Memory> Producer<M> {
    /// This producer's slot in the producer table.
    pub fn slot(&self) -> usize {
        self.core.att.slot
    }

    /// Test hook: claim a record by its word but leave the tail behind, as a producer killed
    /// between the two steps would. Returns whether it claimed; the claim is never committed.
    /// (Padding it needs first is placed and then helped past, as another producer would.)
    #[doc(hidden)]
    pub fn claim_without_advancing(&mut self, len: usize) -> bool {
        self.core.claim_bounded(len, false, || {}).is_ok()
    }

    /// Test hook: one claim attempt of a record of `len` bytes that needs padding first (the
    /// rest of the data area is too short): place the padding and leave the tail before it, as
    /// a producer killed between the two steps would. Returns whether padding was placed.
    #[doc(hidden)]
    pub fn pad_without_advancing(&mut self, len: usize) -> bool {
        let core = &mut self.core;
        let mem = &core.att.mem;
        // (Relaxed: a test hook's look at where the padding goes.)
        let t = mem.header().tail.load(Ordering::Relaxed);
        let attempt = MpscProducer::attempt_claim(&core.att, &core.geo, &mut core.st, len, false, &mut || {});
        let word = RecordHeader::from_word(mem.record((t & core.geo.mask) as usize).load(Ordering::Relaxed));
        matches!(attempt, Err(Retry::Again)) && word.kind() == TYPE_PAD
    }

    /// Test hook: `try_send`, with `stall` run once between reading the tail and the claim of
    /// the first attempt, as if this producer were descheduled there.
    #[doc(hidden)]
    pub fn try_send_stalled<T: AsRef<[u8]>>(
        &mut self,
        msg: T,
        stall: impl FnOnce(),
    ) -> Result<(), TrySendError<T>> {
        let mut stall = Some(stall);
        let claimed = self.core.claim_bounded(msg.as_ref().len(), true, || {
            if let Some(f) = stall.take() {
                f()
            }
        });
        match claimed {
            Ok(c) => {
                // We claimed `record_size(len)` bytes at `c.idx` inside the data area; nobody
                // else writes them, and the consumer does not read them before the commit.
                self.core.mem().copy_in(c.idx, 0, msg.as_ref());
                self.core.commit_record(c, c.len, TYPE_MSG);
                Ok(())
            }
            Err(e) => Err(TrySendError::new(e, msg)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Consumer
// ---------------------------------------------------------------------------------------------

/// The protocol state of an MPSC consumer.
#[doc(hidden)]
pub struct MpscConsumer<M: Memory> {
    mem: M,
    geo: Geometry,
    st: ConsumerState,
}

struct ConsumerState {
    head: u64,
    published: u64,
    /// Whether the records consumed since the last hand-back may end past the tail: padding
    /// (placed by its claim, the tail moved after) and claims skipped as abandoned (their
    /// producer may have died before moving the tail). A committed message or skip never does:
    /// its producer moved the tail past it (or found it moved) before the commit we read.
    tail_may_lag: bool,
    /// The lap at `head`, and the lap after the space we hand back next (its free word is what
    /// the hand-back writes).
    free: Lap,
    next_free: Lap,
    /// Our owner word and lock (see `Attachment::me`).
    me: Held,
    /// Test hook called at each step of the hand-back (see [`HandBackStep`]).
    hook: Option<fn(HandBackStep)>,
    /// Check the producer of a claim at our position at once (not after it has been stuck
    /// for a while): set once the producers are found gone, so that their last claims are
    /// skipped and the messages behind them read before `Disconnected`/`PeerDead` is given.
    force_check: bool,
    /// The most records one `next` looks at (at most a lap's worth: `try_*` calls), and whether
    /// the last `next` stopped there with records left to walk.
    walk_limit: u64,
    walk_incomplete: bool,
    /// In a wait: the producers were found gone, so the last attempt skips their claims.
    gone_seen: bool,
    /// Return from the hand-back at this step, as a consumer killed there would (set only by
    /// the loom models; always `None` otherwise).
    crash_at: Option<HandBackStep>,
    /// Rate limit for the `/proc` checks of producers on an empty ring.
    liveness: LivenessClock,
    /// The claimed record we are waiting at, and when we last checked its producer.
    stuck: Option<(u64, Instant)>,
}

impl std::fmt::Debug for ConsumerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerState")
            .field("head", &self.head)
            .field("published", &self.published)
            .finish_non_exhaustive()
    }
}

/// The steps of the MPSC consumer's hand-back of consumed space, where the test hook
/// ([`Consumer::set_hand_back_hook`]) is called: a consumer killed at any of them leaves a ring
/// the next consumer reads without loss.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandBackStep {
    /// About to move the tail up to the consumer position.
    Start,
    /// Tail moved; the intent (`hand_back`) is not stored yet.
    TailMoved,
    /// Intent stored; no free word rewritten yet.
    IntentStored,
    /// Half of the consumed space rewritten as free.
    HalfFreed,
    /// All of it rewritten; `head` not stored yet.
    Freed,
    /// `head` stored; producers not woken yet.
    HeadStored,
}

impl ConsumerState {
    /// Whether to check (with a `/proc` read) that the producer of the claim at `head` lives:
    /// once we have waited at the same claim for a few milliseconds, then every few ms.
    fn check_claimant(&mut self) -> bool {
        if self.force_check {
            return !cfg!(loom);
        }
        if cfg!(loom) {
            return false;
        }
        const EVERY: Duration = Duration::from_millis(5);
        let now = Instant::now();
        match self.stuck {
            Some((pos, since)) if pos == self.head => {
                if now.duration_since(since) >= EVERY {
                    self.stuck = Some((pos, now));
                    true
                } else {
                    false
                }
            }
            _ => {
                self.stuck = Some((self.head, now));
                false
            }
        }
    }
}

impl<M: Memory> std::fmt::Debug for MpscConsumer<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("mpsc::Consumer")
            .field("capacity", &self.geo.capacity)
            .field("producers", &self.geo.max_producers)
            .field("head", &self.st.head)
            .finish()
    }
}

/// Whether the claimant of a record (slot, generation) can no longer commit it.
fn abandoned<M: Memory>(
    mem: &M,
    geo: &Geometry,
    w: RecordHeader,
    position: u64,
    check_alive: bool,
) -> Result<bool, CorruptError> {
    let slot = w.slot() as usize;
    if slot >= geo.max_producers as usize {
        return Err(corrupt("producer slot", slot as u64, position, "below the ring's producer count"));
    }
    let s: &Slot = mem.slot(slot);
    // (Relaxed: only compared; a takeover publishes nothing of the dead claimant, only its close
    // does, below.)
    if s.generation() as u16 != w.generation() {
        return Ok(true); // the slot was taken over: its holder when it claimed is gone
    }
    let word = s.owner.load(ord!(Acquire));
    Ok(match Owner::decode(word).state {
        identity::CLOSED => true,
        identity::ATTACHED => check_alive && slots::holder_gone(mem, End::Producer(slot), word),
        _ => false,
    })
}

impl<M: Memory> MpscConsumer<M> {
    fn attach_mem(mem: M, geo: Geometry) -> Result<Self, AttachError> {
        let (me, head) = slots::attach_consumer(&mem, &geo)?;
        let mut st = ConsumerState {
            head,
            published: head,
            tail_may_lag: true,
            free: Lap::new(&geo, head),
            next_free: Lap::new(&geo, head + geo.capacity),
            me,
            hook: None,
            force_check: false,
            walk_limit: u64::MAX,
            walk_incomplete: false,
            gone_seen: false,
            crash_at: None,
            liveness: LivenessClock::default(),
            stuck: None,
        };
        if let Err(e) = Self::finish_hand_back(&mem, &geo, &mut st) {
            slots::release_slot(&mem.header().consumer, &st.me);
            return Err(e.into());
        }
        Ok(MpscConsumer { mem, geo, st })
    }

    /// Complete a hand-back that a previous consumer started and did not finish (it was killed
    /// between storing the intent and storing `head`).
    fn finish_hand_back(mem: &M, geo: &Geometry, st: &mut ConsumerState) -> Result<(), CorruptError> {
        let h = mem.header();
        // SYNC POINT: Acquire pairs with the Release store of the intent in `publish_head`.
        let intent = h.hand_back.load(ord!(Acquire));
        if intent == st.head {
            return Ok(());
        }
        // Acquire: not needed (only checked; the Acquire of the intent above makes the moved tail visible).
        let tail = h.tail.load(ord!(Acquire));
        if intent < st.head || intent - st.head > geo.capacity || intent % 8 != 0 || intent > tail {
            return Err(CorruptError {
                what: "hand-back position",
                found: intent,
                position: st.head,
                expected: "a multiple of 8 between the consumer and the producer position",
            });
        }
        st.head = intent;
        Self::publish_head(mem, geo, st);
        Ok(())
    }

    /// The next committed message. `Ok(None)`: nothing to read now (empty, or the next record is
    /// still being written by a live producer).
    ///
    /// The common case inline: a message at our position, inside the data area, with less than
    /// a lap consumed since the last hand-back. Everything else is left to [`Self::walk`], which
    /// classifies the same word in full (handed over, not read again).
    #[inline]
    fn next(mem: &M, geo: &Geometry, st: &mut ConsumerState) -> Result<Option<Next>, CorruptError> {
        let mut first = None;
        if st.head - st.published < geo.capacity {
            let idx = (st.head & geo.mask) as usize;
            // SYNC POINT: Acquire pairs with the producer's Release commit store (as in `walk`).
            let raw = mem.record(idx).load(ord!(Acquire));
            let w = RecordHeader::from_word(raw);
            let len = w.len as usize;
            if w.kind() == TYPE_MSG
                && len <= geo.max_message
                && idx + record_size(len) <= geo.capacity as usize
            {
                st.walk_incomplete = false;
                return Ok(Some(Next { idx, len }));
            }
            first = Some(raw);
        }
        Self::walk(mem, geo, st, first)
    }

    /// [`Self::next`] in full: skips padding, skipped records and abandoned claims on the way.
    /// `first`: the word at our position, if `next` read it already (it is not read twice: an
    /// empty ring is polled with one load).
    ///
    /// Bounded: it looks at no more records than one lap holds, and never reads a word of space
    /// it consumed but has not handed back (that would be last lap's record, read again).
    #[inline(never)]
    fn walk(
        mem: &M,
        geo: &Geometry,
        st: &mut ConsumerState,
        mut first: Option<u64>,
    ) -> Result<Option<Next>, CorruptError> {
        st.walk_incomplete = false;
        let start = st.head;
        for _ in 0..st.walk_limit.min(geo.capacity / 8 + 1) {
            if st.head - start >= WALK_BYTES {
                break; // bound the hand-back below too
            }
            if st.head - st.published >= geo.capacity {
                // A whole lap consumed (skipped records, padding): the word at our position is
                // one we consumed a lap ago. Hand the lap back first, which makes it free.
                Self::publish_head(mem, geo, st);
            }
            let idx = (st.head & geo.mask) as usize;
            // The record word at our position says everything: this lap's free word (nothing
            // yet), or a claim, message, padding or skip made in this lap. Words of earlier laps
            // were rewritten as free before the space was handed back, so nothing stale can look
            // like a record, and the tail need not be read at all.
            // SYNC POINT: Acquire pairs with the producer's Release commit store (and with the
            // AcqRel claim CAS). (`first` was read with Acquire at this position, with less than
            // a lap consumed, so the hand-back above was not due.)
            let raw = match first.take() {
                Some(raw) => raw,
                None => mem.record(idx).load(ord!(Acquire)),
            };
            if raw == st.free.at(geo, st.head).free {
                Self::publish_head(mem, geo, st);
                return Ok(None);
            }
            let w = RecordHeader::from_word(raw);
            let len = w.len as usize;
            let rec = record_size(len.min(geo.capacity as usize));
            let check_len = |len: usize| -> Result<(), CorruptError> {
                if len > geo.max_message || idx + rec > geo.capacity as usize {
                    return Err(corrupt(
                        "record length",
                        len as u64,
                        st.head,
                        "at most the ring's max message, inside the data area",
                    ));
                }
                Ok(())
            };
            match w.kind() {
                TYPE_MSG => {
                    check_len(len)?;
                    return Ok(Some(Next { idx, len }));
                }
                TYPE_PAD => {
                    st.head += geo.padding_size(idx, len, st.head)? as u64;
                    st.tail_may_lag = true;
                }
                TYPE_SKIP => {
                    check_len(len)?;
                    st.head += rec as u64;
                }
                TYPE_CLAIMED => {
                    check_len(len)?;
                    let check_alive = st.check_claimant();
                    if abandoned(mem, geo, w, st.head, check_alive)? {
                        // The slot check synchronised with the producer's close or the slot's
                        // takeover, both after any commit it made: look at the word once more,
                        // so a commit we read too early is not taken for an abandoned claim.
                        // Acquire: not needed (only compared; a changed word is read again with Acquire at the loop's top).
                        if mem.record(idx).load(ord!(Acquire)) != raw {
                            continue;
                        }
                        st.head += rec as u64; // its producer is gone: skip it
                        st.tail_may_lag = true;
                    } else {
                        Self::publish_head(mem, geo, st);
                        return Ok(None); // a live producer is still writing it
                    }
                }
                TYPE_FREE => {
                    return Err(corrupt(
                        "record word",
                        raw,
                        st.head,
                        "this lap's free word or a record header",
                    ))
                }
                other => {
                    return Err(corrupt(
                        "record type",
                        other.into(),
                        st.head,
                        "1 (message), 2 (padding), 3 (claimed) or 4 (skip)",
                    ))
                }
            }
        }
        // The walk budget is spent and records are left (skipped claims, padding): hand back
        // what was walked; the caller comes back for the rest.
        st.walk_incomplete = true;
        Self::publish_head(mem, geo, st);
        Ok(None)
    }

    /// Hand consumed space back, crash-consistently: move the tail up to our position (if a
    /// record we stepped over may end past it: `tail_may_lag`), store the intent (`hand_back`),
    /// rewrite the space as free for the next lap, store `head` (Release) and wake producers
    /// waiting for room. A consumer killed anywhere in between leaves
    /// `hand_back > head`, and the next consumer completes the same steps at attach.
    fn publish_head(mem: &M, geo: &Geometry, st: &mut ConsumerState) {
        if st.head == st.published {
            return;
        }
        // The test hook, then whether to stop here (a modelled crash); one test when neither
        // is set.
        let (hook_fn, crash_at) = (st.hook, st.crash_at);
        let testing = hook_fn.is_some() || crash_at.is_some();
        let hook = move |step| {
            if !testing {
                return false;
            }
            if let Some(f) = hook_fn {
                f(step)
            }
            crash_at == Some(step)
        };
        if hook(HandBackStep::Start) {
            return;
        }
        // Records we consumed whose producers have not advanced the tail past them yet (slow,
        // or dead between claim and advance): move the tail up to our position first, so
        // producers never claim behind us. Only padding and skipped claims can be such records
        // (`tail_may_lag`); when there are none the tail is left alone, so that its line stays
        // with the producers, which move it at every claim.
        let h = mem.header();
        if st.tail_may_lag {
            // Bounded: producers only ever move the tail forward, so a few failed attempts mean
            // it passed us (or a hostile peer keeps rewriting it, which the next call checks).
            // Acquire here and in the CAS below: not needed (the tail is only compared; producers get the space through the intent and head).
            let mut tail = h.tail.load(ord!(Acquire));
            for _ in 0..64 {
                if tail >= st.head {
                    break;
                }
                // AcqRel/Acquire: not needed (see the load of the tail above).
                match h.tail.compare_exchange(tail, st.head, ord!(AcqRel), ord!(Acquire)) {
                    Ok(_) => tail = st.head,
                    Err(now) => tail = now,
                }
            }
            // Looked at again at the next hand-back while the tail is still seen behind us.
            st.tail_may_lag = tail < st.head;
        }
        if hook(HandBackStep::TailMoved) {
            return;
        }
        // SYNC POINT: Release pairs with the Acquire in `finish_hand_back` of a successor.
        h.hand_back.store(st.head, ord!(Release));
        if hook(HandBackStep::IntentStored) {
            return;
        }
        // (In two halves only for the hook, which stops between them.)
        let half = if testing { st.published + (st.head - st.published) / 16 * 8 } else { st.head };
        for (from, to) in [(st.published, half), (half, st.head)] {
            let mut p = from;
            while p < to {
                let next_lap = st.next_free.at(geo, p + geo.capacity);
                let end = to.min(next_lap.lap * geo.capacity);
                mem.fill_words((p & geo.mask) as usize, (end - p) as usize, next_lap.free);
                p = end;
            }
            if to == half && hook(HandBackStep::HalfFreed) {
                return;
            }
        }
        if hook(HandBackStep::Freed) {
            return;
        }
        st.published = st.head;
        // SYNC POINT: Release pairs with the producers' Acquire load of head: the free words
        // written above are visible to a producer that sees the new head.
        h.head.store(st.head, ord!(Release));
        if hook(HandBackStep::HeadStored) {
            return;
        }
        wait::notify(mem, &h.space_ready);
    }

    /// What an empty ring means: all producers closed, one died, or just nothing sent yet.
    fn producers_gone_now(mem: &M, geo: &Geometry, check_alive: bool) -> Option<RecvStop> {
        let (mut closed, mut dead) = (false, None);
        for i in 0..geo.max_producers as usize {
            match slots::peer(mem, End::Producer(i), check_alive) {
                Peer::Present => {
                    let o = Owner::decode(mem.slot(i).owner.load(ord!(Acquire)));
                    if o.state == identity::ATTACHED {
                        return None; // a live producer
                    }
                }
                Peer::Closed => closed = true,
                Peer::Dead(pid) => dead = Some(pid),
            }
        }
        match (dead, closed) {
            (Some(pid), _) => Some(RecvStop::PeerDead { pid }),
            (None, true) => Some(RecvStop::Disconnected),
            (None, false) => None,
        }
    }
}

impl<M: Memory> Core<M> for MpscConsumer<M> {
    fn attach(mem: M, geo: Geometry) -> Result<Self, AttachError> {
        Self::attach_mem(mem, geo)
    }

    fn parts(&self) -> (&M, &Geometry) {
        (&self.mem, &self.geo)
    }
}

impl<M: Memory> ConsumerCore<M> for MpscConsumer<M> {
    fn position(&self) -> u64 {
        self.st.head
    }

    fn try_next(&mut self) -> Result<Next, RecvFail> {
        if let Some(n) = Self::next(&self.mem, &self.geo, &mut self.st)? {
            return Ok(n);
        }
        if self.st.walk_incomplete {
            return Err(RecvFail::Empty); // nothing found within the budget of one call
        }
        let check = self.st.liveness.due();
        match Self::producers_gone_now(&self.mem, &self.geo, check) {
            None => Err(RecvFail::Empty),
            Some(gone) => {
                // Skip the gone producers' abandoned claims now: messages behind them come
                // before the error.
                self.st.force_check = true;
                let last = Self::next(&self.mem, &self.geo, &mut self.st);
                self.st.force_check = false;
                match last? {
                    Some(n) => Ok(n),
                    None if self.st.walk_incomplete => Err(RecvFail::Empty), // more to walk
                    None => Err(RecvFail::Stop(gone)),
                }
            }
        }
    }

    fn wait_step(&mut self, deadline: Option<Instant>) -> Result<Option<Next>, RecvStop> {
        // Once the producers are found gone, the last attempt skips their abandoned claims at
        // once (see `force_check`).
        self.st.force_check = self.st.gone_seen;
        // Walk in bounded steps, checking the deadline between them: a ring full of skipped
        // records is no reason to overrun a timeout.
        self.st.walk_limit = WAIT_WALK_RECORDS;
        loop {
            match Self::next(&self.mem, &self.geo, &mut self.st)? {
                Some(n) => return Ok(Some(n)),
                None if self.st.walk_incomplete && deadline.is_none_or(|d| Instant::now() < d) => {}
                None => return Ok(None),
            }
        }
    }

    fn producers_gone(&mut self, check_alive: bool) -> Option<RecvStop> {
        let gone = Self::producers_gone_now(&self.mem, &self.geo, check_alive);
        self.st.gone_seen = gone.is_some();
        gone
    }

    fn walk_unfinished(&self) -> bool {
        self.st.walk_incomplete
    }

    fn wait_done(&mut self) {
        self.st.force_check = false;
        self.st.gone_seen = false;
        self.st.walk_limit = u64::MAX;
    }

    fn consume(&mut self, n: Next) {
        self.st.head += record_size(n.len) as u64;
        // Hand space back per quarter ring, or at once when this was the last message known:
        // a lagging consumer batches its releases, one that is caught up never holds space.
        let quarter = self.st.head - self.st.published >= self.geo.capacity / 4;
        let idx = (self.st.head & self.geo.mask) as usize;
        let caught_up = !quarter
            && self.mem.record(idx).load(Ordering::Relaxed) == self.st.free.at(&self.geo, self.st.head).free;
        if quarter || caught_up {
            Self::publish_head(&self.mem, &self.geo, &mut self.st);
        }
    }

    fn advance(&mut self, n: Next) {
        self.st.head += record_size(n.len) as u64;
    }

    fn next_in_batch(&mut self) -> Option<Next> {
        Self::next(&self.mem, &self.geo, &mut self.st).ok().flatten()
    }

    fn flush(&mut self) {
        Self::publish_head(&self.mem, &self.geo, &mut self.st);
    }
}

/// What only an MPSC consumer has: test hooks.
impl<M: Memory> Consumer<M> {
    /// Test hook: call `hook` at each step of every hand-back of consumed space.
    #[doc(hidden)]
    pub fn set_hand_back_hook(&mut self, hook: fn(HandBackStep)) {
        self.core.st.hook = Some(hook);
    }
}

impl<M: Memory> Drop for MpscConsumer<M> {
    fn drop(&mut self) {
        if !self.st.me.is_ours() {
            return; // a forked child's copy: handing back or closing would be the parent's
        }
        Self::publish_head(&self.mem, &self.geo, &mut self.st);
        slots::close_end(&self.mem, End::Consumer, &self.st.me);
    }
}

#[cfg(loom)]
impl Consumer {
    /// Model of a consumer killed at `step` of its next hand-back: it hands back what it
    /// consumed, stopping at `step`, and is forgotten without closing (its slot stays taken).
    pub fn crash_in_hand_back(mut self, step: HandBackStep) {
        let core = &mut self.core;
        core.st.crash_at = Some(step);
        MpscConsumer::publish_head(&core.mem, &core.geo, &mut core.st);
        std::mem::forget(self);
    }

    /// Model of a consumer that will be killed at `step` of its hand-backs: each later hand-back
    /// (inside `try_recv` too) stops there. Forget the consumer afterwards, as a dead one is.
    pub fn crash_at(&mut self, step: HandBackStep) {
        self.core.st.crash_at = Some(step);
    }
}
