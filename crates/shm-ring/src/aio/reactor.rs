//! The waker threads: sleep on the wait words of every pending async call at once, and wake
//! the tasks whose word moved.
//!
//! A pending call *arms* a [`Registration`]: the address of a wait point's `seq` word in the
//! ring's header, the value it read there before announcing itself (see [`crate::wait`]), its
//! task's `Waker`, and when it wants to be polled anyway (to check that its peer is alive).
//! A waker thread ("shard") sleeps until one of its armed words is woken or moved, or until the
//! earliest such deadline, then wakes the task of every entry whose word no longer holds its
//! value, or whose deadline passed, and disarms it.
//!
//! Two ways to sleep on many words:
//! - **`futex_waitv`** (Linux 5.16 and later): one thread sleeps on up to 127 words at once,
//!   plus its own control word, which an arm bumps so that the thread takes the new word into
//!   its set. One thread serves a process's first 127 pending calls, a second the next 127, ...
//! - **one thread per pending call**, where `futex_waitv` is refused (an older kernel, a seccomp
//!   filter), or when `SHM_RING_ASYNC_WAITER=threads` is set: each thread sleeps on one word
//!   with a plain futex wait, or on its control word while it has none.
//!
//! A thread with no entry for [`RETIRE_AFTER`] ends.
//!
//! Words of memory whose wake is not a kernel futex wake (the heap memory of tests and models)
//! always take the second way, through the memory's own `wait`.
//!
//! An entry holds a handle on the memory it points into (`keeper`), and a shard copies that
//! handle before it sleeps on the word: the mapping cannot go away while a thread sleeps on
//! it, even if the call that armed it is dropped (its end and region with it) in the meantime.
//!
//! A process that forks gets a new set of threads in the child (threads do not survive a
//! fork), the first time the child waits.

use std::fmt;
use std::task::Waker;
use std::time::{Duration, Instant};

// (std's Arc under loom too: loom's would only add leak checks, and a method on `&Arc<Self>`.)
#[cfg(loom)]
use loom::sync::{Condvar, Mutex, MutexGuard};
use std::sync::Arc;
#[cfg(not(loom))]
use std::sync::{Mutex, MutexGuard};

use crate::sync::{AtomicU32, Ordering};

/// Memory whose words a shard can sleep on: the ring's memory, type-erased.
pub(crate) trait Sleeper: Send + Sync {
    /// Sleep while `word == expected`, at most `timeout` (as [`crate::Memory::wait`]).
    fn sleep_on(&self, word: &AtomicU32, expected: u32, timeout: Option<Duration>);
    /// Whether a wake of a word of this memory is a kernel futex wake (on shared memory), so
    /// that `futex_waitv` sees it.
    fn kernel_futex(&self) -> bool;
}

impl<M: crate::Memory + 'static> Sleeper for M {
    fn sleep_on(&self, word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
        self.wait(word, expected, timeout)
    }

    fn kernel_futex(&self) -> bool {
        self.futex_words()
    }
}

/// A waker thread with no entry taken for this long ends (its shard with it).
const RETIRE_AFTER: Duration = Duration::from_secs(1);

/// The most words of one `futex_waitv` shard: `FUTEX_WAITV_MAX` less the control word.
const WAITV_ENTRIES: usize = 127;

/// How shards sleep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Many words per thread, with `futex_waitv`.
    Waitv,
    /// One word per thread.
    Threads,
}

/// A process's waker threads.
pub(crate) struct Reactor {
    /// The process it serves (its threads are that process's).
    pid: u32,
    mode: Mode,
    /// Whether shards get a thread of their own (always, but in loom models, which run
    /// [`Reactor::turn`] themselves).
    spawn: bool,
    /// Shared with the threads, which take their shard out when they retire.
    shards: Arc<Mutex<Vec<Arc<Shard>>>>,
}

impl fmt::Debug for Reactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reactor").field("mode", &self.mode).finish_non_exhaustive()
    }
}

