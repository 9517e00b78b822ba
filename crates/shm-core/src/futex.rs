//! Sleep until a 32-bit word changes, and wake the sleepers, across processes (Linux futexes).
//!
//! The word normally lives in a [`Region`](crate::Region) that several processes map, so both
//! calls use the *shared* futex operations (no `FUTEX_PRIVATE_FLAG`): the kernel matches sleepers
//! by the memory backing the word, not by its address in one process. A private futex, as std's
//! own locks use, would never find a sleeper in another process.
//!
//! [`wait`] compares the word with `expected` and goes to sleep in one step inside the kernel, so
//! "store a new value, then [`wake`]" on one side and "load, check, [`wait`] on the loaded value"
//! on the other never lose a wake-up. A return from [`wait`] says nothing for certain: whatever the
//! [`Wakeup`], the caller looks at the word (and whatever it guards) again.
//!
//! # Example
//! ```
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::time::Duration;
//! use shm_core::futex::{self, Wakeup};
//!
//! let word = AtomicU32::new(0);
//! // Nobody sleeps on the word: a wake finds no one.
//! assert_eq!(futex::wake_all(&word), 0);
//! // The word does not hold 5: the call returns at once instead of sleeping.
//! assert_eq!(futex::wait(&word, 5, None)?, Wakeup::NotExpected);
//!
//! std::thread::scope(|s| {
//!     s.spawn(|| {
//!         word.store(1, Ordering::Release);
//!         futex::wake_all(&word);
//!     });
//!     // Sleep while the word says 0; any return means "look again".
//!     while word.load(Ordering::Acquire) == 0 {
//!         futex::wait(&word, 0, Some(Duration::from_secs(1)))?;
//!     }
//!     Ok::<(), std::io::Error>(())
//! })?;
//! # Ok::<(), std::io::Error>(())
//! ```

use std::io;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use nix::errno::Errno;

use crate::sys;

/// Why [`wait`] returned. Every reason means the same to a caller: check the word again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wakeup {
    /// Woken by [`wake`] or [`wake_all`] (the kernel may also wake a sleeper spuriously).
    Woken,
    /// The word did not hold `expected` when the kernel looked (`EAGAIN`): no sleep at all.
    NotExpected,
    /// The timeout passed (`ETIMEDOUT`).
    TimedOut,
    /// A signal handler ran in this thread (`EINTR`).
    Interrupted,
}

/// Sleep while `word` holds `expected`: until woken, for at most `timeout` (measured on the
/// monotonic clock; `None` waits without limit), or until a signal arrives.
///
/// The comparison and the sleep are one atomic step in the kernel, so a waker that changes the
/// word and then calls [`wake`] is never missed. The usual early returns are not errors but
/// [`Wakeup`]s: [`Wakeup::NotExpected`] (`EAGAIN`), [`Wakeup::TimedOut`] (`ETIMEDOUT`) and
/// [`Wakeup::Interrupted`] (`EINTR`).
///
/// A timeout too long for the kernel's `timespec` (beyond `i64::MAX` seconds) waits without limit.
///
/// # Errors
/// Only when futexes cannot be used at all, e.g. a seccomp filter that forbids them (`ENOSYS`,
/// `EPERM`). A caller that takes an error for one more early return stays correct, but spins
/// instead of sleeping.
pub fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> io::Result<Wakeup> {
    let ts = timeout.and_then(|d| rustix::thread::futex::Timespec::try_from(d).ok());
    match sys::futex_wait(word, expected, ts.as_ref()) {
        Ok(()) => Ok(Wakeup::Woken),
        Err(Errno::EAGAIN) => Ok(Wakeup::NotExpected),
        Err(Errno::ETIMEDOUT) => Ok(Wakeup::TimedOut),
        Err(Errno::EINTR) => Ok(Wakeup::Interrupted),
        Err(e) => Err(e.into()),
    }
}

