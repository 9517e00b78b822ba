//! Where a ring's bytes live. The ring algorithm is written once over [`Memory`]: a mapped
//! [`Region`] in production, heap memory with loom's atomics in the model checks (loom cannot put
//! its atomics in mmap'd memory).

use std::mem::MaybeUninit;
use std::time::Duration;

use shm_core::{EndLock, Liveness};

#[cfg(not(loom))]
use std::sync::Arc;

#[cfg(not(loom))]
use shm_core::Region;

use crate::layout::{Header, Slot, Subscriber};
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
    /// Broadcast subscriber `i`'s entry; the caller checks `i < subscribers` of a broadcast
    /// ring's geometry.
    #[doc(hidden)]
    fn subscriber(&self, i: usize) -> &Subscriber;
    /// The record word at data index `idx`; the caller checks `idx % 8 == 0 && idx < capacity`.
    #[doc(hidden)]
    fn record(&self, idx: usize) -> &AtomicU64;
    /// The payload of the record at `idx` (8-aligned); the caller checks
    /// `idx + record_size(len) <= capacity` for the length it will access. Only the trusted
    /// zero-copy calls make slices of it; everything else copies with `copy_out` / `copy_in`.
    #[doc(hidden)]
    fn payload(&self, idx: usize) -> *mut u8;
    /// Sleep while `word == expected`, at most `timeout` (futex wait).
    #[doc(hidden)]
    fn wait(&self, word: &AtomicU32, expected: u32, timeout: Option<Duration>);
    /// Wake every sleeper on `word` (futex wake).
    #[doc(hidden)]
    fn wake(&self, word: &AtomicU32);
    /// Whether [`wake`](Memory::wake) is a kernel futex wake of the word (shared memory), so
    /// that other futex calls on it (`futex_waitv`) see it.
    #[doc(hidden)]
    fn futex_words(&self) -> bool {
        false
    }
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

    /// Copy payload bytes `offset..offset + dst.len()` of the record at `idx` into `dst`. The
    /// caller checks `idx + record_size(offset + dst.len()) <= capacity`.
    ///
    /// Sound whatever another process writes meanwhile: see [`load_payload`].
    #[doc(hidden)]
    #[inline]
    fn copy_out(&self, idx: usize, offset: usize, dst: &mut [u8]) {
        self.track_read(idx, offset + dst.len());
        // SAFETY: the caller checked the record's words covering the range lie in the data
        // area; `dst` is caller memory, valid for writes.
        unsafe { load_payload(self.payload(idx), offset, dst.as_mut_ptr(), dst.len()) }
    }

    /// `copy_out` from offset 0 into possibly uninitialised memory (a `Vec`'s spare capacity);
    /// returns `dst`, now initialised.
    #[doc(hidden)]
    #[inline]
    fn copy_out_uninit<'d>(&self, idx: usize, dst: &'d mut [MaybeUninit<u8>]) -> &'d mut [u8] {
        self.track_read(idx, dst.len());
        // SAFETY: as in `copy_out`; `load_payload` writes every byte of `dst` and reads none.
        unsafe { load_payload(self.payload(idx), 0, dst.as_mut_ptr().cast(), dst.len()) };
        // SAFETY: every byte of `dst` was written just above.
        unsafe { &mut *(dst as *mut [MaybeUninit<u8>] as *mut [u8]) }
    }

    /// [`copy_out`](Memory::copy_out) of a whole payload that may race with the producer's
    /// writes by design: the reader checks afterwards whether it was written over (a
    /// broadcast subscriber of an `Overwrite` ring), so loom's race detector is not told.
    #[doc(hidden)]
    #[inline]
    fn copy_out_racing(&self, idx: usize, dst: &mut [u8]) {
        // SAFETY: as in `copy_out`.
        unsafe { load_payload(self.payload(idx), 0, dst.as_mut_ptr(), dst.len()) }
    }

    /// Copy `src` into payload bytes `offset..offset + src.len()` of the record at `idx`. The
    /// caller checks the range as for `copy_out`, and that the record is its own to write.
    #[doc(hidden)]
    #[inline]
    fn copy_in(&self, idx: usize, offset: usize, src: &[u8]) {
        self.track_write(idx, offset + src.len());
        // SAFETY: as in `copy_out`; `src` is caller memory and cannot overlap the ring.
        unsafe { store_payload(self.payload(idx), offset, src) }
    }
}