/// One waker thread and its entries.
struct Shard {
    /// Where the thread sleeps on its words: with `futex_waitv`, or one word at a time.
    waitv: bool,
    capacity: usize,
    state: Mutex<ShardState>,
    control: Control,
    /// Loom models: the model is over, the turn returns instead of sleeping.
    #[cfg(loom)]
    stopped: crate::sync::AtomicU32,
}

struct ShardState {
    /// `None`: a free entry.
    entries: Vec<Option<Entry>>,
    /// Entries taken by a [`Registration`] (armed or not).
    taken: usize,
    /// One-word shards: the thread sleeps on an entry's word now, and does not see a kick; so
    /// the shard takes no new registration until it is back.
    on_entry_word: bool,
    /// Since when no entry is taken (`None`: one is).
    idle_since: Option<Instant>,
}

/// One registration's entry.
struct Entry {
    /// The word, in the memory `keeper` keeps mapped.
    word: *const AtomicU32,
    expected: u32,
    /// `None`: not armed (never, or fired).
    waker: Option<Waker>,
    /// Fire at this instant even if the word did not move.
    due: Option<Instant>,
    /// Armed (or re-armed) since the last deadline fired: the task answers its liveness wakes,
    /// so the next deadline fires with the entry left armed (no re-arm, no kick needed).
    answered: bool,
    keeper: Arc<dyn Sleeper>,
}

// SAFETY: `word` points into memory kept alive by `keeper` (Send + Sync), and is only read
// through atomics.
unsafe impl Send for Entry {}

/// A kick-able word of the thread's own: an arm bumps it, so that a thread asleep on its old
/// set of words looks again.
struct Control {
    word: AtomicU32,
    #[cfg(loom)]
    lock: Mutex<()>,
    #[cfg(loom)]
    cond: Condvar,
}

impl Control {
    fn new() -> Control {
        Control {
            word: AtomicU32::new(0),
            #[cfg(loom)]
            lock: Mutex::new(()),
            #[cfg(loom)]
            cond: Condvar::new(),
        }
    }

    fn value(&self) -> u32 {
        // Acquire: pairs with the Release of `kick` (the entry written before it is seen by the
        // next scan, which takes the state lock anyway).
        self.word.load(Ordering::Acquire)
    }

    fn kick(&self) {
        // Release: pairs with the Acquire of `value`.
        self.word.fetch_add(1, Ordering::Release);
        #[cfg(not(loom))]
        shm_core::futex::wake_all(&self.word);
        #[cfg(loom)]
        {
            let _g = self.lock.lock().unwrap();
            self.cond.notify_all();
        }
    }

    /// Sleep while the word holds `seen` (at most `timeout`).
    fn sleep(&self, seen: u32, timeout: Option<Duration>) {
        // (The shared futex operations, as everywhere: they work on process memory too.)
        #[cfg(not(loom))]
        let _ = shm_core::futex::wait(&self.word, seen, timeout);
        #[cfg(loom)]
        {
            let _ = timeout;
            let g = self.lock.lock().unwrap();
            if self.word.load(Ordering::SeqCst) == seen {
                drop(self.cond.wait(g).unwrap());
            }
        }
    }
}

