//! What SPSC and MPSC rings share: configuration, initialisation, the attach handshake and
//! validation, attach slots, and peer liveness.

use std::io;
use std::time::{Duration, Instant};

use shm_core::{EndLock, Liveness};

use crate::error::{AttachError, CorruptError, InitError, Role};
use crate::identity::{self, Owner};
use crate::layout::{
    self, Descriptor, Header, Kind, Slot, FIXED_HEADER, LAYOUT_VERSION, MAGIC, MAX_PRODUCERS, MIN_CAPACITY,
    STATE_EMPTY, STATE_INITIALIZING, STATE_READY,
};
use crate::memory::Memory;
use crate::sync::Ordering;

/// The largest data area accepted (1 TiB).
pub const MAX_CAPACITY: u64 = 1 << 40;

/// How to lay out a new ring.
///
/// ```
/// use shm_ring::RingConfig;
/// let config = RingConfig::spsc(1 << 16).max_message(1024);
/// assert_eq!(config.capacity(), 65536);
/// assert!(config.region_len() >= 65536);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingConfig {
    kind: Kind,
    capacity: u64,
    max_message: Option<u64>,
    max_producers: u32,
}

impl RingConfig {
    /// A single-producer single-consumer ring with `capacity` data bytes (a power of two).
    pub fn spsc(capacity: u64) -> RingConfig {
        RingConfig { kind: Kind::Spsc, capacity, max_message: None, max_producers: 1 }
    }

    /// A many-producer single-consumer ring with `capacity` data bytes and `max_producers` attach
    /// slots (at most 255).
    pub fn mpsc(capacity: u64, max_producers: u32) -> RingConfig {
        RingConfig { kind: Kind::Mpsc, capacity, max_message: None, max_producers }
    }

    /// The largest message payload (default and limit: half the capacity less 8 bytes).
    pub fn max_message(mut self, max: u64) -> RingConfig {
        self.max_message = Some(max);
        self
    }

    /// Data bytes.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The ring's kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Bytes of header before the data area.
    pub fn header_len(&self) -> usize {
        layout::header_size(self.max_producers)
    }

    /// The region length this ring needs: header plus capacity.
    pub fn region_len(&self) -> usize {
        self.header_len().saturating_add(usize::try_from(self.capacity).unwrap_or(usize::MAX))
    }

    pub(crate) fn validate(&self) -> Result<Geometry, InitError> {
        let cap = self.capacity;
        if !cap.is_power_of_two() || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&cap) {
            return Err(InitError::BadCapacity { found: cap });
        }
        let limit = layout::max_message_for(cap);
        let max = self.max_message.unwrap_or(limit);
        if max == 0 || max > limit {
            return Err(InitError::BadMaxMessage { found: max, limit });
        }
        let producers_ok = match self.kind {
            Kind::Spsc => self.max_producers == 1,
            Kind::Mpsc => (1..=MAX_PRODUCERS).contains(&self.max_producers),
        };
        if !producers_ok {
            let limit = if self.kind == Kind::Spsc { 1 } else { MAX_PRODUCERS };
            return Err(InitError::BadProducers { found: self.max_producers, limit });
        }
        Ok(Geometry {
            kind: self.kind,
            capacity: cap,
            mask: cap - 1,
            max_message: max as usize,
            header_size: self.header_len(),
            max_producers: self.max_producers,
            free_key: 0,
        })
    }
}

/// Options for attaching to an existing ring.
#[derive(Clone, Debug)]
pub struct AttachOptions {
    /// How long to wait for a creator that is still initialising (default 1 s).
    pub init_timeout: Duration,
    /// Attach even when the file or shm object belongs to another user or is writable by group
    /// or others (default false: such a ring is refused, since whoever can write it can feed
    /// this process any message). Rings in anonymous memory and received descriptors (memfd)
    /// are not checked: who can reach them was decided when the memory was shared.
    pub allow_foreign: bool,
}

impl Default for AttachOptions {
    fn default() -> Self {
        AttachOptions { init_timeout: Duration::from_secs(1), allow_foreign: false }
    }
}

