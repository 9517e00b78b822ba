//! Who holds an end of a ring, in one atomic word, and what evidence tells whether it lives.
//!
//! # The owner word
//! ```text
//!  63 62  61  60  59                   37 36                                  0
//! +-----+---+---+-----------------------+--------------------------------------+
//! |state| L | N |    pid (23 bits)      |  process start time (37 bits)        |
//! +-----+---+---+-----------------------+--------------------------------------+
//! ```
//! - `state`: 0 free (never attached), 1 attached, 2 closed (detached cleanly).
//! - `L`: the holder holds an OFD lock on the first byte of its word in the backing object (see
//!   [`shm_core::EndLock`]). Then lock evidence is authoritative: a probe that finds the lock
//!   means alive, one that finds none means gone, a failed probe means unknown. Pid evidence is
//!   not used for such a holder.
//! - `N`: the holder's PID namespace is recorded in the slot's `pid_ns` field (the creator's in
//!   the header's `creator_ns`). Without `L`, pid evidence is used only when `N` is set and the
//!   recorded namespace is known (non-zero) and equal to the checker's.
//! - `pid`: the holder's pid in its own PID namespace (Linux pids are below 2^22).
//! - `start`: its start time in clock ticks since boot (`/proc/self/stat` field 22), 0 when
//!   unknown or not below 2^37 (~43 years at 100 Hz). With 0, a reused pid is not recognised:
//!   only a pid that no longer exists counts as gone.
//!
//! # Claiming, and the namespace window
//! A claimant that can lock takes its lock *before* it writes its word (with `L`), and releases
//! it only *after* it marked the word closed, so a word with `L` always has its holder's lock
//! behind it while the holder lives. Locks also serialise claimants: whoever holds the slot's
//! lock is alive. The word is first written with `N` clear; the namespace is stored next
//! (Release), and only then is `N` set by a compare-and-swap. A checker that sees a new holder's
//! word before its namespace is stored therefore sees `N` clear and uses no pid evidence, never
//! the previous holder's namespace. A checker reads word, namespace, word again and uses the
//! namespace only if the word did not change, so a namespace stored by a later claimant is never
//! applied to an earlier word. (Orderings: the first read of the word is Acquire and pairs with
//! the Release of the CAS that set `N`; the namespace read is Acquire and pairs with a later
//! claimant's Release store of its namespace, so the second read sees that claimant's word.) (A holder killed between its claim and setting `N`, a window of
//! two instructions, leaves a word without `L` or `N`: it never looks dead. Conservative.)
//! (In the C11 model a claimant taking over a holder that died between storing its namespace
//! and setting `N` is not ordered after that store, and so could in theory be overtaken by it;
//! only a claimant without `L` could then meet it, and in practice the kernel's work around the
//! death orders it, as it does the dead holder's last positions.)
//!
//! # Verdicts
//! Only positive evidence makes a holder gone, so it is never taken over, cleaned up or
//! reported dead otherwise:
//!
//! | region | evidence | gone when |
//! |---|---|---|
//! | file, POSIX shm, memfd | `L`: OFD lock, any PID namespace | no lock on its byte |
//! | anonymous (fork) or no lock to be had | pid + start time, same PID namespace only | `kill` says `ESRCH`, or `/proc/PID/stat` shows a zombie or another start time |
//! | anything else | none | never |

use shm_core::{Liveness, ProcessIdentity};

use crate::sync::{fence, AtomicU32, AtomicU64, Ordering};

pub(crate) const ATTACHED: u64 = 1;
pub(crate) const CLOSED: u64 = 2;

pub(crate) const STATE_SHIFT: u32 = 62;
/// `L`: the holder holds an OFD lock on its word's first byte.
pub(crate) const LOCK_BIT: u64 = 1 << 61;
/// `N`: the holder's PID namespace is recorded next to the word.
pub(crate) const NS_BIT: u64 = 1 << 60;
pub(crate) const PID_SHIFT: u32 = 37;
const PID_MASK: u64 = (1 << 23) - 1;
const START_MASK: u64 = (1 << PID_SHIFT) - 1;