/// Copy `len` bytes at `base + offset` to `dst`, reading the ring only with 8-byte Relaxed
/// atomic loads of aligned words (a partial first or last word is loaded whole and only the
/// bytes asked for are kept).
///
/// Every access the rings make to the data area is such an 8-byte atomic (record words, payload
/// copies, free-marking), so nothing a peer process writes, and nothing a thread of this process
/// writes through the ring's own calls, makes a copy undefined behaviour; a concurrent writer
/// can only make it return a mix of old and new words. On x86_64 the loads are plain moves.
///
/// # Safety
/// `base` is 8-aligned and the words covering `offset..offset + len` are mapped for the call;
/// `dst` is valid for writes of `len` bytes (possibly uninitialised) outside the ring.
#[inline]
unsafe fn load_payload(base: *const u8, offset: usize, dst: *mut u8, len: usize) {
    if len == 0 {
        return;
    }
    let (word_at, skip) = (offset / 8 * 8, offset % 8);
    let mut done = 0;
    if skip != 0 {
        // SAFETY: the covering word at `word_at` is mapped and 8-aligned (caller's contract).
        let w = unsafe { load_word(base.add(word_at)) }.to_ne_bytes();
        done = (8 - skip).min(len);
        // SAFETY: done <= len: inside `dst`.
        unsafe { std::ptr::copy_nonoverlapping(w.as_ptr().add(skip), dst, done) };
    }
    let at = offset + done; // 8-aligned, or done == len
    let words = (len - done) / 8;
    // SAFETY: `words` whole words from `at` lie inside the covered range; dst + done has room
    // for them.
    unsafe { shm_core::atomic_copy::load_words(base.add(at).cast(), dst.add(done), words) };
    done += words * 8;
    if done < len {
        // SAFETY: the last covering word starts at `offset + done`, 8-aligned, mapped.
        let w = unsafe { load_word(base.add(offset + done)) }.to_ne_bytes();
        // SAFETY: len - done < 8 bytes left in `dst`.
        unsafe { std::ptr::copy_nonoverlapping(w.as_ptr(), dst.add(done), len - done) };
    }
}

/// Copy `src` to `base + offset` with 8-byte Relaxed atomic stores of aligned words. A partial
/// first or last word is loaded, merged and stored back: the other bytes of that word belong to
/// the same record, which only its writer (the caller) writes under the protocol.
///
/// # Safety
/// As for [`load_payload`], with the covering words writable.
#[inline]
unsafe fn store_payload(base: *mut u8, offset: usize, src: &[u8]) {
    let len = src.len();
    // Merge `bytes` into the word at `at`, starting at byte `skip` of it.
    let merge = |at: usize, skip: usize, bytes: &[u8]| {
        // SAFETY: `at` is a covering word of the range: mapped, 8-aligned (caller's contract).
        unsafe {
            let mut w = load_word(base.add(at)).to_ne_bytes();
            w[skip..skip + bytes.len()].copy_from_slice(bytes);
            store_word(base.add(at), u64::from_ne_bytes(w));
        }
    };
    let skip = offset % 8;
    let mut done = 0;
    if skip != 0 && len > 0 {
        done = (8 - skip).min(len);
        merge(offset - skip, skip, &src[..done]);
    }
    let words = (len - done) / 8;
    // SAFETY: `words` whole words from `offset + done` (8-aligned when words > 0) lie inside the
    // covered range; `src[done..]` holds words * 8 bytes.
    unsafe {
        shm_core::atomic_copy::store_words(src.as_ptr().add(done), base.add(offset + done).cast(), words)
    };
    done += words * 8;
    if done < len {
        merge(offset + done, 0, &src[done..]);
    }
}