/// The process's reactor (a new one in a child after `fork`).
///
/// Lock-free, so that a child forked while a parent's thread was in here does not wait on a
/// lock that thread held. Each reactor is leaked: one per process that waits.
#[cfg(not(loom))]
pub(crate) fn reactor() -> Arc<Reactor> {
    use std::sync::atomic::AtomicPtr;
    static CURRENT: AtomicPtr<Arc<Reactor>> = AtomicPtr::new(std::ptr::null_mut());
    let pid = std::process::id();
    loop {
        let p = CURRENT.load(std::sync::atomic::Ordering::Acquire);
        // SAFETY: a non-null pointer in CURRENT is a leaked Box (never freed), published with
        // Release by the compare-exchange below.
        if let Some(r) = unsafe { p.as_ref() } {
            if r.pid == pid {
                return r.clone();
            }
        }
        let new = Box::into_raw(Box::new(Arc::new(Reactor::new(probe_mode(), true, pid))));
        match CURRENT.compare_exchange(
            p,
            new,
            std::sync::atomic::Ordering::AcqRel,
            std::sync::atomic::Ordering::Acquire,
        ) {
            // SAFETY: `new` is the Box just leaked into CURRENT.
            Ok(_) => return unsafe { (*new).clone() },
            // Another thread put one in first: ours was never shared (and has no thread).
            // SAFETY: `new` came from Box::into_raw above and was not published.
            Err(_) => drop(unsafe { Box::from_raw(new) }),
        }
    }
}

/// `futex_waitv` if the kernel takes it and `SHM_RING_ASYNC_WAITER` does not say `threads`.
#[cfg(not(loom))]
fn probe_mode() -> Mode {
    if std::env::var("SHM_RING_ASYNC_WAITER").is_ok_and(|v| v == "threads") {
        return Mode::Threads;
    }
    let word = std::sync::atomic::AtomicU32::new(0);
    // A word not holding its expected value: the call returns at once if it exists at all.
    let probe = [shm_core::futex::WaitWord::new(&word, 1)];
    match shm_core::futex::wait_any(&probe, Some(Duration::ZERO)) {
        Ok(_) => Mode::Waitv,
        Err(_) => Mode::Threads,
    }
}

impl Reactor {
    /// A reactor whose shards sleep as `mode` says; with `spawn`, each shard gets its thread.
    pub(crate) fn new(mode: Mode, spawn: bool, pid: u32) -> Reactor {
        Reactor { pid, mode, spawn, shards: Arc::new(Mutex::new(Vec::new())) }
    }

    /// How this reactor's threads sleep.
    #[cfg(not(loom))]
    pub(crate) fn mode(&self) -> Mode {
        self.mode
    }

    /// Take an entry for a call about to wait on a word of `keeper`'s memory.
    pub(crate) fn register(&self, keeper: &Arc<dyn Sleeper>) -> Registration {
        let waitv = self.mode == Mode::Waitv && keeper.kernel_futex();
        let mut shards = lock(&self.shards);
        for shard in shards.iter() {
            if shard.waitv != waitv {
                continue;
            }
            let mut st = lock(&shard.state);
            if st.taken < shard.capacity && !st.on_entry_word {
                let slot = st.entries.iter().position(Option::is_none).unwrap_or(st.entries.len());
                if slot == st.entries.len() {
                    st.entries.push(None);
                }
                st.entries[slot] = Some(Entry::idle(keeper));
                st.taken += 1;
                st.idle_since = None;
                return Registration {
                    shard: std::mem::ManuallyDrop::new(shard.clone()),
                    slot,
                    pid: self.pid,
                };
            }
        }
        let shard = Arc::new(Shard {
            waitv,
            capacity: if waitv { WAITV_ENTRIES } else { 1 },
            state: Mutex::new(ShardState {
                entries: vec![Some(Entry::idle(keeper))],
                taken: 1,
                on_entry_word: false,
                idle_since: None,
            }),
            control: Control::new(),
            #[cfg(loom)]
            stopped: crate::sync::AtomicU32::new(0),
        });
        shards.push(shard.clone());
        #[cfg(not(loom))]
        if self.spawn {
            let (s, list) = (shard.clone(), self.shards.clone());
            std::thread::Builder::new()
                .name("shm-ring-waker".into())
                .spawn(move || {
                    while !s.retire(&list) {
                        s.turn();
                    }
                })
                .expect("shm-ring: cannot start a waker thread for async waits");
        }
        #[cfg(loom)]
        let _ = self.spawn;
        Registration { shard: std::mem::ManuallyDrop::new(shard), slot: 0, pid: self.pid }
    }