/// A decoded owner word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Owner {
    pub state: u64,
    /// `L`: lock evidence applies.
    pub lock: bool,
    /// `N`: the namespace field belongs to this holder.
    pub ns_known: bool,
    pub pid: u32,
    pub start: u64,
}

impl Owner {
    pub fn decode(w: u64) -> Owner {
        Owner {
            state: w >> STATE_SHIFT,
            lock: w & LOCK_BIT != 0,
            ns_known: w & NS_BIT != 0,
            pid: ((w >> PID_SHIFT) & PID_MASK) as u32,
            start: w & START_MASK,
        }
    }

    /// The word of `id` in `state`, with `L` if it holds its lock; `N` is set later, once the
    /// namespace is stored (see the module docs).
    pub fn word(state: u64, id: ProcessIdentity, lock: bool) -> u64 {
        let start = if id.start_time <= START_MASK { id.start_time } else { 0 };
        state << STATE_SHIFT
            | if lock { LOCK_BIT } else { 0 }
            | (u64::from(id.pid) & PID_MASK) << PID_SHIFT
            | start
    }

    /// `w` with its state set to closed (pid and evidence bits kept for diagnostics).
    pub fn closed(w: u64) -> u64 {
        (w & !(3 << STATE_SHIFT)) | CLOSED << STATE_SHIFT
    }
}

/// The calling process.
pub(crate) fn me() -> ProcessIdentity {
    #[cfg(loom)]
    return model_process::me();
    #[cfg(not(loom))]
    ProcessIdentity::current()
}

/// The caller's PID namespace as recorded in slots: 0 when unknown.
pub(crate) fn my_pid_ns() -> u32 {
    #[cfg(loom)]
    return model_process::pid_ns();
    // Not cached: a child forked after its parent unshared its PID namespace lives in another.
    #[cfg(not(loom))]
    shm_core::pid_namespace().unwrap_or(0)
}

/// Pid evidence about `id`, in the caller's PID namespace.
fn pid_liveness(id: ProcessIdentity) -> Liveness {
    #[cfg(loom)]
    return model_process::liveness(id);
    // Miri runs no `kill`: no evidence, so nobody is taken for dead.
    #[cfg(all(miri, not(loom)))]
    return {
        let _ = id;
        Liveness::Unknown
    };
    #[cfg(not(any(loom, miri)))]
    id.liveness()
}

/// Processes under loom (`--cfg loom`): each model thread acts as one process, pid 1 in PID
/// namespace 1 unless it says otherwise ([`crate::model::act_as`]), and a pid is gone only if
/// the thread was told so ([`crate::model::dead_here`]). So the models run the namespace rule
/// of [`liveness`] as it runs across processes, with the kernel's answers chosen by the model.
#[cfg(loom)]
pub(crate) mod model_process {
    use std::cell::RefCell;

    use shm_core::{Liveness, ProcessIdentity};

    #[derive(Default)]
    struct Process {
        pid: Option<u32>,
        pid_ns: Option<u32>,
        /// Pids that no longer exist in this thread's namespace.
        dead: Vec<u32>,
    }

    loom::thread_local! {
        static PROCESS: RefCell<Process> = RefCell::new(Process::default());
    }

    pub(crate) fn act_as(pid: u32, pid_ns: u32) {
        PROCESS.with(|p| {
            let mut p = p.borrow_mut();
            p.pid = Some(pid);
            p.pid_ns = Some(pid_ns);
        });
    }

    pub(crate) fn dead_here(pids: &[u32]) {
        PROCESS.with(|p| p.borrow_mut().dead = pids.to_vec());
    }

    pub(crate) fn me() -> ProcessIdentity {
        ProcessIdentity { pid: PROCESS.with(|p| p.borrow().pid.unwrap_or(1)), start_time: 1 }
    }

    pub(crate) fn pid_ns() -> u32 {
        PROCESS.with(|p| p.borrow().pid_ns.unwrap_or(1))
    }

    pub(crate) fn liveness(id: ProcessIdentity) -> Liveness {
        if PROCESS.with(|p| p.borrow().dead.contains(&id.pid)) {
            Liveness::Gone
        } else {
            Liveness::Alive
        }
    }
}