/// # Safety
/// `p` is 8-aligned, mapped, and accessed in this process only through 8-byte atomics.
#[inline(always)]
unsafe fn load_word(p: *const u8) -> u64 {
    // SAFETY: the caller's contract; std's AtomicU64 (not loom's: payload words are not part of
    // the models' atomics) has the layout of u64.
    unsafe { (*p.cast::<std::sync::atomic::AtomicU64>()).load(std::sync::atomic::Ordering::Relaxed) }
}

/// # Safety
/// As for [`load_word`], and writable.
#[inline(always)]
unsafe fn store_word(p: *mut u8, v: u64) {
    // SAFETY: as in `load_word`.
    unsafe { (*p.cast::<std::sync::atomic::AtomicU64>()).store(v, std::sync::atomic::Ordering::Relaxed) }
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
// Arc; all access to the shared bytes goes through atomics (payload copies included), or through
// slices made by the `unsafe` trusted calls, whose callers vouch that nobody writes them.
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
        // RegionMemory is built); Header is all atomics (its padding too: `layout::Pad`), valid for
        // any bytes and for a peer's writes at any time.
        unsafe { &*(self.region.as_ptr() as *const Header) }
    }

    #[inline]
    fn slot(&self, i: usize) -> &Slot {
        // SAFETY: the caller checked i < max_producers, and header_size (checked against the
        // region length) covers FIXED_HEADER + max_producers * SLOT_SIZE; 16-aligned.
        unsafe { &*(self.region.as_ptr().add(FIXED_HEADER + i * SLOT_SIZE) as *const Slot) }
    }

    #[inline]
    fn subscriber(&self, i: usize) -> &Subscriber {
        // SAFETY: the caller checked i < subscribers of a broadcast ring, whose header_size
        // (checked against the region length) covers subscriber_slot(subscribers); each entry
        // is a 128-aligned line of atomics (its padding too), valid for any bytes.
        unsafe { &*(self.region.as_ptr().add(crate::layout::subscriber_slot(i)) as *const Subscriber) }
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
        // Any return, an error included (futexes forbidden), is "look again" for `block_on`.
        let _ = shm_core::futex::wait(word, expected, timeout);
    }

    fn wake(&self, word: &AtomicU32) {
        shm_core::futex::wake_all(word);
    }

    fn futex_words(&self) -> bool {
        true
    }

    fn total_len(&self) -> usize {
        self.region.len()
    }

    #[inline]
    fn fill_words(&self, idx: usize, len: usize, word: u64) {
        // Atomic stores: a producer holding a stale position may compare-and-swap one of these
        // words at the same time (and fail); plain writes would race with it. (A `while` loop:
        // `step_by` cost twice the instructions per word.)
        let mut i = idx;
        while i < idx + len {
            self.record(i).store(word, crate::sync::Ordering::Relaxed);
            i += 8;
        }
    }

    fn lock_end(&self, offset: usize) -> std::io::Result<Option<EndLock>> {
        self.region.lock_end(offset)
    }

    fn probe_end(&self, offset: usize) -> Liveness {
        self.region.probe_end(offset)
    }
}

/// The memory an end uses unless it says otherwise: a [`RegionMemory`] (heap memory with loom
/// atomics under `--cfg loom`).
#[cfg(not(loom))]
#[doc(hidden)]
pub type DefaultMemory = RegionMemory;
#[cfg(loom)]
#[doc(hidden)]
pub type DefaultMemory = std::sync::Arc<HeapMemory>;

pub use heap::HeapMemory;

mod heap {
    use super::*;
    #[cfg(loom)]
    use loom::sync::{Condvar, Mutex};
    #[cfg(not(loom))]
    use std::sync::{Condvar, Mutex};

