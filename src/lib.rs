//! shm-ipc: inter-process communication over shared memory.
//!
//! This facade re-exports the workspace crates:
//! - [`core`] (`shm-core`): shared-memory regions (anonymous, file, POSIX shm, memfd, private).
//! - [`ring`] (`shm-ring`): lock-free SPSC, MPSC and broadcast message rings living in a region,
//!   with async ends ([`ring::aio`], the `async` feature, on here).
//!
//! See the README for the two commands that run the benchmark and the tests.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, clippy::undocumented_unsafe_blocks)]

pub use shm_core as core;
pub use shm_ring as ring;

/// The README's Rust blocks, run as doctests (`cargo test --doc -p shm-ipc`).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