/// The geometry of a ring, copied into each handle at attach and never re-read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub kind: Kind,
    pub capacity: u64,
    pub mask: u64,
    pub max_message: usize,
    pub header_size: usize,
    pub max_producers: u32,
    /// Key of the MPSC free words ([`layout::free_word`]), chosen at creation.
    pub free_key: u64,
}

/// A fresh key for a ring's free words: random, so that no payload written without knowing it
/// looks like free space (deterministic under loom).
fn new_free_key() -> u64 {
    if cfg!(loom) {
        return 0x5eed_f00d_cafe_b0ba;
    }
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded from the operating system's randomness; the time and pid make two
    // keys drawn in one thread differ as well.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// Initialise a zero-or-garbage header (the caller checked the memory is large enough).
/// `lock_creator` takes the creator's lock on the creator word ([`layout::CREATOR_WORD`]) and
/// `probe_creator` probes it (see [`Memory::lock_end`] / [`Memory::probe_end`]);
/// `fill_data(word)` stores `word` into every 8-byte word of the data area before the ring is
/// published (lap 0's free word). Returns the free-word key chosen.
pub(crate) fn init_header(
    h: &Header,
    geo: &Geometry,
    lock_creator: impl FnOnce() -> io::Result<Option<EndLock>>,
    probe_creator: impl FnOnce() -> Liveness,
    fill_data: impl FnOnce(u64),
) -> Result<u64, InitError> {
    let refused = || InitError::AlreadyInitialized {
        // Acquire: not needed (only reported in the error).
        state: h.state.load(ord!(Acquire)),
        magic: h.magic.load(Ordering::Relaxed),
    };
    // Our lock on the creator word first (file, shm, memfd): it proves us alive while we
    // initialise, and whoever else holds it is a live creator at work. Released once the ring
    // is ready.
    let lock = match lock_creator() {
        Ok(lock) => lock,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(refused()),
        Err(_) => None,
    };
    // Claim the creator word first: it names who is initialising, so an opener (or `status`)
    // can tell a creator at work from one that crashed half-way, whose ring is taken over here.
    let mine = Owner::word(identity::ATTACHED, identity::me(), lock.is_some());
    // Creator claim, here down to `creator.store(0)`: not needed (these words are only compared; openers read the descriptor after READY, whose Release covers it); kept, init runs once.
    if let Err(creator) = h.creator.compare_exchange(0, mine, ord!(AcqRel), ord!(Acquire)) {
        let crashed = h.state.load(ord!(Acquire)) != STATE_READY
            && creator_gone(h, creator, lock.is_some(), probe_creator);
        if !crashed || h.creator.compare_exchange(creator, mine, ord!(AcqRel), ord!(Acquire)).is_err() {
            return Err(refused());
        }
    } else if h.state.load(ord!(Acquire)) != STATE_EMPTY {
        // A ring made before (its creator word was cleared) or garbage: never overwrite it.
        // Release: not needed (only compared; see the creator claim above).
        h.creator.store(0, ord!(Release));
        return Err(refused());
    }
    identity::publish_namespace(&h.creator, &h.creator_ns, mine);
    // Release: not needed (INITIALIZING is only compared with READY; the READY store below publishes the header).
    h.state.store(STATE_INITIALIZING, ord!(Release));
    h.magic.store(MAGIC, Ordering::Relaxed);
    h.version.store(LAYOUT_VERSION, Ordering::Relaxed);
    h.header_size.store(geo.header_size as u32, Ordering::Relaxed);
    h.kind.store(geo.kind as u32, Ordering::Relaxed);
    h.capacity.store(geo.capacity, Ordering::Relaxed);
    h.max_message.store(geo.max_message as u32, Ordering::Relaxed);
    h.max_producers.store(geo.max_producers, Ordering::Relaxed);
    let key = new_free_key();
    h.free_key.store(key, Ordering::Relaxed);
    h.tail.store(0, Ordering::Relaxed);
    h.head.store(0, Ordering::Relaxed);
    h.hand_back.store(0, Ordering::Relaxed);
    for wp in [&h.data_ready, &h.space_ready] {
        wp.seq.store(0, Ordering::Relaxed);
        wp.waiters.store(0, Ordering::Relaxed);
    }
    fill_data(layout::free_word(key, 0));
    // SYNC POINT: Release pairs with the Acquire in `wait_ready`: every field above (and the
    // zeroed slots and free data words) is visible to an opener that sees READY.
    h.state.store(STATE_READY, ord!(Release));
    // Unlock only now: a checker that finds the creator's lock gone then sees READY.
    drop(lock);
    Ok(key)
}

/// Whether the creator named by `creator` is positively gone and left the ring unfinished.
/// `we_hold_lock`: we hold the creator-word lock ourselves, which proves a creator that locked
/// holds it no more (the kernel released it: it died, or it finished and unlocked after READY).
fn creator_gone(h: &Header, creator: u64, we_hold_lock: bool, probe: impl FnOnce() -> Liveness) -> bool {
    let o = Owner::decode(creator);
    let gone = if o.lock && we_hold_lock && o.state == identity::ATTACHED {
        true
    } else {
        identity::liveness(&h.creator, &h.creator_ns, creator, probe) == Liveness::Gone
    };
    // A creator that finished stored READY before it unlocked: look at the state again.
    // Acquire: not needed (only compared; nothing is read on the strength of it).
    gone && h.state.load(ord!(Acquire)) != STATE_READY
}

/// Wait (bounded) for the creator to publish the header, then copy the descriptor.
pub(crate) fn wait_ready(h: &Header, timeout: Duration) -> Result<Descriptor, AttachError> {
    let start = Instant::now();
    let mut state;
    let mut polls = 0u32;
    loop {
        // SYNC POINT: Acquire pairs with the creator's Release store of READY.
        state = h.state.load(ord!(Acquire));
        polls += 1;
        // (Under loom, time does not pass: a few polls stand for the timeout.)
        let out_of_time =
            if cfg!(loom) { polls > 3 || timeout.is_zero() } else { start.elapsed() >= timeout };
        if state == STATE_READY || out_of_time {
            break;
        }
        // The creator initialises in microseconds; poll gently while it does.
        if cfg!(loom) {
            crate::sync::spin_hint();
        } else {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    if state != STATE_READY {
        return Err(AttachError::NotInitialized { state, waited_ms: start.elapsed().as_millis() as u64 });
    }
    Ok(Descriptor {
        magic: h.magic.load(Ordering::Relaxed),
        version: h.version.load(Ordering::Relaxed),
        header_size: h.header_size.load(Ordering::Relaxed),
        kind: h.kind.load(Ordering::Relaxed),
        state,
        capacity: h.capacity.load(Ordering::Relaxed),
        max_message: h.max_message.load(Ordering::Relaxed),
        max_producers: h.max_producers.load(Ordering::Relaxed),
        creator: h.creator.load(Ordering::Relaxed),
        free_key: h.free_key.load(Ordering::Relaxed),
    })
}

/// Check a descriptor read from shared memory against what this build understands and what
/// the memory can hold. Nothing in it is trusted before this passes.
pub(crate) fn validate(d: &Descriptor, expect: Kind, total_len: usize) -> Result<Geometry, AttachError> {
    let bad =
        |field: &'static str, found: u64, expected: String| AttachError::BadHeader { field, found, expected };
    if d.magic != MAGIC {
        return Err(AttachError::BadMagic { found: d.magic, expected: MAGIC });
    }
    if d.version != LAYOUT_VERSION {
        return Err(AttachError::VersionMismatch { found: d.version, expected: LAYOUT_VERSION });
    }
    if d.kind != expect as u32 {
        return Err(AttachError::WrongKind { found: d.kind, expected: expect });
    }
    let producers_ok = match expect {
        Kind::Spsc => d.max_producers == 1,
        Kind::Mpsc => (1..=MAX_PRODUCERS).contains(&d.max_producers),
    };
    if !producers_ok {
        let limit = if expect == Kind::Spsc { "1".to_owned() } else { format!("1 to {MAX_PRODUCERS}") };
        return Err(bad("max_producers", d.max_producers.into(), limit));
    }
    let hs = layout::header_size(d.max_producers);
    if d.header_size as usize != hs {
        return Err(bad("header_size", d.header_size.into(), hs.to_string()));
    }
    let cap = d.capacity;
    if !cap.is_power_of_two() || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&cap) {
        return Err(bad("capacity", cap, format!("a power of two from {MIN_CAPACITY} to {MAX_CAPACITY}")));
    }
    let limit = layout::max_message_for(cap);
    if d.max_message == 0 || u64::from(d.max_message) > limit {
        return Err(bad("max_message", d.max_message.into(), format!("1 to {limit}")));
    }
    let need = hs as u64 + cap;
    if (total_len as u64) < need {
        return Err(AttachError::RegionTooSmall { need, have: total_len as u64 });
    }
    Ok(Geometry {
        kind: expect,
        capacity: cap,
        mask: cap - 1,
        max_message: d.max_message as usize,
        header_size: hs,
        max_producers: d.max_producers,
        free_key: d.free_key,
    })
}

/// Positions (bytes since the ring was created) at or above this are corrupt: a real stream
/// reaches it after 2^62 bytes (146 years at 1 GB/s), and keeping positions below it means no
/// position arithmetic can overflow, whatever a peer writes.
pub(crate) const MAX_POSITION: u64 = 1 << 62;

/// Check the shared positions: `head <= tail <= head + capacity`, both 8-aligned and below
/// [`MAX_POSITION`].
pub(crate) fn check_positions(head: u64, tail: u64, capacity: u64) -> Result<(), CorruptError> {
    if head % 8 != 0 || head >= MAX_POSITION {
        return Err(CorruptError {
            what: "consumer position",
            found: head,
            position: head,
            expected: "a multiple of 8 below 2^62",
        });
    }
    if tail % 8 != 0 || tail < head || tail - head > capacity {
        return Err(CorruptError {
            what: "producer position",
            found: tail,
            position: head,
            expected: "a multiple of 8 within capacity ahead of the consumer position",
        });
    }
    Ok(())
}

/// An attach slot of a ring: the consumer's or producer `i`'s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum End {
    Consumer,
    Producer(usize),
}

impl End {
    /// The slot (the caller checked `i < max_producers`).
    pub fn slot<M: Memory>(self, mem: &M) -> &Slot {
        match self {
            End::Consumer => &mem.header().consumer,
            End::Producer(i) => mem.slot(i),
        }
    }

    /// The header byte its holder locks: the first byte of its owner word.
    pub fn lock_offset(self) -> usize {
        match self {
            End::Consumer => layout::CONSUMER_SLOT,
            End::Producer(i) => layout::producer_slot(i),
        }
    }
}

/// A slot this end holds: the owner word it wrote, and the lock that proves it alive (if it
/// could take one). The lock is released when this is dropped, which ends do after
/// [`release_slot`] marked the word closed.
#[derive(Debug)]
pub(crate) struct Held {
    word: u64,
    _lock: Option<EndLock>,
    /// The process that attached. A child forked after the attach holds a copy of the end
    /// that is not its own: dropping it there must not close the parent's end.
    pid: u32,
}

impl Held {
    /// Whether this process is the one that attached (not a child forked since).
    pub(crate) fn is_ours(&self) -> bool {
        cfg!(loom) || std::process::id() == self.pid
    }
}

/// What the evidence says about the holder named by the attached owner word `w` of `end`.
pub(crate) fn holder_liveness<M: Memory>(mem: &M, end: End, w: u64) -> Liveness {
    let slot = end.slot(mem);
    identity::liveness(&slot.owner, &slot.pid_ns, w, || mem.probe_end(end.lock_offset()))
}

/// Whether the holder named by the attached owner word `w` of `end` is positively gone.
pub(crate) fn holder_gone<M: Memory>(mem: &M, end: End, w: u64) -> bool {
    holder_liveness(mem, end, w) == Liveness::Gone
}

/// How long a claimant waits for a holder that marked its slot closed to release its lock.
const CLOSING: Duration = Duration::from_millis(500);

/// Take `end`'s lock for a claim. `Ok(None)`: no lock can be had (the claim proceeds with pid
/// evidence only). Someone else holding it is a live holder or claimant: refused.
fn take_lock<M: Memory>(mem: &M, end: End, role: Role) -> Result<Option<EndLock>, AttachError> {
    let mut give_up = None;
    loop {
        match mem.lock_end(end.lock_offset()) {
            Ok(lock) => return Ok(lock),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // A holder that closes marks its word closed, then unlocks: give it a moment.
                // Not reached under loom (no locks on heap memory); Acquire not needed (the word is only compared).
                let o = Owner::decode(end.slot(mem).owner.load(ord!(Acquire)));
                let now = Instant::now();
                if o.state == identity::ATTACHED || now >= *give_up.get_or_insert(now + CLOSING) {
                    return Err(AttachError::AlreadyAttached { role, pid: o.pid });
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            Err(_) => return Ok(None),
        }
    }
}

/// Take an attach slot: free or closed slots are taken, a slot whose holder is positively dead
/// is taken over, any other attached slot is refused (its holder alive, or not known dead).
/// Returns what we hold and the slot's new generation.
pub(crate) fn claim_slot<M: Memory>(mem: &M, end: End, role: Role) -> Result<(Held, u32), AttachError> {
    let slot = end.slot(mem);
    let refuse = |w: u64| AttachError::AlreadyAttached { role, pid: Owner::decode(w).pid };
    // A cheap look first, so a held slot is refused without opening anything.
    // Acquire: not needed (a cheap look, only compared; the CAS below decides).
    let cur = slot.owner.load(ord!(Acquire));
    if Owner::decode(cur).state == identity::ATTACHED && !holder_gone(mem, end, cur) {
        return Err(refuse(cur));
    }
    // Our lock before our word: a checker that sees our word with `L` always finds the lock.
    let lock = take_lock(mem, end, role)?;
    let mine = Owner::word(identity::ATTACHED, identity::me(), lock.is_some());
    // Relaxed: the CAS's expected value, and the word `liveness` checks (it reads the word again
    // with Acquire before it reads the namespace); the CAS below synchronises.
    let mut cur = slot.owner.load(Ordering::Relaxed);
    // Bounded: each failed CAS means another claimant changed the word; a word that keeps
    // changing (a hostile peer) ends in a refusal.
    for _ in 0..64 {
        let o = Owner::decode(cur);
        if o.state == identity::ATTACHED {
            // Holding the slot's lock ourselves proves that a holder that locked holds it no
            // more: the kernel released it when its process died.
            let gone = (o.lock && lock.is_some()) || holder_gone(mem, end, cur);
            if !gone {
                return Err(refuse(cur));
            }
        }
        // SYNC POINT: Acquire pairs with `release_slot`'s Release: the previous holder's last
        // position is visible to us. No Release (`publish_namespace` publishes our word's
        // namespace); a failure is Relaxed (`liveness` reads the word again with Acquire).
        // Needed though no model fails without it: loom's search does not produce the stale
        // position read it prevents (see docs/loom-sites.md).
        match slot.owner.compare_exchange(cur, mine, ord!(Acquire), Ordering::Relaxed) {
            Ok(_) => {
                // AcqRel: not needed (the generation is only compared; a takeover publishes nothing of the claimant it replaces).
                let generation = slot.generation.fetch_add(1, ord!(AcqRel)).wrapping_add(1);
                let word = identity::publish_namespace(&slot.owner, &slot.pid_ns, mine);
                return Ok((Held { word, _lock: lock, pid: std::process::id() }, generation));
            }
            Err(now) => cur = now,
        }
    }
    Err(refuse(cur))
}

/// Take the consumer slot and read the positions to start from: what we hold and the
/// consumer position. A stale sleeper announcement of a dead consumer is cleared (only the
/// consumer waits for data), and inconsistent positions give the slot back and fail.
pub(crate) fn attach_consumer<M: Memory>(mem: &M, geo: &Geometry) -> Result<(Held, u64), AttachError> {
    let h = mem.header();
    let (held, _generation) = claim_slot(mem, End::Consumer, Role::Consumer)?;
    h.data_ready.waiters.store(0, Ordering::Relaxed);
    // Relaxed: a predecessor's last head is ordered before us by the slot claim (its Acquire
    // pairs with `release_slot`'s Release); the tail only checks the positions, and what the
    // consumer reads is published by the producers' own Release stores, loaded again later.
    let head = h.head.load(Ordering::Relaxed);
    let tail = h.tail.load(Ordering::Relaxed);
    if let Err(e) = check_positions(head, tail, geo.capacity) {
        release_slot(&h.consumer, &held);
        return Err(e.into());
    }
    Ok((held, head))
}

/// Give a slot back: mark it closed (keeping the pid for diagnostics) unless someone took it
/// over meanwhile (only possible on positive evidence that we died). The caller drops `held`,
/// and with it the lock, afterwards.
pub(crate) fn release_slot(slot: &Slot, held: &Held) {
    if !held.is_ours() {
        return; // a copy of the end in a forked child: the slot is the parent's
    }
    // SYNC POINT: Release pairs with the Acquire of the slot's next claim: it sees our last
    // position. (The SeqCst fence of our last `notify`, after every position store, orders it
    // too, so models catch this only with that fence weakened as well.) No Acquire: nothing is
    // read after it.
    let _ =
        slot.owner.compare_exchange(held.word, Owner::closed(held.word), ord!(Release), Ordering::Relaxed);
}

/// What a producer notes about the consumer when it attaches: the consumer slot's generation,
/// and whether a consumer was attached then.
pub(crate) fn consumer_snapshot(h: &Header) -> (u32, bool) {
    // Acquire (owner, generation): not needed (a snapshot only compared later, no data read on it).
    let owner = Owner::decode(h.consumer.owner.load(ord!(Acquire)));
    (h.consumer.generation.load(ord!(Acquire)), owner.state == identity::ATTACHED)
}

/// Whether a closed consumer slot means "disconnected" for a producer that took
/// `snapshot` ([`consumer_snapshot`]) when it attached: a consumer that closed before the
/// producer came (a file-backed ring between consumers) does not disconnect it; one that was
/// attached then, or attached and closed since, does.
pub(crate) fn consumer_left(h: &Header, snapshot: (u32, bool)) -> bool {
    let (generation, was_attached) = snapshot;
    // Acquire: not needed (only compared).
    was_attached || h.consumer.generation.load(ord!(Acquire)) != generation
}

/// How an end's peer stands, read from its slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Peer {
    /// Never attached yet, or attached and not known dead (alive, unknown, or not checked).
    Present,
    /// Detached cleanly.
    Closed,
    /// Attached, but its process is gone.
    Dead(u32),
}

/// Read a peer slot. Liveness (a lock probe, or `kill` and a `/proc` read) is checked only when
/// `check_alive`, and only positive evidence makes a peer dead.
pub(crate) fn peer<M: Memory>(mem: &M, end: End, check_alive: bool) -> Peer {
    let w = end.slot(mem).owner.load(ord!(Acquire));
    let o = Owner::decode(w);
    match o.state {
        identity::CLOSED => Peer::Closed,
        identity::ATTACHED if check_alive && holder_gone(mem, end, w) => Peer::Dead(o.pid),
        _ => Peer::Present,
    }
}

/// Rate limit for liveness checks on non-blocking paths (a lock probe or a `/proc` read each): at most one
/// per 10 ms, and the clock itself is read only every 256 calls so an empty poll stays cheap.
#[derive(Debug, Default)]
pub(crate) struct LivenessClock {
    last: Option<Instant>,
    calls: u32,
}

impl LivenessClock {
    const EVERY: Duration = Duration::from_millis(10);

    /// Whether a liveness check is due now.
    pub fn due(&mut self) -> bool {
        if cfg!(loom) {
            return false;
        }
        self.calls = self.calls.wrapping_add(1);
        if self.calls % 256 != 1 {
            return false;
        }
        let now = Instant::now();
        match self.last {
            Some(t) if now.duration_since(t) < Self::EVERY => false,
            _ => {
                self.last = Some(now);
                true
            }
        }
    }
}

/// A deadline `timeout` from now (`None` if it overflows: wait forever).
pub(crate) fn deadline(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// A `Corrupt` receive error.
pub(crate) fn corrupt(
    what: &'static str,
    found: u64,
    position: u64,
    expected: &'static str,
) -> crate::RecvError {
    crate::RecvError::Corrupt(CorruptError { what, found, position, expected })
}

/// The minimal region size any ring needs before its descriptor can even be read.
#[cfg_attr(loom, allow(dead_code))]
pub(crate) const MIN_REGION: usize = FIXED_HEADER;
