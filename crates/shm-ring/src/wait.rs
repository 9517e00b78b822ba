//! Sleeping and waking across processes: spin briefly (less after waits that ended asleep: see
//! [`Spin`]), then sleep on a futex word in the header.
//!
//! The handshake, for a waiter W (consumer waiting for data, or producer waiting for space) and a
//! notifier N (the other side, after it moved its position):
//! ```text
//! W: seq = wp.seq (Acquire); wp.waiters = 1 (SeqCst); fence(SeqCst); re-check condition;
//!    futex::wait(wp.seq, seq); re-check, and announce again before sleeping again
//! N: store position (Release); fence(SeqCst);
//!    if wp.waiters != 0 && wp.waiters.swap(0) != 0 { wp.seq += 1; futex::wake_all }
//! ```
//! The two SeqCst fences order "announce, then look" against "publish, then look": either W's
//! re-check sees N's position, or N sees W's announcement and bumps `seq`, which makes the
//! futex wait return at once if W has not slept yet. No wake-up is lost (loom-checked), and a
//! busy stream with nobody asleep makes no system call at all. (One notifier skips the look on
//! purpose: the SPSC consumer's plain stores of `head` between two looks, which a producer
//! asleep for room may miss until the next look or its sleep slice; see
//! `spsc::hand_back_if_due`.)
//!
//! `waiters` is a flag, set by every waiter before it sleeps and cleared by the notifier that
//! wakes them (all of them: `wake_all`). So only the first notify after a waiter went to sleep
//! makes a system call, not every message sent while the sleeper is still waking up (a wake-up
//! takes ~70 µs on a VM, ten thousand messages of a fast stream). A waiter never clears it: one
//! that finds its condition on the re-check after announcing costs the next notifier one
//! needless wake. A second notifier N2 that finds the flag already cleared by N1 does not wake
//! anyone: W, woken by N1, re-checks; should it miss N2's position it announces again, and its
//! fence then comes after N2's in the SeqCst order (N2's swap did not see that announcement),
//! so its next re-check sees N2's position before it sleeps.

use std::time::{Duration, Instant};

use crate::layout::{Header, WaitPoint};
use crate::memory::Memory;
use crate::sync::{fence, Ordering};

/// The longest single sleep: a waiter wakes at least this often to check that its peer is alive,
/// so a peer killed with SIGKILL is noticed within about this long.
pub(crate) const SLICE: Duration = Duration::from_millis(40);

/// How long a waiter keeps re-checking before it sleeps. A peer that answers within this is met
/// with no system call on either side, and a stream whose consumer keeps up does not put it to
/// sleep between messages (each sleep would cost the producer a `FUTEX_WAKE` per message, and
/// the sleeper a wake-up: ~70 µs on a VM). An idle wait pays it once per call, against sleep
/// slices of [`SLICE`]: under 0.2 % of a core.
pub(crate) const SPIN: Duration = Duration::from_micros(50);

/// The spin of a wait that follows two or more waits in a row that ended asleep (see [`Spin`]).
const SHORT_SPIN: Duration = Duration::from_micros(5);

/// One wait in this many of a run that ends asleep spins for [`SPIN`] all the same, to find
/// out whether the peer answers within the spin again.
const PROBE_EVERY: u32 = 8;

/// How long an end's next wait spins, from how its last waits ended. A wait that had to sleep
/// paid the wake-up anyway, and its spin was time taken from whatever else the machine runs:
/// on a VM, from the vCPU that is waking the peer, so the peer answers later. So after two
/// waits in a row that ended asleep, a wait spins for [`SHORT_SPIN`] only (long enough for the
/// next message of a stream that resumes), and one in [`PROBE_EVERY`] for [`SPIN`]. A wait
/// that ends within its spin brings back the full spin at once.
///
/// Measured with shm-bench's wake round trip (pings 2 ms apart, the ponger asleep before
/// each), in turns with the bare futex ping-pong: with a fixed spin, the ring took 1.66-1.86x
/// the futex floor's time in four runs of eight (the ponger spun 50 µs after each answer while
/// the pinger's vCPU was being woken); with this, 0.78-1.09x in seven of eight and 1.27x in one.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Spin {
    asleep_in_a_row: u32,
}