/// Wake up to `n` threads (in any process) sleeping in [`wait`] on `word`; returns how many
/// woke. Nobody is woken for `n == 0`, and `n` is capped at `i32::MAX` (all of them).
///
/// Call it after storing the new value, so that a waiter about to sleep sees either the new value
/// (and does not sleep) or this wake.
///
/// It cannot fail on a valid word; where futexes are forbidden (see [`wait`]) it wakes nobody
/// and returns 0.
pub fn wake(word: &AtomicU32, n: u32) -> usize {
    if n == 0 {
        // FUTEX_WAKE with 0 would still wake one sleeper.
        return 0;
    }
    sys::futex_wake(word, n.min(i32::MAX as u32)).unwrap_or(0)
}

/// Wake every thread (in any process) sleeping in [`wait`] on `word`; returns how many woke.
pub fn wake_all(word: &AtomicU32) -> usize {
    wake(word, u32::MAX)
}

/// One word of a [`wait_any`]: its address and the value to sleep on. Shared, as every word
/// here: matched by the memory behind it, so a wake from any process that maps it counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitWord {
    /// The word's address. It is handed to the kernel only, never read through here, so an
    /// address that is no longer mapped gives [`WaitAny::BadAddress`], not undefined behaviour.
    pub addr: *const AtomicU32,
    /// Sleep only while the word holds this.
    pub expected: u32,
}

impl WaitWord {
    /// `word`, to sleep on while it holds `expected`.
    pub fn new(word: &AtomicU32, expected: u32) -> WaitWord {
        WaitWord { addr: word, expected }
    }
}

// SAFETY: a WaitWord is an address and a value; nothing is read through the address here
// (the kernel reads it, and copes with any address).
unsafe impl Send for WaitWord {}
// SAFETY: as for Send.
unsafe impl Sync for WaitWord {}

/// How a [`wait_any`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitAny {
    /// Woken by a wake on the word at this index (others may have been woken too).
    Woken(usize),
    /// One of the words did not hold its expected value when the call began.
    NotExpected,
    /// The timeout passed.
    TimedOut,
    /// A signal arrived.
    Interrupted,
    /// An address was not mapped (`EFAULT`): a word whose memory went away.
    BadAddress,
}

/// The most words one [`wait_any`] takes (`FUTEX_WAITV_MAX`).
pub const WAIT_ANY_MAX: usize = 128;

