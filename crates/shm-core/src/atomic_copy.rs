//! Copies into and out of memory that another process may write at the same time.
//!
//! A plain copy (`memcpy`, `copy_nonoverlapping`) of such memory races with the other process's
//! writes, and a `&[u8]` over it promises the compiler that the bytes do not change: with a
//! buggy or hostile peer either is undefined behaviour. These copies access the shared side with
//! Relaxed atomic loads and stores instead, 8-byte words wherever the address is aligned. A
//! concurrent writer can make a copy see any mix of old and new words, never undefined
//! behaviour. On x86_64 and aarch64 each access compiles to a plain move.
//!
//! Relaxed loads of at most 8 bytes are also sound on read-only mappings.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};

/// Load the aligned word at `p`.
///
/// # Safety
/// `p` is 8-aligned and valid for reads of 8 bytes; other accesses to it are atomic or made by
/// another process.
#[inline(always)]
unsafe fn load_word(p: *const u64) -> u64 {
    // SAFETY: the caller's contract; AtomicU64 has the layout of u64, and a shared reference to
    // it (an UnsafeCell) asserts nothing about the bytes staying unchanged.
    unsafe { (*p.cast::<AtomicU64>()).load(Relaxed) }
}

/// Store `v` to the aligned word at `p`.
///
/// # Safety
/// As for [`load_word`], and valid for writes.
#[inline(always)]
unsafe fn store_word(p: *mut u64, v: u64) {
    // SAFETY: as in `load_word`.
    unsafe { (*p.cast::<AtomicU64>()).store(v, Relaxed) }
}

/// Copy `words` 8-byte words from shared memory at `src` to `dst`, one Relaxed atomic load per
/// word.
///
/// # Safety
/// - `src` is 8-aligned and valid for reads of `words * 8` bytes for the whole call (mapped, and
///   kept mapped);
/// - within this process the words are only accessed atomically, with 8-byte accesses, while
///   the copy runs (other processes may write them in any way);
/// - `dst` is valid for writes of `words * 8` bytes (any alignment, possibly uninitialised) and
///   does not overlap the source.
#[inline]
pub unsafe fn load_words(src: *const u64, dst: *mut u8, words: usize) {
    let mut i = 0;
    // Four words per round: fewer loop steps; the loads are never merged, being atomic.
    while i + 4 <= words {
        // SAFETY: i + 3 < words: inside both ranges (the caller's contract).
        unsafe {
            let (a, b) = (load_word(src.add(i)), load_word(src.add(i + 1)));
            let (c, d) = (load_word(src.add(i + 2)), load_word(src.add(i + 3)));
            let out = dst.add(i * 8).cast::<u64>();
            out.write_unaligned(a);
            out.add(1).write_unaligned(b);
            out.add(2).write_unaligned(c);
            out.add(3).write_unaligned(d);
        }
        i += 4;
    }
    while i < words {
        // SAFETY: i < words: inside both ranges.
        unsafe { dst.add(i * 8).cast::<u64>().write_unaligned(load_word(src.add(i))) };
        i += 1;
    }
}

/// Copy `words` 8-byte words from `src` to shared memory at `dst`, one Relaxed atomic store per
/// word.
///
/// # Safety
/// - `dst` is 8-aligned and valid for writes of `words * 8` bytes for the whole call;
/// - within this process the words are only accessed atomically, with 8-byte accesses, while
///   the copy runs;
/// - `src` is valid for reads of `words * 8` initialised bytes (any alignment) and does not
///   overlap the destination.
#[inline]
pub unsafe fn store_words(src: *const u8, dst: *mut u64, words: usize) {
    let mut i = 0;
    while i + 4 <= words {
        // SAFETY: i + 3 < words: inside both ranges (the caller's contract).
        unsafe {
            let from = src.add(i * 8).cast::<u64>();
            let (a, b) = (from.read_unaligned(), from.add(1).read_unaligned());
            let (c, d) = (from.add(2).read_unaligned(), from.add(3).read_unaligned());
            store_word(dst.add(i), a);
            store_word(dst.add(i + 1), b);
            store_word(dst.add(i + 2), c);
            store_word(dst.add(i + 3), d);
        }
        i += 4;
    }
    while i < words {
        // SAFETY: i < words: inside both ranges.
        unsafe { store_word(dst.add(i), src.add(i * 8).cast::<u64>().read_unaligned()) };
        i += 1;
    }
}

/// How many bytes from `p` to the next 8-aligned address (0 if aligned), at most `len`.
fn to_aligned(p: *const u8, len: usize) -> usize {
    ((8 - p as usize % 8) % 8).min(len)
}