impl Spin {
    pub(crate) fn budget(&self) -> Duration {
        if self.asleep_in_a_row < 2 || self.asleep_in_a_row % PROBE_EVERY == 0 {
            SPIN
        } else {
            SHORT_SPIN
        }
    }

    pub(crate) fn after(&mut self, slept: bool) {
        self.asleep_in_a_row = if slept { self.asleep_in_a_row.wrapping_add(1) } else { 0 };
    }
}

/// Re-checks between two looks at the clock while spinning, and between two `yield`s (which let
/// another thread of an oversubscribed core run).
const SPIN_CHECKS: u32 = 64;

/// The notifier's half: call right after publishing a position.
#[inline]
pub(crate) fn notify<M: Memory>(mem: &M, wp: &WaitPoint) {
    // SYNC POINT: pairs with the fence in `block_on` (see the module docs).
    fence(ord!(SeqCst));
    // The load first: a busy stream with nobody asleep does no read-modify-write here.
    // (Relaxed, both: the fence above orders them.)
    if wp.waiters.load(Ordering::Relaxed) != 0 && wp.waiters.swap(0, Ordering::Relaxed) != 0 {
        // Release: not needed (the futex compares the value only; data is published by the position store, ordered by the fences).
        wp.seq.fetch_add(1, ord!(Release));
        mem.wake(&wp.seq);
    }
}

/// Wake everyone on `wp` unconditionally (close, death of a peer).
pub(crate) fn wake_all<M: Memory>(mem: &M, wp: &WaitPoint) {
    wp.seq.fetch_add(1, ord!(SeqCst));
    mem.wake(&wp.seq);
}

/// What one attempt of a blocking operation found.
pub(crate) enum Step<T, E> {
    /// Done (successfully or with a final error).
    Done(Result<T, E>),
    /// Not yet possible: wait.
    Pending,
}

/// Why a wait ended without a result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Waited<E> {
    /// The attempt failed for good, or the peer is gone.
    Failed(E),
    /// The deadline passed.
    TimedOut,
}