    /// Run one turn of a shard (loom models, whose one model thread stands in for all waker
    /// threads): the last shard with an entry taken, or else the first. A turn fires what is
    /// due and then sleeps until a word moves (or a kick).
    #[cfg(loom)]
    pub(crate) fn turn_one(&self) {
        let shard = {
            let shards = lock(&self.shards);
            shards.iter().rev().find(|s| lock(&s.state).taken > 0).or(shards.first()).cloned()
        };
        if let Some(s) = shard {
            s.turn();
        }
    }

    /// End the model: every shard's turn returns now and from now on, sleeping no more.
    #[cfg(loom)]
    pub(crate) fn stop(&self) {
        for s in lock(&self.shards).iter() {
            // SeqCst, with the load in `turn`: a turn that read the control word before the
            // kick below sees the kick; one that read it after sees this.
            s.stopped.store(1, Ordering::SeqCst);
            s.control.kick();
        }
    }

    /// Whether any shard exists yet (loom models: a turn needs one).
    #[cfg(loom)]
    pub(crate) fn started(&self) -> bool {
        !lock(&self.shards).is_empty()
    }

    /// Entries taken across all shards (tests: a dropped call leaves none).
    pub(crate) fn taken(&self) -> usize {
        lock(&self.shards).iter().map(|s| lock(&s.state).taken).sum()
    }

    /// Run `f` holding every shard's lock (tests: a fork taken meanwhile gives a child whose
    /// copies of the locks are held).
    #[cfg(not(loom))]
    pub(crate) fn holding_locks<R>(&self, f: impl FnOnce() -> R) -> R {
        let shards = lock(&self.shards);
        let _held: Vec<_> = shards.iter().map(|s| lock(&s.state)).collect();
        f()
    }

    /// Threads started (tests).
    #[cfg(not(loom))]
    pub(crate) fn threads(&self) -> usize {
        lock(&self.shards).len()
    }
}