/// Where a holder's PID namespace is recorded: a slot's tenure word (generation and namespace,
/// see [`Slot`](crate::layout::Slot)), or the header's `creator_ns` for the creator word (which
/// is claimed again only from a creator that died, so never by the same holder twice).
#[derive(Clone, Copy)]
pub(crate) enum NsField<'a> {
    Tenure(&'a AtomicU64),
    Creator(&'a AtomicU32),
}

impl NsField<'_> {
    /// The field as one value (the tenure word, or the creator's namespace).
    fn load(self, o: Ordering) -> u64 {
        match self {
            NsField::Tenure(t) => t.load(o),
            NsField::Creator(c) => c.load(o).into(),
        }
    }

    /// The namespace in a value [`load`](NsField::load) returned.
    fn ns(self, v: u64) -> u32 {
        match self {
            NsField::Tenure(_) => crate::layout::Slot::pid_ns_of(v),
            NsField::Creator(_) => v as u32,
        }
    }
}

/// Record our namespace for the word `mine` we just wrote into `owner` (in a slot: with our
/// `generation`), then set `N`. Returns the word now in `owner` (`mine` unchanged if someone
/// replaced it meanwhile, which only a claimant with positive evidence of our death could do).
pub(crate) fn publish_namespace(owner: &AtomicU64, field: NsField<'_>, generation: u32, mine: u64) -> u64 {
    let ns = my_pid_ns();
    match field {
        // SYNC POINT: Release pairs with the Acquire load of the field in `liveness`: a checker
        // that reads our namespace and then the word sees our word, not the one we replaced.
        NsField::Tenure(t) => t.store(crate::layout::Slot::tenure(generation, ns), ord!(Release)),
        // SYNC POINT: as for the tenure. Needed as that one is; not caught by a model: a creator
        // is checked only by a second creator, whose crash takeover the models do not reach.
        NsField::Creator(c) => c.store(ns, ord!(Release)),
    }
    let with_ns = mine | NS_BIT;
    // SYNC POINT: the Release half pairs with the Acquire load of the word in `liveness`: a
    // checker that sees `N` sees our namespace. No Acquire: the result is only compared.
    match owner.compare_exchange(mine, with_ns, ord!(Release), Ordering::Relaxed) {
        Ok(_) => with_ns,
        Err(_) => mine,
    }
}