/// Run `attempt` on `state` until it is done, spinning first and then sleeping on the wait
/// point `point` picks from the header of `mem_of(state)`.
///
/// `peer_gone(state, check_alive)` says whether the peer closed its end (a cheap load, asked
/// before every sleep) or, when `check_alive`, whether its process is positively dead (a probe
/// of its lock, or `kill` and a `/proc` read; asked at most once per [`SLICE`]). When the peer
/// is gone, `attempt` runs once more (the peer may have completed something just before) and
/// then the peer's error is returned. `deadline` of `None` waits forever.
///
/// `spin` says how long to spin first ([`Spin`]) and learns how this wait ended.
pub(crate) fn block_on<S, M: Memory, T, E>(
    state: &mut S,
    spin: &mut Spin,
    mem_of: for<'a> fn(&'a S) -> &'a M,
    point: fn(&Header) -> &WaitPoint,
    deadline: Option<Instant>,
    mut attempt: impl FnMut(&mut S) -> Step<T, E>,
    mut peer_gone: impl FnMut(&mut S, bool) -> Option<E>,
) -> Result<T, Waited<E>> {
    let spin_for = spin.budget();
    // Tells `spin` whether this wait slept, however it returns.
    let mut ending = Ending { spin, slept: false };
    let mut last_alive_check: Option<Instant> = None;
    // Spin for about `spin_for` (or until the deadline, if sooner); not under loom, where time does
    // not pass and spinning only multiplies the interleavings. The clock is first read after
    // SPIN_CHECKS failed attempts: a wait that ends sooner (most waits of a busy stream) never
    // reads it.
    let mut spinning = !cfg!(loom);
    let mut spin_until: Option<Instant> = None;
    let mut spins = 0u32;
    loop {
        if let Step::Done(r) = attempt(state) {
            return r.map_err(Waited::Failed);
        }
        if spinning {
            spins = spins.wrapping_add(1);
            if spins % SPIN_CHECKS != 0 {
                std::hint::spin_loop();
                continue;
            }
            let now = Instant::now();
            let until = *spin_until.get_or_insert_with(|| {
                let end = now + spin_for;
                deadline.map_or(end, |d| d.min(end))
            });
            if now < until {
                std::thread::yield_now();
                continue;
            }
            spinning = false;
        }
        let now = if cfg!(loom) { None } else { Some(Instant::now()) };
        let sleep = match deadline {
            None => SLICE,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    // Out of time; a peer that is gone still says so (a short timeout can end
                    // in the spin phase, before any sleep asked).
                    if let Some(e) = peer_gone(state, false) {
                        return finish(attempt(state), e);
                    }
                    return Err(Waited::TimedOut);
                }
                left.min(SLICE)
            }
        };
        let check_alive = match (now, last_alive_check) {
            (Some(now), Some(last)) => now.duration_since(last) >= SLICE,
            (Some(now), None) => {
                last_alive_check = Some(now);
                false
            }
            (None, _) => false,
        };
        if check_alive {
            last_alive_check = now;
        }
        if let Some(e) = peer_gone(state, check_alive) {
            return finish(attempt(state), e);
        }
        let wp = point(mem_of(state).header());
        // Acquire: not needed (only compared by the futex; the SeqCst fence below is the acquire that makes a closer's mark, made before its bump, visible to the re-check).
        let seq = wp.seq.load(ord!(Acquire));
        // SeqCst: the store-buffer pairing rests on the SeqCst fence below (loom treats SeqCst accesses as AcqRel and cannot weigh this); on the store itself it is belt and braces.
        wp.waiters.store(1, ord!(SeqCst));
        // SYNC POINT: pairs with the fence in `notify`.
        fence(ord!(SeqCst));
        if let Step::Done(r) = attempt(state) {
            // The flag stays set: the next notifier clears it (one needless wake).
            return r.map_err(Waited::Failed);
        }
        // A close that happened before our read of `seq` is visible now (the closer bumps `seq`
        // after marking itself closed); a later one bumps `seq` and ends the wait below.
        if let Some(e) = peer_gone(state, false) {
            return finish(attempt(state), e);
        }
        let mem = mem_of(state);
        ending.slept = true;
        mem.wait(&point(mem.header()).seq, seq, Some(sleep));
    }
}

/// Records in a [`Spin`] how a wait ended, when the wait returns.
struct Ending<'a> {
    spin: &'a mut Spin,
    slept: bool,
}

impl Drop for Ending<'_> {
    fn drop(&mut self) {
        self.spin.after(self.slept);
    }
}

/// The last attempt after the peer went away: its result if it completed, else the peer's error.
fn finish<T, E>(last: Step<T, E>, gone: E) -> Result<T, Waited<E>> {
    match last {
        Step::Done(r) => r.map_err(Waited::Failed),
        Step::Pending => Err(Waited::Failed(gone)),
    }
}

/// A deadline `timeout` from now (`None` if it overflows: wait forever).
pub(crate) fn deadline(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spin_shortens_after_two_sleeps_and_comes_back_after_a_wait_in_the_spin() {
        let mut spin = Spin::default();
        assert_eq!(spin.budget(), SPIN);
        spin.after(true);
        assert_eq!(spin.budget(), SPIN, "one sleep: still the full spin");
        spin.after(true);
        assert_eq!(spin.budget(), SHORT_SPIN);
        for _ in 2..PROBE_EVERY - 1 {
            spin.after(true);
            assert_eq!(spin.budget(), SHORT_SPIN);
        }
        spin.after(true);
        assert_eq!(spin.budget(), SPIN, "one wait in PROBE_EVERY probes with the full spin");
        spin.after(true);
        assert_eq!(spin.budget(), SHORT_SPIN);
        spin.after(false);
        assert_eq!(spin.budget(), SPIN, "a wait that ended in its spin brings the full spin back");
    }
}