    /// A marker per 8 data bytes for loom's race detector (nothing outside loom).
    #[cfg(loom)]
    type Cell = loom::cell::UnsafeCell<()>;
    #[cfg(not(loom))]
    type Cell = ();

    /// A ring's memory on the heap, for one process: the loom models (with loom atomics) and
    /// single-process tests, Miri's among them (with std atomics). The same header and slot
    /// table, and the data area as one atomic per 8 bytes. As in a region, record words and payload bytes are the same
    /// memory: a payload is copied in and out through the very words that hold record headers
    /// and free words (8-byte Relaxed loads and stores, partial words merged), so a model sees a
    /// payload written over last lap's free word, or a payload that looks like one. A loom cell
    /// per 8-byte unit also lets loom's race detector check that every payload access is
    /// ordered by the protocol. Zero-copy slices (`*_unchecked`) are not modelled.
    pub struct HeapMemory {
        header: Header,
        slots: Vec<Slot>,
        subscribers: Vec<Subscriber>,
        words: Vec<AtomicU64>,
        cells: Vec<Cell>,
        lock: Mutex<()>,
        cond: Condvar,
    }

    // SAFETY: the loom cells are only touched (empty, as markers for loom's race detector)
    // under the ring protocol, which the models check; everything else is atomics and mutexes.
    #[cfg(loom)]
    unsafe impl Send for HeapMemory {}
    // SAFETY: as for Send.
    #[cfg(loom)]
    unsafe impl Sync for HeapMemory {}

