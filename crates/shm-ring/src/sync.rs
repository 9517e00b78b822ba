//! The one place the ring's atomics come from: std in production, loom's under `--cfg loom`
//! (as tokio's `loom` module and crossbeam's `primitive` module do). All other code imports
//! atomics from here.

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

/// A hint inside a busy-wait loop. Under loom a spinning thread must yield to the model.
#[inline]
pub(crate) fn spin_hint() {
    #[cfg(not(loom))]
    std::hint::spin_loop();
    #[cfg(loom)]
    loom::thread::yield_now();
}