impl Entry {
    fn idle(keeper: &Arc<dyn Sleeper>) -> Entry {
        Entry {
            word: std::ptr::null(),
            expected: 0,
            waker: None,
            due: None,
            answered: false,
            keeper: keeper.clone(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    #[cfg(not(loom))]
    return m.lock().unwrap_or_else(|e| e.into_inner());
    #[cfg(loom)]
    return m.lock().unwrap();
}

/// What a shard sleeps on next.
enum Sleep {
    /// No armed entry: the control word only.
    Control(u32),
    /// One word (a one-word shard).
    Word { word: *const AtomicU32, expected: u32, keeper: Arc<dyn Sleeper> },
    /// The control word and these (a `futex_waitv` shard).
    #[cfg(not(loom))]
    Many { control: u32, words: Vec<shm_core::futex::WaitWord>, _keepers: Vec<Arc<dyn Sleeper>> },
}

impl Shard {
    /// The sleep of a `futex_waitv` shard on its control word and `armed`.
    #[cfg(not(loom))]
    fn many(&self, control: u32, armed: Vec<(*const AtomicU32, u32, Arc<dyn Sleeper>)>) -> Sleep {
        let mut words = vec![shm_core::futex::WaitWord::new(&self.control.word, control)];
        let mut keepers = Vec::with_capacity(armed.len());
        for (word, expected, keeper) in armed {
            words.push(shm_core::futex::WaitWord { addr: word, expected });
            keepers.push(keeper);
        }
        Sleep::Many { control, words, _keepers: keepers }
    }

    #[cfg(loom)]
    fn many(&self, _control: u32, _armed: Vec<(*const AtomicU32, u32, Arc<dyn Sleeper>)>) -> Sleep {
        unreachable!("loom models run one-word shards")
    }

    /// Fire what moved or is due, then sleep until something may have.
    fn turn(&self) {
        let mut fire = Vec::new();
        let (sleep, timeout) = {
            let mut st = lock(&self.state);
            // Read before the scan: an arm after the scan bumps it, so the sleep below returns.
            let control = self.control.value();
            #[cfg(loom)]
            if self.stopped.load(Ordering::SeqCst) != 0 {
                return;
            }
            let now = if cfg!(loom) { None } else { Some(Instant::now()) };
            let mut next_due: Option<Instant> = None;
            let mut armed = Vec::new();
            for e in st.entries.iter_mut().flatten() {
                if e.waker.is_none() {
                    continue;
                }
                // SAFETY: `word` points into the memory `e.keeper` keeps mapped.
                let word = unsafe { &*e.word };
                // Acquire: not needed for data (the woken task looks at the ring itself); it
                // keeps the scan from seeing the word older than the notifier's wake.
                let moved = word.load(Ordering::Acquire) != e.expected;
                let due = matches!((e.due, now), (Some(d), Some(n)) if d <= n);
                if moved || (due && !e.answered) {
                    fire.extend(e.waker.take());
                    continue;
                }
                if due {
                    // A liveness wake: the entry stays armed on its word, with its next deadline
                    // one slice on; the task's re-arm, the same word and value, needs no kick.
                    fire.extend(e.waker.clone());
                    e.answered = false;
                    e.due = e.due.map(|d| d + crate::wait::SLICE);
                }
                if let Some(d) = e.due {
                    next_due = Some(next_due.map_or(d, |n| n.min(d)));
                }
                armed.push((e.word, e.expected, e.keeper.clone()));
            }
            let mut timeout = match (next_due, now) {
                (Some(d), Some(n)) => Some(d.saturating_duration_since(n)),
                _ => None,
            };
            if st.taken == 0 {
                // Nothing to wait for: sleep until a registration's kick, or until it is time to
                // retire (not under loom, whose models have no clock and no retiring threads).
                if let Some(n) = now {
                    let since = *st.idle_since.get_or_insert(n);
                    timeout = Some((since + RETIRE_AFTER).saturating_duration_since(n));
                }
            } else {
                st.idle_since = None;
            }
            let sleep = if armed.is_empty() {
                Sleep::Control(control)
            } else if !self.waitv {
                let (word, expected, keeper) = armed.pop().expect("one armed entry");
                Sleep::Word { word, expected, keeper }
            } else {
                self.many(control, armed)
            };
            st.on_entry_word = matches!(sleep, Sleep::Word { .. });
            (sleep, timeout)
        };
        for w in fire {
            w.wake();
        }
        match sleep {
            Sleep::Control(seen) => self.control.sleep(seen, timeout),
            Sleep::Word { word, expected, keeper } => {
                // SAFETY: `word` points into the memory `keeper` (held here) keeps mapped.
                keeper.sleep_on(unsafe { &*word }, expected, timeout);
            }
            #[cfg(not(loom))]
            Sleep::Many { words, control, _keepers } => {
                match shm_core::futex::wait_any(&words, timeout) {
                    Ok(_) => {}
                    // Cannot happen once the probe said yes; sleep on the control word rather
                    // than spin, and wake at the earliest deadline.
                    Err(_) => self.control.sleep(control, timeout.or(Some(crate::wait::SLICE))),
                }
            }
        }
        if !self.waitv {
            lock(&self.state).on_entry_word = false;
        }
    }
}

impl Shard {
    /// Whether the thread should end: no entry taken for [`RETIRE_AFTER`]. If so, the shard is
    /// taken out of the list first (under the list's lock, which registration holds too, so no
    /// registration can take it meanwhile).
    #[cfg(not(loom))]
    fn retire(self: &Arc<Self>, list: &Mutex<Vec<Arc<Shard>>>) -> bool {
        let mut shards = lock(list);
        let st = lock(&self.state);
        let idle =
            st.taken == 0 && !st.on_entry_word && st.idle_since.is_some_and(|t| t.elapsed() >= RETIRE_AFTER);
        if idle {
            shards.retain(|s| !Arc::ptr_eq(s, self));
        }
        idle
    }
}

/// An entry of a shard, taken by one pending call (released when dropped).
pub(crate) struct Registration {
    /// Not dropped in a forked child (see `Drop`).
    shard: std::mem::ManuallyDrop<Arc<Shard>>,
    slot: usize,
    /// The process of the reactor it was taken from.
    pid: u32,
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration").field("slot", &self.slot).finish()
    }
}

impl Registration {
    /// Whether it was taken from `reactor` (not from a parent process's, before a fork).
    pub(crate) fn of(&self, reactor: &Reactor) -> bool {
        self.pid == reactor.pid
    }

    /// Wake `waker` once `word` no longer holds `expected`, or at `due`.
    ///
    /// `word` must lie in the memory of the keeper this registration was taken with.
    pub(crate) fn arm(&self, word: &AtomicU32, expected: u32, waker: &Waker, due: Option<Instant>) {
        let kick = {
            let mut st = lock(&self.shard.state);
            let e = st.entries[self.slot].as_mut().expect("a registration's entry is taken");
            let same = e.waker.is_some() && std::ptr::eq(e.word, word) && e.expected == expected;
            match &mut e.waker {
                Some(w) if same => {
                    if !w.will_wake(waker) {
                        w.clone_from(waker);
                    }
                }
                w => *w = Some(waker.clone()),
            }
            e.word = word;
            e.expected = expected;
            // Re-armed as it was: the thread's schedule of deadlines stands.
            if !same || e.due.is_none() {
                e.due = due;
            }
            e.answered = true;
            // The thread already sleeps on this word and value: nothing to tell it.
            !same
        };
        if kick {
            self.shard.control.kick();
        }
    }

    /// Whether the entry is armed (not yet fired).
    #[cfg(test)]
    pub(crate) fn armed(&self) -> bool {
        lock(&self.shard.state).entries[self.slot].as_ref().is_some_and(|e| e.waker.is_some())
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        #[cfg(not(loom))]
        if self.pid != std::process::id() {
            // A copy, in a forked child, of the parent's registration: its shard's lock may
            // have been held by a parent's thread at the fork, and its entry's waker belongs to
            // the parent's executor. Leave all of it alone (leaked: one per fork).
            return;
        }
        {
            let mut st = lock(&self.shard.state);
            st.entries[self.slot] = None;
            st.taken -= 1;
        }
        // SAFETY: `shard` is not used after this (the registration is being dropped), and it
        // is dropped once: here.
        unsafe { std::mem::ManuallyDrop::drop(&mut self.shard) };
        // No kick: a thread asleep on this word wakes when it moves or at the entry's deadline
        // (one-word shards take no new entry until then), and a thread asleep on many words
        // loses nothing by one more.
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::task::Wake;

    use super::*;

    /// Words in process memory, woken with real futex calls.
    struct Words(Vec<AtomicU32>);

    impl Sleeper for Words {
        fn sleep_on(&self, word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
            let _ = shm_core::futex::wait(word, expected, timeout);
        }
        fn kernel_futex(&self) -> bool {
            true
        }
    }

    struct Flag(AtomicBool);

    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    fn flag() -> (Arc<Flag>, Waker) {
        let f = Arc::new(Flag(AtomicBool::new(false)));
        (f.clone(), Waker::from(f))
    }

    fn until(f: &Flag) -> bool {
        let end = Instant::now() + Duration::from_secs(20);
        while !f.0.load(Ordering::SeqCst) {
            if Instant::now() > end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    }

    fn modes() -> Vec<Mode> {
        if probe_mode() == Mode::Waitv {
            vec![Mode::Waitv, Mode::Threads]
        } else {
            vec![Mode::Threads]
        }
    }

    #[test]
    fn an_armed_entry_fires_when_its_word_moves_and_not_before() {
        for mode in modes() {
            let r = Reactor::new(mode, true, std::process::id());
            let words = Arc::new(Words((0..2).map(|_| AtomicU32::new(0)).collect()));
            let keeper: Arc<dyn Sleeper> = words.clone();
            let reg = r.register(&keeper);
            let (f, w) = flag();
            reg.arm(&words.0[0], 0, &w, None);
            std::thread::sleep(Duration::from_millis(30));
            assert!(!f.0.load(Ordering::SeqCst), "{mode:?}: fired with the word unmoved");
            assert!(reg.armed());
            words.0[0].store(1, Ordering::SeqCst);
            shm_core::futex::wake_all(&words.0[0]);
            assert!(until(&f), "{mode:?}: the move of the word was not seen");
            assert!(!reg.armed(), "{mode:?}: a fired entry is disarmed");
            // Armed on a value the word no longer holds: fires at once.
            let (f, w) = flag();
            reg.arm(&words.0[0], 0, &w, None);
            assert!(until(&f), "{mode:?}: a stale value was slept on");
        }
    }

    #[test]
    fn an_entry_fires_at_its_deadline_without_a_move() {
        for mode in modes() {
            let r = Reactor::new(mode, true, std::process::id());
            let words = Arc::new(Words(vec![AtomicU32::new(5)]));
            let keeper: Arc<dyn Sleeper> = words.clone();
            let reg = r.register(&keeper);
            let (f, w) = flag();
            reg.arm(&words.0[0], 5, &w, Some(Instant::now() + Duration::from_millis(20)));
            assert!(until(&f), "{mode:?}: the deadline passed unseen");
        }
    }

    #[test]
    fn dropped_registrations_free_their_entries_and_shards_hold_127_words() {
        let r = Reactor::new(probe_mode(), true, std::process::id());
        let words = Arc::new(Words((0..200).map(|_| AtomicU32::new(0)).collect()));
        let keeper: Arc<dyn Sleeper> = words.clone();
        let regs: Vec<_> = (0..200).map(|_| r.register(&keeper)).collect();
        let flags: Vec<_> = regs
            .iter()
            .zip(&words.0)
            .map(|(reg, word)| {
                let (f, w) = flag();
                reg.arm(word, 0, &w, None);
                f
            })
            .collect();
        assert_eq!(r.taken(), 200);
        if r.mode() == Mode::Waitv {
            assert_eq!(r.threads(), 2, "127 words per futex_waitv thread");
        }
        // The last word of the second shard moves: its entry fires.
        words.0[199].store(1, Ordering::SeqCst);
        shm_core::futex::wake_all(&words.0[199]);
        assert!(until(&flags[199]));
        assert!(!flags[0].0.load(Ordering::SeqCst));
        drop(regs);
        assert_eq!(r.taken(), 0);
    }

    #[test]
    fn threads_with_nothing_to_wait_for_retire() {
        let r = Reactor::new(Mode::Threads, true, std::process::id());
        let words = Arc::new(Words(vec![AtomicU32::new(0)]));
        let keeper: Arc<dyn Sleeper> = words.clone();
        // Cancelled waits: each registration dropped while its thread sleeps on its word, so
        // the next one takes a new thread.
        for _ in 0..10 {
            let reg = r.register(&keeper);
            let (_f, w) = flag();
            reg.arm(&words.0[0], 0, &w, Some(Instant::now() + Duration::from_millis(30)));
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(r.threads() >= 2, "{} threads", r.threads());
        let end = Instant::now() + Duration::from_secs(20);
        while r.threads() > 0 {
            assert!(Instant::now() < end, "{} idle threads did not retire", r.threads());
            std::thread::sleep(Duration::from_millis(10));
        }
        // A later wait starts one again, and is served.
        let reg = r.register(&keeper);
        let (f, w) = flag();
        reg.arm(&words.0[0], 1, &w, None);
        assert!(until(&f));
    }
}
