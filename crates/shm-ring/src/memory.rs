//! Where a ring's bytes live. The ring algorithm is written once over [`Memory`]: a mapped
//! [`Region`] in production, heap memory with loom's atomics in the model checks (loom cannot put
//! its atomics in mmap'd memory).

use std::time::Duration;

use shm_core::{EndLock, Liveness};

#[cfg(not(loom))]
use std::sync::Arc;

#[cfg(not(loom))]
use shm_core::Region;

use crate::layout::{Header, Slot};
#[cfg(not(loom))]
use crate::layout::{FIXED_HEADER, SLOT_SIZE};
use crate::sync::{AtomicU32, AtomicU64};

mod sealed {
    pub trait Sealed {}
}

/// Storage for a ring: the header, the producer slot table and the data area.
///
/// Implemented for [`RegionMemory`] (production) and, under `--cfg loom`, for heap memory.
/// Callers pass only indices they have checked against the geometry copied at attach.
pub trait Memory: sealed::Sealed + Send + Sync {
    #[doc(hidden)]
    fn header(&self) -> &Header;
    /// Producer slot `i`; the caller checks `i < max_producers`.
    #[doc(hidden)]
    fn slot(&self, i: usize) -> &Slot;
    /// The record word at data index `idx`; the caller checks `idx % 8 == 0 && idx < capacity`.
    #[doc(hidden)]
    fn record(&self, idx: usize) -> &AtomicU64;
    /// The payload of the record at `idx`; the caller checks `idx + 8 + len <= capacity`.
    #[doc(hidden)]
    fn payload(&self, idx: usize) -> *mut u8;
    /// Sleep while `word == expected`, at most `timeout` (futex wait).
    #[doc(hidden)]
    fn wait(&self, word: &AtomicU32, expected: u32, timeout: Option<Duration>);
    /// Wake every sleeper on `word` (futex wake).
    #[doc(hidden)]
    fn wake(&self, word: &AtomicU32);
    /// Length of the underlying memory, for the attach checks.
    #[doc(hidden)]
    fn total_len(&self) -> usize;
    /// Hooks for loom's race detector: the payload range about to be written / read.
    #[doc(hidden)]
    fn track_write(&self, _idx: usize, _len: usize) {}
    #[doc(hidden)]
    fn track_read(&self, _idx: usize, _len: usize) {}
    /// Store `word` into every 8-byte word of `idx..idx + len` (MPSC consumer marking consumed
    /// space free for the next lap). The caller checks the range lies in the data area.
    #[doc(hidden)]
    fn fill_words(&self, idx: usize, len: usize, word: u64);
    /// Take this end's lock on header byte `offset`, through an open file description of its
    /// own (see [`Region::lock_end`](shm_core::Region::lock_end)): `Ok(None)` where no lock can
    /// be had, `WouldBlock` when another holds it.
    #[doc(hidden)]
    fn lock_end(&self, offset: usize) -> std::io::Result<Option<EndLock>>;
    /// Whether someone holds the lock on header byte `offset` (see
    /// [`Region::probe_end`](shm_core::Region::probe_end)).
    #[doc(hidden)]
    fn probe_end(&self, offset: usize) -> Liveness;
}

/// A ring's memory in a mapped [`Region`], shared with other processes.
#[cfg(not(loom))]
#[derive(Clone)]
pub struct RegionMemory {
    region: Arc<Region>,
    data: *mut u8,
}

#[cfg(not(loom))]
impl std::fmt::Debug for RegionMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegionMemory").field("region", &self.region).finish()
    }
}

// SAFETY: the raw data pointer points into `region`, which is Send + Sync and kept alive by the
// Arc; all access to the shared bytes goes through atomics or checked raw copies.
#[cfg(not(loom))]
unsafe impl Send for RegionMemory {}
// SAFETY: as for Send.
#[cfg(not(loom))]
unsafe impl Sync for RegionMemory {}