/// What the evidence says about the holder named by the attached owner word `w`, read from
/// `owner` (with its namespace in `field`). `probe` probes the holder's lock byte.
///
/// `Gone` only on positive evidence that is still about `w`: after a probe that found no lock
/// the word is read again, so a holder that closed meanwhile (marked closed, then unlocked) is
/// not taken for dead. Pid evidence is used only with a namespace of the tenure that wrote
/// `w`: the same process attaching again writes the very same word, so the word alone cannot
/// tell "still the same holder" from "closed, another claimant came and went (and stored its
/// namespace), and it came back". The tenure word (generation and namespace, read whole) can:
/// it is read before and after the second read of the word and must not have changed.
pub(crate) fn liveness(
    owner: &AtomicU64,
    field: NsField<'_>,
    w: u64,
    probe: impl FnOnce() -> Liveness,
) -> Liveness {
    let o = Owner::decode(w);
    if o.state != ATTACHED {
        return Liveness::Unknown;
    }
    if o.lock {
        let v = probe();
        if v == Liveness::Gone {
            // The holder marks its word closed before unlocking: look again.
            // Not reached under loom (no locks on heap memory); stronger than needed: the fence only keeps the re-read after the probe system call, which the memory model does not see, and the word is only compared.
            fence(ord!(SeqCst));
            if owner.load(ord!(Acquire)) != w {
                return Liveness::Unknown;
            }
        }
        return v;
    }
    if !o.ns_known {
        return Liveness::Unknown;
    }
    // The word again, a cheap early out. Relaxed: the decision below rests on the second read
    // of the word (Acquire) and the field read before and after it, which must be equal: the
    // field then is the one the holder of the second read's word stored.
    if owner.load(Ordering::Relaxed) != w {
        return Liveness::Unknown;
    }
    // SYNC POINT: Acquire pairs with the Release store of the field by the holder of `w` (or a
    // later claimant): what we read is at least that holder's namespace.
    let tag = field.load(ord!(Acquire));
    // SYNC POINT: Acquire pairs with the `N` CAS of a later claimant that wrote `w` again: the
    // field read next then shows that claimant's tenure.
    if owner.load(ord!(Acquire)) != w {
        return Liveness::Unknown;
    }
    // Relaxed: ordered after the Acquire loads above; only compared.
    let again = field.load(Ordering::Relaxed);
    let ns = field.ns(tag);
    if again != tag || ns == 0 || ns != my_pid_ns() {
        return Liveness::Unknown;
    }
    pid_liveness(ProcessIdentity { pid: o.pid, start_time: o.start })
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn dead_pid() -> (u32, u64) {
        let child = shm_testkit::fork(|| 0);
        let pid = child.pid() as u32;
        let start = ProcessIdentity::of(pid).map_or(0, |p| p.start_time);
        child.join();
        (pid, start)
    }

    #[test]
    fn round_trip() {
        let me = me();
        let w = Owner::word(ATTACHED, me, true) | NS_BIT;
        let o = Owner::decode(w);
        assert_eq!(
            (o.state, o.pid, o.start, o.lock, o.ns_known),
            (ATTACHED, me.pid, me.start_time, true, true)
        );
        let c = Owner::decode(Owner::closed(w));
        assert_eq!((c.state, c.pid, c.lock), (CLOSED, me.pid, true));
        let huge = ProcessIdentity { pid: 7, start_time: 1 << 40 };
        assert_eq!(Owner::decode(Owner::word(ATTACHED, huge, false)).start, 0, "unrepresentable: unknown");
    }

    #[test]
    fn pid_evidence_needs_the_same_recorded_namespace() {
        let me = me();
        let ns = AtomicU32::new(my_pid_ns());
        let check =
            |w: u64, ns: &AtomicU32| liveness(&AtomicU64::new(w), NsField::Creator(ns), w, || unreachable!());
        let w = Owner::word(ATTACHED, me, false) | NS_BIT;
        assert_eq!(check(w, &ns), Liveness::Alive);
        let reused = (w & !START_MASK) | (me.start_time ^ 1);
        assert_eq!(check(reused, &ns), Liveness::Gone, "another start time: a later process");

        let (pid, start) = dead_pid();
        let dead = Owner::word(ATTACHED, ProcessIdentity { pid, start_time: start }, false);
        assert_eq!(check(dead | NS_BIT, &ns), Liveness::Gone);
        // The same dead process, but its namespace not (yet) recorded: no verdict.
        assert_eq!(check(dead, &ns), Liveness::Unknown, "N clear: the namespace field is stale");
        // Recorded in another namespace, or unknown: no verdict either.
        assert_eq!(check(dead | NS_BIT, &AtomicU32::new(my_pid_ns() ^ 1)), Liveness::Unknown);
        assert_eq!(check(dead | NS_BIT, &AtomicU32::new(0)), Liveness::Unknown);
    }

    #[test]
    fn lock_evidence_is_authoritative_and_rechecked() {
        let (pid, start) = dead_pid();
        let w = Owner::word(ATTACHED, ProcessIdentity { pid, start_time: start }, true) | NS_BIT;
        let ns = AtomicU32::new(my_pid_ns());
        // A dead pid does not matter when the lock says alive.
        assert_eq!(
            liveness(&AtomicU64::new(w), NsField::Creator(&ns), w, || Liveness::Alive),
            Liveness::Alive
        );
        assert_eq!(
            liveness(&AtomicU64::new(w), NsField::Creator(&ns), w, || Liveness::Unknown),
            Liveness::Unknown
        );
        assert_eq!(liveness(&AtomicU64::new(w), NsField::Creator(&ns), w, || Liveness::Gone), Liveness::Gone);
        // No lock any more, but the word changed meanwhile (closed): not a death.
        let owner = AtomicU64::new(Owner::closed(w));
        assert_eq!(liveness(&owner, NsField::Creator(&ns), w, || Liveness::Gone), Liveness::Unknown);
    }
}
