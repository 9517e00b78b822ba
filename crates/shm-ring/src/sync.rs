//! The one place the ring's atomics come from: std in production, loom's under `--cfg loom`
//! (as tokio's `loom` module and crossbeam's `primitive` module do). All other code imports
//! atomics from here.

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