#[cfg(not(loom))]
impl RegionMemory {
    /// Wrap a region whose length is at least the fixed header. `header_size` (where the data
    /// area starts) must have been checked against the region's length by the caller.
    pub(crate) fn new(region: Arc<Region>, header_size: usize) -> RegionMemory {
        debug_assert!(region.len() >= header_size && header_size >= FIXED_HEADER);
        // SAFETY: header_size <= region.len(), so the pointer stays inside (or one past) the
        // mapping.
        let data = unsafe { region.as_mut_ptr().add(header_size) };
        RegionMemory { region, data }
    }

    /// The region.
    pub fn region(&self) -> &Arc<Region> {
        &self.region
    }
}

#[cfg(not(loom))]
impl sealed::Sealed for RegionMemory {}

#[cfg(not(loom))]
impl Memory for RegionMemory {
    #[inline]
    fn header(&self) -> &Header {
        // SAFETY: regions are page-aligned and at least FIXED_HEADER long (checked before any
        // RegionMemory is built); Header is all atomics and padding, valid for any bytes.
        unsafe { &*(self.region.as_ptr() as *const Header) }
    }

    #[inline]
    fn slot(&self, i: usize) -> &Slot {
        // SAFETY: the caller checked i < max_producers, and header_size (checked against the
        // region length) covers FIXED_HEADER + max_producers * SLOT_SIZE; 16-aligned.
        unsafe { &*(self.region.as_ptr().add(FIXED_HEADER + i * SLOT_SIZE) as *const Slot) }
    }

    #[inline]
    fn record(&self, idx: usize) -> &AtomicU64 {
        // SAFETY: the caller checked idx < capacity and idx % 8 == 0; the data area starts at a
        // multiple of 128 in a page-aligned mapping and holds capacity bytes.
        unsafe { &*(self.data.add(idx) as *const AtomicU64) }
    }

    #[inline]
    fn payload(&self, idx: usize) -> *mut u8 {
        // SAFETY: the caller checked idx + 8 + len <= capacity for the length it will access.
        unsafe { self.data.add(idx + 8) }
    }

    fn wait(&self, word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
        crate::wait::futex_wait(word, expected, timeout);
    }

    fn wake(&self, word: &AtomicU32) {
        crate::wait::futex_wake(word);
    }

    fn total_len(&self) -> usize {
        self.region.len()
    }

    fn fill_words(&self, idx: usize, len: usize, word: u64) {
        // Atomic stores: a producer holding a stale position may compare-and-swap one of these
        // words at the same time (and fail); plain writes would race with it.
        for i in (idx..idx + len).step_by(8) {
            self.record(i).store(word, crate::sync::Ordering::Relaxed);
        }
    }

    fn lock_end(&self, offset: usize) -> std::io::Result<Option<EndLock>> {
        self.region.lock_end(offset)
    }

    fn probe_end(&self, offset: usize) -> Liveness {
        self.region.probe_end(offset)
    }
}

#[cfg(loom)]
pub use heap::HeapMemory;

#[cfg(loom)]
mod heap {
    use super::*;
    use loom::sync::{Condvar, Mutex};

    /// Heap storage for the loom models: the same header, a slot table, one atomic word per 8
    /// data bytes for record headers, plain bytes for payloads, and a loom cell per 8-byte unit
    /// so loom's race detector sees every payload access.
    pub struct HeapMemory {
        header: Header,
        slots: Vec<Slot>,
        words: Vec<AtomicU64>,
        bytes: Box<[std::cell::UnsafeCell<u8>]>,
        cells: Vec<loom::cell::UnsafeCell<()>>,
        lock: Mutex<()>,
        cond: Condvar,
    }

    // SAFETY: payload bytes are only accessed under the ring protocol, which the models check.
    unsafe impl Send for HeapMemory {}
    // SAFETY: as for Send.
    unsafe impl Sync for HeapMemory {}