/// Sleep until a wake on any of `words` (at most [`WAIT_ANY_MAX`]), or until `timeout` passes
/// (`None`: no limit): `futex_waitv`, Linux 5.16 or later. As with [`wait`], any return means
/// "look again".
///
/// # Errors
/// `ENOSYS` (kind `Unsupported`) on an older kernel or under a seccomp filter that refuses the
/// call; `EINVAL` for more than [`WAIT_ANY_MAX`] words or none.
pub fn wait_any(words: &[WaitWord], timeout: Option<Duration>) -> io::Result<WaitAny> {
    match sys::futex_waitv(words, timeout) {
        Ok(i) => Ok(WaitAny::Woken(i)),
        Err(Errno::EAGAIN) => Ok(WaitAny::NotExpected),
        Err(Errno::ETIMEDOUT) => Ok(WaitAny::TimedOut),
        Err(Errno::EINTR) => Ok(WaitAny::Interrupted),
        Err(Errno::EFAULT) => Ok(WaitAny::BadAddress),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::Instant;

    use super::*;

    #[test]
    fn wrong_expected_value_returns_at_once() {
        let word = AtomicU32::new(3);
        let start = Instant::now();
        assert_eq!(wait(&word, 4, None).unwrap(), Wakeup::NotExpected);
        assert_eq!(wait(&word, 4, Some(Duration::from_secs(10))).unwrap(), Wakeup::NotExpected);
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn wake_without_sleepers_wakes_nobody() {
        let word = AtomicU32::new(0);
        assert_eq!(wake(&word, 1), 0);
        assert_eq!(wake(&word, 0), 0);
        assert_eq!(wake_all(&word), 0);
    }

    #[test]
    fn timeout_passes() {
        let word = AtomicU32::new(0);
        let timeout = Duration::from_millis(30);
        let start = Instant::now();
        assert_eq!(wait(&word, 0, Some(timeout)).unwrap(), Wakeup::TimedOut);
        assert!(start.elapsed() >= timeout, "returned after {:?}", start.elapsed());
        assert_eq!(wait(&word, 0, Some(Duration::ZERO)).unwrap(), Wakeup::TimedOut);
    }

    #[test]
    fn huge_timeout_is_no_limit() {
        // Beyond timespec's range: waits without limit, so only a mismatch can end it here.
        let word = AtomicU32::new(0);
        assert_eq!(wait(&word, 1, Some(Duration::MAX)).unwrap(), Wakeup::NotExpected);
    }

    #[test]
    fn wake_ends_the_sleep_of_a_waiting_thread() {
        let word = AtomicU32::new(0);
        std::thread::scope(|s| {
            let sleeper = s.spawn(|| wait(&word, 0, Some(Duration::from_secs(20))).unwrap());
            // A wake that finds the sleeper returns 1: poll until it has gone to sleep.
            let deadline = Instant::now() + Duration::from_secs(10);
            while wake(&word, 1) != 1 {
                assert!(Instant::now() < deadline, "the thread never slept on the word");
                std::thread::yield_now();
            }
            assert_eq!(sleeper.join().unwrap(), Wakeup::Woken);
        });
    }

    #[test]
    fn store_then_wake_ends_a_wait_loop() {
        let word = AtomicU32::new(0);
        let start = Instant::now();
        std::thread::scope(|s| {
            let sleepers: Vec<_> = (0..3)
                .map(|_| {
                    s.spawn(|| {
                        while word.load(Ordering::Acquire) == 0 {
                            let why = wait(&word, 0, Some(Duration::from_secs(20))).unwrap();
                            assert_ne!(why, Wakeup::TimedOut);
                        }
                    })
                })
                .collect();
            std::thread::sleep(Duration::from_millis(20));
            word.store(1, Ordering::Release);
            wake_all(&word);
            for t in sleepers {
                t.join().unwrap();
            }
        });
        assert!(start.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn wait_any_returns_for_a_word_not_holding_its_value_and_for_a_wake() {
        let a = AtomicU32::new(1);
        let b = AtomicU32::new(2);
        let words = [WaitWord::new(&a, 1), WaitWord::new(&b, 3)];
        assert_eq!(wait_any(&words, Some(Duration::from_secs(10))).unwrap(), WaitAny::NotExpected);
        let words = [WaitWord::new(&a, 1), WaitWord::new(&b, 2)];
        assert_eq!(wait_any(&words, Some(Duration::from_millis(20))).unwrap(), WaitAny::TimedOut);
        std::thread::scope(|s| {
            let sleeper = s.spawn(|| wait_any(&words, Some(Duration::from_secs(20))).unwrap());
            let deadline = Instant::now() + Duration::from_secs(10);
            while wake(&b, 1) != 1 {
                assert!(Instant::now() < deadline, "the thread never slept on the words");
                std::thread::yield_now();
            }
            assert_eq!(sleeper.join().unwrap(), WaitAny::Woken(1));
            let sleeper = s.spawn(|| wait_any(&words, Some(Duration::from_secs(20))).unwrap());
            while wake(&a, 1) != 1 {
                assert!(Instant::now() < deadline, "the thread never slept on the words");
                std::thread::yield_now();
            }
            assert_eq!(sleeper.join().unwrap(), WaitAny::Woken(0));
        });
    }

    #[test]
    fn wait_any_on_an_unmapped_address_is_an_answer_not_a_crash() {
        let words = [WaitWord { addr: 8 as *const AtomicU32, expected: 0 }];
        assert_eq!(wait_any(&words, Some(Duration::from_secs(1))).unwrap(), WaitAny::BadAddress);
    }
}