    impl std::fmt::Debug for HeapMemory {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("HeapMemory").field("capacity", &(self.words.len() * 8)).finish()
        }
    }

    impl HeapMemory {
        /// Zeroed memory for a ring of `capacity` data bytes and `producers` slots.
        pub fn new(capacity: usize, producers: usize) -> HeapMemory {
            HeapMemory::with_subscribers(capacity, producers, 0)
        }

        /// Zeroed memory for a ring of `capacity` data bytes, `producers` producer slots and
        /// `subscribers` broadcast subscriber entries.
        pub fn with_subscribers(capacity: usize, producers: usize, subscribers: usize) -> HeapMemory {
            let slot = || Slot { owner: AtomicU64::new(0), tenure: AtomicU64::new(0) };
            HeapMemory {
                header: Header::new_zeroed(),
                slots: (0..producers).map(|_| slot()).collect(),
                subscribers: (0..subscribers).map(|_| Subscriber::new_zeroed()).collect(),
                words: (0..capacity / 8).map(|_| AtomicU64::new(0)).collect(),
                cells: (0..capacity / 8).map(|_| new_cell()).collect(),
                lock: Mutex::new(()),
                cond: Condvar::new(),
            }
        }

        /// Data bytes.
        pub fn capacity(&self) -> usize {
            self.words.len() * 8
        }

        /// Payload byte `offset` of the record at `idx`: (word index, byte in the word).
        fn at(idx: usize, offset: usize) -> (usize, usize) {
            ((idx + 8 + offset) / 8, (idx + 8 + offset) % 8)
        }
    }

    #[cfg(loom)]
    fn new_cell() -> Cell {
        loom::cell::UnsafeCell::new(())
    }
    #[cfg(not(loom))]
    fn new_cell() -> Cell {}

    /// Tell loom's race detector about a read of these bytes.
    #[cfg(loom)]
    fn touch(c: &Cell) {
        c.with(|_| ());
    }
    #[cfg(not(loom))]
    fn touch(_c: &Cell) {}

    /// Tell loom's race detector about a write of these bytes.
    #[cfg(loom)]
    fn touch_mut(c: &Cell) {
        c.with_mut(|_| ());
    }
    #[cfg(not(loom))]
    fn touch_mut(_c: &Cell) {}

    impl sealed::Sealed for HeapMemory {}
    impl<T: Memory> sealed::Sealed for std::sync::Arc<T> {}

    impl Memory for HeapMemory {
        fn header(&self) -> &Header {
            &self.header
        }
        fn slot(&self, i: usize) -> &Slot {
            &self.slots[i]
        }
        fn subscriber(&self, i: usize) -> &Subscriber {
            &self.subscribers[i]
        }
        fn record(&self, idx: usize) -> &AtomicU64 {
            &self.words[idx / 8]
        }
        #[cfg(loom)]
        fn payload(&self, _idx: usize) -> *mut u8 {
            panic!("zero-copy slices over ring memory are not modelled under loom: use the copying calls")
        }
        #[cfg(not(loom))]
        fn payload(&self, idx: usize) -> *mut u8 {
            // The payload starts 8 bytes after the record word at `idx`, in the same words.
            (self.words.as_ptr() as *mut u8).wrapping_add(idx + 8)
        }
        fn copy_out(&self, idx: usize, offset: usize, dst: &mut [u8]) {
            self.track_read(idx, offset + dst.len());
            for (i, b) in dst.iter_mut().enumerate() {
                let (w, k) = Self::at(idx, offset + i);
                *b = self.words[w].load(crate::sync::Ordering::Relaxed).to_ne_bytes()[k];
            }
        }
        fn copy_out_racing(&self, idx: usize, dst: &mut [u8]) {
            for (i, b) in dst.iter_mut().enumerate() {
                let (w, k) = Self::at(idx, i);
                *b = self.words[w].load(crate::sync::Ordering::Relaxed).to_ne_bytes()[k];
            }
        }
        fn copy_out_uninit<'d>(&self, idx: usize, dst: &'d mut [MaybeUninit<u8>]) -> &'d mut [u8] {
            for b in dst.iter_mut() {
                b.write(0);
            }
            // SAFETY: every byte of `dst` was written just above.
            let dst = unsafe { &mut *(dst as *mut [MaybeUninit<u8>] as *mut [u8]) };
            self.copy_out(idx, 0, dst);
            dst
        }
        fn copy_in(&self, idx: usize, offset: usize, src: &[u8]) {
            self.track_write(idx, offset + src.len());
            let mut i = 0;
            while i < src.len() {
                let (w, k) = Self::at(idx, offset + i);
                let n = (8 - k).min(src.len() - i);
                let word = &self.words[w];
                let mut bytes =
                    if n == 8 { [0; 8] } else { word.load(crate::sync::Ordering::Relaxed).to_ne_bytes() };
                bytes[k..k + n].copy_from_slice(&src[i..i + n]);
                word.store(u64::from_ne_bytes(bytes), crate::sync::Ordering::Relaxed);
                i += n;
            }
        }
        fn wait(&self, word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
            // A futex: the check and the sleep are atomic with respect to `wake`.
            let guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            if word.load(crate::sync::Ordering::SeqCst) == expected {
                #[cfg(loom)]
                drop((timeout, self.cond.wait(guard).unwrap()));
                #[cfg(not(loom))]
                drop(self.cond.wait_timeout(guard, timeout.unwrap_or(Duration::from_secs(1))));
            }
        }
        fn wake(&self, _word: &AtomicU32) {
            let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.cond.notify_all();
        }
        fn total_len(&self) -> usize {
            usize::MAX
        }
        fn track_write(&self, idx: usize, len: usize) {
            for c in &self.cells[(idx + 8) / 8..(idx + 8 + len).div_ceil(8)] {
                touch_mut(c);
            }
        }
        fn track_read(&self, idx: usize, len: usize) {
            for c in &self.cells[(idx + 8) / 8..(idx + 8 + len).div_ceil(8)] {
                touch(c);
            }
        }
        fn fill_words(&self, idx: usize, len: usize, word: u64) {
            for c in &self.cells[idx / 8..(idx + len).div_ceil(8)] {
                touch_mut(c);
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
        fn copy_out(&self, idx: usize, offset: usize, dst: &mut [u8]) {
            (**self).copy_out(idx, offset, dst)
        }
        fn copy_out_racing(&self, idx: usize, dst: &mut [u8]) {
            (**self).copy_out_racing(idx, dst)
        }
        fn copy_out_uninit<'d>(&self, idx: usize, dst: &'d mut [MaybeUninit<u8>]) -> &'d mut [u8] {
            (**self).copy_out_uninit(idx, dst)
        }
        fn copy_in(&self, idx: usize, offset: usize, src: &[u8]) {
            (**self).copy_in(idx, offset, src)
        }
        fn header(&self) -> &Header {
            (**self).header()
        }
        fn slot(&self, i: usize) -> &Slot {
            (**self).slot(i)
        }
        fn subscriber(&self, i: usize) -> &Subscriber {
            (**self).subscriber(i)
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
        fn futex_words(&self) -> bool {
            (**self).futex_words()
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

/// The payload copies against a thread that scribbles over the same words meanwhile, as a
/// hostile peer would. Small enough for Miri (`cargo +nightly miri test -p shm-ring --lib
/// memory::tests`), which reports any data race or reference over the racing bytes.
#[cfg(all(test, not(loom)))]
mod tests {
    use super::{load_payload, store_payload};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    const WORDS: usize = 8;

    /// 8-aligned shared words, written by the scribbler with 8-byte atomics only.
    fn shared() -> Vec<AtomicU64> {
        (0..WORDS as u64).map(|i| AtomicU64::new(i * 0x0101_0101_0101_0101)).collect()
    }

    #[test]
    fn copies_match_a_plain_copy_at_every_offset_and_length() {
        let words = shared();
        let base = words.as_ptr() as *mut u8;
        let plain: Vec<u8> = words.iter().flat_map(|w| w.load(Ordering::Relaxed).to_ne_bytes()).collect();
        for offset in 0..20 {
            for len in 0..(WORDS * 8 - offset).min(30) {
                let mut out = vec![0xAA; len + 2];
                // SAFETY: the words covering offset..offset + len lie inside `words`.
                unsafe { load_payload(base, offset, out.as_mut_ptr().add(1), len) };
                assert_eq!(&out[1..=len], &plain[offset..offset + len], "offset {offset} len {len}");
                assert_eq!((out[0], out[len + 1]), (0xAA, 0xAA));

                let target = shared();
                let src: Vec<u8> = (0..len as u8).map(|b| b | 0x80).collect();
                // SAFETY: as above, for `target`, which only this thread accesses.
                unsafe { store_payload(target.as_ptr() as *mut u8, offset, &src) };
                let got: Vec<u8> =
                    target.iter().flat_map(|w| w.load(Ordering::Relaxed).to_ne_bytes()).collect();
                let mut want = plain.clone();
                want[offset..offset + len].copy_from_slice(&src);
                assert_eq!(got, want, "offset {offset} len {len}: other bytes untouched");
            }
        }
    }

    #[test]
    fn a_concurrent_scribbler_cannot_make_a_copy_undefined() {
        let words = shared();
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut x = 1u64;
                while !stop.load(Ordering::Relaxed) {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    words[(x >> 60) as usize % WORDS].store(x, Ordering::Relaxed);
                }
            });
            let base = words.as_ptr() as *mut u8;
            let mut out = vec![0u8; WORDS * 8];
            let mut vec: Vec<u8> = Vec::new();
            for round in 0..if cfg!(miri) { 20 } else { 20_000 } {
                let (offset, len) = (round % 9, WORDS * 8 - 9);
                // SAFETY: the covering words lie inside `words`, which every thread accesses
                // with 8-byte atomics only.
                unsafe { load_payload(base, offset, out.as_mut_ptr(), len) };
                // Into a Vec's spare capacity, as `try_recv` does.
                vec.clear();
                vec.reserve(len);
                // SAFETY: as above; the spare capacity holds `len` writable bytes.
                unsafe { load_payload(base, 0, vec.as_mut_ptr(), len) };
                // SAFETY: as above.
                unsafe { store_payload(base, offset, &out[..len]) };
            }
            stop.store(true, Ordering::Relaxed);
        });
    }
}