/// Copy `len` bytes from shared memory at `src` (any alignment) to `dst`: single-byte atomic
/// loads up to the first 8-aligned address and after the last one, [`load_words`] between.
///
/// Exactly the bytes asked for are read. Where the range does not start or end on a word, the
/// edge bytes are read with 1-byte atomics, so the 8-byte-accesses rule below does not hold
/// for them: prefer [`load_words`] for memory that threads of this process also access.
///
/// # Safety
/// - `src` is valid for reads of `len` bytes for the whole call;
/// - within this process those bytes are only accessed atomically while the copy runs, with
///   accesses of the same size as this copy's (other processes may write them in any way);
/// - `dst` is valid for writes of `len` bytes and does not overlap the source.
pub unsafe fn load(src: *const u8, dst: *mut u8, len: usize) {
    let head = to_aligned(src, len);
    let words = (len - head) / 8;
    let tail = head + words * 8;
    for i in (0..head).chain(tail..len) {
        // SAFETY: i < len: inside both ranges; AtomicU8 has the layout of u8.
        unsafe { *dst.add(i) = (*src.add(i).cast::<AtomicU8>()).load(Relaxed) };
    }
    // SAFETY: src + head is 8-aligned; head + words * 8 <= len, inside both ranges.
    unsafe { load_words(src.add(head).cast(), dst.add(head), words) };
}

/// Copy `len` bytes from `src` to shared memory at `dst` (any alignment): the mirror of
/// [`load`], writing exactly the bytes asked for.
///
/// # Safety
/// As for [`load`], with `dst` valid for writes and `src` for reads of `len` initialised bytes.
pub unsafe fn store(src: *const u8, dst: *mut u8, len: usize) {
    let head = to_aligned(dst, len);
    let words = (len - head) / 8;
    let tail = head + words * 8;
    for i in (0..head).chain(tail..len) {
        // SAFETY: i < len: inside both ranges; AtomicU8 has the layout of u8.
        unsafe { (*dst.add(i).cast::<AtomicU8>()).store(*src.add(i), Relaxed) };
    }
    // SAFETY: dst + head is 8-aligned; head + words * 8 <= len, inside both ranges.
    unsafe { store_words(src.add(head), dst.add(head).cast(), words) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_copies_copy_exactly() {
        // Long copies (64 KiB messages), with ragged edges.
        let shared: Vec<u64> = (0..4096u64).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).collect();
        let base = shared.as_ptr().cast::<u8>();
        for (start, len) in [(0usize, 2048usize), (8, 4096), (3, 8000), (0, 32768 - 8), (5, 20000)] {
            let mut out = vec![0u8; len + 2];
            // SAFETY: the range lies inside `shared`, which nothing writes meanwhile.
            unsafe { load(base.add(start), out.as_mut_ptr().add(1), len) };
            // SAFETY: as above.
            let want = unsafe { std::slice::from_raw_parts(base.add(start), len) };
            assert_eq!(&out[1..=len], want);
            let mut target: Vec<u64> = vec![0; 4096];
            let t = target.as_mut_ptr().cast::<u8>();
            // SAFETY: the range lies inside `target`.
            unsafe { store(want.as_ptr(), t.add(start + 1), len) };
            // SAFETY: as above.
            let back = unsafe { std::slice::from_raw_parts(t.add(start + 1), len) };
            assert_eq!(back, want);
        }
    }

    #[test]
    fn every_alignment_and_length_copies_exactly() {
        let shared: Vec<u64> = (0..12u64).map(|i| i * 0x0101_0101_0101_0101).collect();
        let base = shared.as_ptr().cast::<u8>();
        let mut expect = [0u8; 96];
        // SAFETY: reading our own initialised vector as bytes.
        unsafe { std::ptr::copy_nonoverlapping(base, expect.as_mut_ptr(), 96) };
        for start in 0..16 {
            for len in 0..64 {
                let mut out = [0xAAu8; 80];
                // SAFETY: start + len <= 80 < 96 bytes of `shared`; `out` is ours.
                unsafe { load(base.add(start), out.as_mut_ptr().add(1), len) };
                assert_eq!(&out[1..1 + len], &expect[start..start + len]);
                assert!(out[1 + len..].iter().all(|&b| b == 0xAA) && out[0] == 0xAA);

                let mut target: Vec<u64> = vec![0; 12];
                let t = target.as_mut_ptr().cast::<u8>();
                let src: Vec<u8> = (0..len as u8).map(|b| b.wrapping_add(1)).collect();
                // SAFETY: start + len < 96 bytes of `target`, written only here.
                unsafe { store(src.as_ptr(), t.add(start), len) };
                let mut back = [0u8; 96];
                // SAFETY: our own vector.
                unsafe { std::ptr::copy_nonoverlapping(t, back.as_mut_ptr(), 96) };
                assert_eq!(&back[start..start + len], &src[..]);
                assert!(back[..start].iter().chain(&back[start + len..]).all(|&b| b == 0));
            }
        }
    }
}
