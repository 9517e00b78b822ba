//! loom model checks of the shm-ring protocol. The models live in `tests/` and compile only
//! with `RUSTFLAGS="--cfg loom"`; run them as `.ci/run` does:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release -p loom-tests
//! ```
//!
//! Under `cfg(loom)` shm-ring swaps its atomics for loom's (one `sync` module) and runs the
//! identical ring code on heap memory, with a loom cell per 8 payload bytes so loom's race
//! detector sees every payload read and write, and a mutex + condvar standing in for the futex.
