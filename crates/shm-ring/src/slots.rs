//! Attach slots and peer liveness: how an end takes its slot (and takes over a dead holder's),
//! gives it back, and judges its peer from the slot's owner word.

use std::io;
use std::time::{Duration, Instant};

use shm_core::{EndLock, Liveness};

use crate::config::check_positions;
use crate::config::Geometry;
use crate::error::{AttachError, Role, SendStop};
use crate::identity::{self, NsField, Owner};
use crate::layout::{self, Header, Slot};
use crate::memory::Memory;
use crate::sync::Ordering;

/// An attach slot of a ring: the consumer's or producer `i`'s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum End {
    Consumer,
    Producer(usize),
    /// A broadcast subscriber (the caller checked `i < subscribers`).
    Subscriber(usize),
}

impl End {
    /// The slot (the caller checked `i < max_producers`).
    pub fn slot<M: Memory>(self, mem: &M) -> &Slot {
        match self {
            End::Consumer => &mem.header().consumer,
            End::Producer(i) => mem.slot(i),
            End::Subscriber(i) => &mem.subscriber(i).slot,
        }
    }

    /// The header byte its holder locks: the first byte of its owner word.
    pub fn lock_offset(self) -> usize {
        match self {
            End::Consumer => layout::CONSUMER_SLOT,
            End::Producer(i) => layout::producer_slot(i),
            End::Subscriber(i) => layout::subscriber_slot(i),
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
    identity::liveness(&slot.owner, NsField::Tenure(&slot.tenure), w, || mem.probe_end(end.lock_offset()))
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
    // Relaxed: a cheap look, only compared (`liveness` reads the word again with Acquire); the
    // CAS below decides and synchronises.
    let cur = slot.owner.load(Ordering::Relaxed);
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
        match slot.owner.compare_exchange(cur, mine, ord!(Acquire), Ordering::Relaxed) {
            Ok(_) => {
                let Some(generation) = next_generation(slot) else {
                    release_slot(slot, &Held { word: mine, _lock: None, pid: std::process::id() });
                    return Err(refuse(mine));
                };
                let word =
                    identity::publish_namespace(&slot.owner, NsField::Tenure(&slot.tenure), generation, mine);
                return Ok((Held { word, _lock: lock, pid: std::process::id() }, generation));
            }
            Err(now) => cur = now,
        }
    }
    Err(refuse(cur))
}

/// Bump the slot's generation (keeping the namespace half of its tenure word, which
/// `publish_namespace` replaces next): the new generation. Bounded: only claimants write the
/// word, and we hold the slot, so a word that keeps changing is a hostile peer (`None`).
fn next_generation(slot: &Slot) -> Option<u32> {
    let mut t = slot.tenure.load(Ordering::Relaxed);
    for _ in 0..64 {
        let generation = Slot::generation_of(t).wrapping_add(1);
        let new = Slot::tenure(generation, Slot::pid_ns_of(t));
        // Relaxed: the generation is only compared; a takeover publishes nothing of the
        // claimant it replaces, and `publish_namespace` publishes the namespace.
        match slot.tenure.compare_exchange(t, new, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return Some(generation),
            Err(now) => t = now,
        }
    }
    None
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
    let mut tail = h.tail.load(Ordering::Relaxed);
    if geo.kind == layout::Kind::Spsc {
        // An SPSC tail may trail the records published, and so the consumer, when a producer
        // died between its publishing store and its store of `tail` (see `spsc`).
        tail = tail.max(head);
    }
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
    (h.consumer.generation(), owner.state == identity::ATTACHED)
}

/// Whether a closed consumer slot means "disconnected" for a producer that took
/// `snapshot` ([`consumer_snapshot`]) when it attached: a consumer that closed before the
/// producer came (a file-backed ring between consumers) does not disconnect it; one that was
/// attached then, or attached and closed since, does.
pub(crate) fn consumer_left(h: &Header, snapshot: (u32, bool)) -> bool {
    let (generation, was_attached) = snapshot;
    // Acquire: not needed (only compared).
    was_attached || h.consumer.generation() != generation
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
#[inline]
pub(crate) fn peer<M: Memory>(mem: &M, end: End, check_alive: bool) -> Peer {
    let w = end.slot(mem).owner.load(ord!(Acquire));
    let o = Owner::decode(w);
    match o.state {
        identity::CLOSED => Peer::Closed,
        identity::ATTACHED if check_alive && holder_gone(mem, end, w) => {
            // The holder may have closed its end after our first look and then exited (the
            // evidence of death came after): a clean close is no death. Look again.
            let now = end.slot(mem).owner.load(ord!(Acquire));
            match Owner::decode(now).state {
                identity::CLOSED => Peer::Closed,
                _ if now == w => Peer::Dead(o.pid),
                // Taken over by a new holder meanwhile.
                _ => Peer::Present,
            }
        }
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

/// How a producer sees its consumer, for a producer that took `at_attach`
/// ([`consumer_snapshot`]) when it attached: closed since we came (`Disconnected`), or dead
/// (only looked for when `check_alive`). `None`: present, or closed before we came.
pub(crate) fn consumer_gone<M: Memory>(
    mem: &M,
    at_attach: (u32, bool),
    check_alive: bool,
) -> Option<SendStop> {
    match peer(mem, End::Consumer, check_alive) {
        Peer::Dead(pid) => Some(SendStop::PeerDead { pid }),
        Peer::Closed if consumer_left(mem.header(), at_attach) => Some(SendStop::Disconnected),
        Peer::Closed | Peer::Present => None,
    }
}

/// Close an end: mark its slot closed (unless someone took it over) and wake everyone waiting
/// on either wait point, so a peer blocked on us sees the close at once. The caller drops
/// `held`, and with it the lock, afterwards.
pub(crate) fn close_end<M: Memory>(mem: &M, end: End, held: &Held) {
    let h = mem.header();
    release_slot(end.slot(mem), held);
    crate::wait::wake_all(mem, &h.data_ready);
    crate::wait::wake_all(mem, &h.space_ready);
}