    impl std::fmt::Debug for HeapMemory {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("HeapMemory").field("capacity", &self.bytes.len()).finish()
        }
    }

    impl HeapMemory {
        /// Zeroed memory for a ring of `capacity` data bytes and `producers` slots.
        pub fn new(capacity: usize, producers: usize) -> HeapMemory {
            let slot = || Slot {
                owner: AtomicU64::new(0),
                generation: AtomicU32::new(0),
                pid_ns: AtomicU32::new(0),
            };
            HeapMemory {
                header: Header::new_zeroed(),
                slots: (0..producers).map(|_| slot()).collect(),
                words: (0..capacity / 8).map(|_| AtomicU64::new(0)).collect(),
                bytes: (0..capacity).map(|_| std::cell::UnsafeCell::new(0)).collect(),
                cells: (0..capacity / 8).map(|_| loom::cell::UnsafeCell::new(())).collect(),
                lock: Mutex::new(()),
                cond: Condvar::new(),
            }
        }
    }

    impl sealed::Sealed for HeapMemory {}
    impl<T: Memory> sealed::Sealed for std::sync::Arc<T> {}

    impl Memory for HeapMemory {
        fn header(&self) -> &Header {
            &self.header
        }
        fn slot(&self, i: usize) -> &Slot {
            &self.slots[i]
        }
        fn record(&self, idx: usize) -> &AtomicU64 {
            &self.words[idx / 8]
        }
        fn payload(&self, idx: usize) -> *mut u8 {
            self.bytes[idx + 8..].as_ptr() as *mut u8
        }
        fn wait(&self, word: &AtomicU32, expected: u32, _timeout: Option<Duration>) {
            // A futex: the check and the sleep are atomic with respect to `wake`.
            let guard = self.lock.lock().unwrap();
            if word.load(crate::sync::Ordering::SeqCst) == expected {
                drop(self.cond.wait(guard).unwrap());
            }
        }
        fn wake(&self, _word: &AtomicU32) {
            let _guard = self.lock.lock().unwrap();
            self.cond.notify_all();
        }
        fn total_len(&self) -> usize {
            usize::MAX
        }
        fn track_write(&self, idx: usize, len: usize) {
            for c in &self.cells[(idx + 8) / 8..(idx + 8 + len).div_ceil(8)] {
                c.with_mut(|_| ());
            }
        }
        fn track_read(&self, idx: usize, len: usize) {
            for c in &self.cells[(idx + 8) / 8..(idx + 8 + len).div_ceil(8)] {
                c.with(|_| ());
            }
        }
        fn fill_words(&self, idx: usize, len: usize, word: u64) {
            for c in &self.cells[idx / 8..(idx + len).div_ceil(8)] {
                c.with_mut(|_| ());
            }
            for w in &self.words[idx / 8..(idx + len).div_ceil(8)] {
                w.store(word, crate::sync::Ordering::Relaxed);
            }
        }
        /// Heap memory has no backing object to lock: ends hold no lock (the models use pid
        /// evidence, which under loom always says alive).
        fn lock_end(&self, _offset: usize) -> std::io::Result<Option<EndLock>> {
            Ok(None)
        }
        fn probe_end(&self, _offset: usize) -> Liveness {
            Liveness::Unknown
        }
    }

    impl<T: Memory> Memory for std::sync::Arc<T> {
        fn header(&self) -> &Header {
            (**self).header()
        }
        fn slot(&self, i: usize) -> &Slot {
            (**self).slot(i)
        }
        fn record(&self, idx: usize) -> &AtomicU64 {
            (**self).record(idx)
        }
        fn payload(&self, idx: usize) -> *mut u8 {
            (**self).payload(idx)
        }
        fn wait(&self, word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
            (**self).wait(word, expected, timeout)
        }
        fn wake(&self, word: &AtomicU32) {
            (**self).wake(word)
        }
        fn total_len(&self) -> usize {
            (**self).total_len()
        }
        fn track_write(&self, idx: usize, len: usize) {
            (**self).track_write(idx, len)
        }
        fn track_read(&self, idx: usize, len: usize) {
            (**self).track_read(idx, len)
        }
        fn fill_words(&self, idx: usize, len: usize, word: u64) {
            (**self).fill_words(idx, len, word)
        }
        fn lock_end(&self, offset: usize) -> std::io::Result<Option<EndLock>> {
            (**self).lock_end(offset)
        }
        fn probe_end(&self, offset: usize) -> Liveness {
            (**self).probe_end(offset)
        }
    }
}
