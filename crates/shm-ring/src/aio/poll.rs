//! One pending async call's wait: the poll-based twin of [`crate::wait::block_on`], over the
//! same wait points and the same announce handshake.
//!
//! A poll that finds nothing to do:
//! 1. spins first, for the blocking calls' spin budget ([`Spin`]), by waking its own task and
//!    returning `Pending`: the executor polls it again after the other tasks that are ready, so
//!    a peer that answers within microseconds is met with no system call, and no thread of the
//!    executor is held;
//! 2. then checks whether the peer closed or (once per [`SLICE`]) died;
//! 3. then announces itself as the blocking wait does (`seq` read, `waiters = 1`, SeqCst
//!    fence), looks again, and arms its [`Registration`] with the `seq` it read, so that the
//!    waker thread wakes the task when `seq` moves, and at the latest one [`SLICE`] later (for
//!    the next liveness check).
//!
//! A notifier in any process (sync or async: they run the same `notify`) either is seen by the
//! look after the fence, or sees `waiters` and bumps `seq` and wakes the futex, which the waker
//! thread sleeps on (or finds moved when it scans). No wake-up is lost: the loom model
//! `loom-tests/tests/async_wait.rs` checks it, cancellation included.
//!
//! Dropping the call drops the registration. The `waiters` flag it may have set stays (as
//! after a blocking wait that found its condition at the last look): the next notifier clears
//! it, at the cost of one `FUTEX_WAKE` that wakes nobody.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use super::reactor::{Reactor, Registration, Sleeper};
use crate::layout::{Header, WaitPoint};
use crate::memory::Memory;
use crate::sync::fence;
use crate::wait::{Spin, Step, SLICE};

/// Which reactor a pending call registers with.
#[derive(Clone)]
pub(crate) struct Waker {
    /// A loom model's reactor; `None`: the process's own, looked up at each registration (a
    /// forked child gets its own, as threads do not survive a fork).
    pub(crate) reactor: Option<Arc<Reactor>>,
    /// Whether a pending call is polled once per [`SLICE`] to look at its peer (a test turns
    /// it off, to show that every wake-up comes from the word).
    pub(crate) liveness_polls: bool,
}

impl std::fmt::Debug for Waker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waker").field("liveness_polls", &self.liveness_polls).finish_non_exhaustive()
    }
}

impl Waker {
    fn reactor(&self) -> Arc<Reactor> {
        match &self.reactor {
            Some(r) => r.clone(),
            #[cfg(not(loom))]
            None => super::reactor::reactor(),
            #[cfg(loom)]
            None => unreachable!("loom models bring their reactor"),
        }
    }
}

/// The state of one call's wait, kept across its polls.
#[derive(Debug, Default)]
pub(crate) struct Waiting {
    /// Whether a wait began (the first attempt found nothing).
    begun: bool,
    /// The end of the spin phase.
    spin_until: Option<Instant>,
    /// Whether the spin phase is over.
    spun: bool,
    /// When the peer's process was last probed for death.
    last_alive_check: Option<Instant>,
    /// Taken at the first sleep, dropped when the call is done (or dropped).
    reg: Option<Registration>,
    /// The address of the header whose wait word `reg` was taken for (it holds that memory
    /// mapped): an end whose memory changed since (its inner end swapped) registers anew.
    reg_header: usize,
}

impl Waiting {
    /// Whether a wait began and has not ended (so its end must be cleaned up on a drop).
    pub(crate) fn begun(&self) -> bool {
        self.begun
    }

    /// Poll one attempt of a call: `attempt` and `peer_gone` as for [`crate::wait::block_on`];
    /// `mem_of` gives the ring's memory, `point` the wait point in its header.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn poll<S, M: Memory + Clone + 'static, T, E>(
        &mut self,
        cx: &mut Context<'_>,
        spin: &mut Spin,
        waker: &Waker,
        state: &mut S,
        mem_of: for<'a> fn(&'a S) -> &'a M,
        point: fn(&Header) -> &WaitPoint,
        mut attempt: impl FnMut(&mut S) -> Step<T, E>,
        mut peer_gone: impl FnMut(&mut S, bool) -> Option<E>,
    ) -> Poll<Result<T, E>> {
        if let Step::Done(r) = attempt(state) {
            return self.done(spin, r);
        }
        self.begun = true;
        let now = if cfg!(loom) { None } else { Some(Instant::now()) };
        if !self.spun && !cfg!(loom) {
            let now = now.expect("a clock outside loom");
            let until = *self.spin_until.get_or_insert_with(|| now + spin.budget());
            if now < until {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
        self.spun = true;
        let check_alive = match (now, self.last_alive_check) {
            // At most one probe per slice, as a blocking wait makes (a liveness wake that comes
            // a little early skips its probe: the next one, a slice later, makes it).
            (Some(now), Some(last)) => now.duration_since(last) >= SLICE,
            (Some(now), None) => {
                self.last_alive_check = Some(now);
                false
            }
            (None, _) => false,
        };
        if check_alive {
            self.last_alive_check = now;
        }
        if let Some(e) = peer_gone(state, check_alive) {
            return self.done(spin, finish(attempt(state), e));
        }
        let wp = point(mem_of(state).header());
        // Acquire: not needed (only compared, by the waker thread's scan and futex), as in
        // `block_on`.
        let seq = wp.seq.load(ord!(Acquire));
        // SeqCst: as in `block_on`; the pairing rests on the fence below.
        wp.waiters.store(1, ord!(SeqCst));
        // SYNC POINT: pairs with the fence in `wait::notify` (as `block_on`'s does).
        fence(ord!(SeqCst));
        if let Step::Done(r) = attempt(state) {
            return self.done(spin, r);
        }
        if let Some(e) = peer_gone(state, false) {
            return self.done(spin, finish(attempt(state), e));
        }
        let reactor = waker.reactor();
        let header = mem_of(state).header() as *const Header as usize;
        if self.reg.as_ref().is_some_and(|r| !r.of(&reactor) || self.reg_header != header) {
            // Taken before a fork (from the parent's waker threads, which this process does not
            // have), or for the memory of another end: let it go.
            self.reg = None;
        }
        let reg = self.reg.get_or_insert_with(|| {
            // The memory this word lies in, kept mapped by the entry and by a thread asleep on it.
            let keeper: Arc<dyn Sleeper> = Arc::new(mem_of(state).clone());
            reactor.register(&keeper)
        });
        self.reg_header = header;
        let wp = point(mem_of(state).header());
        let due = if waker.liveness_polls { now.map(|n| n + SLICE) } else { None };
        reg.arm(&wp.seq, seq, cx.waker(), due);
        Poll::Pending
    }

    /// The call is done: account the wait to `spin`, and reset for the next call.
    fn done<T, E>(&mut self, spin: &mut Spin, r: Result<T, E>) -> Poll<Result<T, E>> {
        if self.begun {
            spin.after(self.reg.is_some());
        }
        *self = Waiting::default();
        Poll::Ready(r)
    }
}

/// The last attempt after the peer went away: its result if it completed, else the peer's error.
fn finish<T, E>(last: Step<T, E>, gone: E) -> Result<T, E> {
    match last {
        Step::Done(r) => r,
        Step::Pending => Err(gone),
    }
}
