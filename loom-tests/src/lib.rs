//! loom model checks of the shm-ring protocol. The models live in `tests/` and compile only
//! with `RUSTFLAGS="--cfg loom"`; run them as `.ci/run` does:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release -p loom-tests --target-dir target/loom
//! ```
//!
//! Under `cfg(loom)` shm-ring swaps its atomics for loom's (one `sync` module) and runs the
//! identical ring code on heap memory whose data area is one loom atomic per 8 bytes: record
//! words and payload bytes are the same memory, as in a region, so a free word written over a
//! live payload (or a payload that looks like a free word) shows. A loom cell per 8 bytes lets
//! loom's race detector check that every payload access is ordered by the protocol, and a mutex
//! and condvar stand in for the futex. `shm_ring::model::ModelMemory` lets a model initialise a
//! ring and attach ends from its own threads through the real handshake.
//!
//! Which model depends on which ordering: `loom-tests/weaken-orderings` weakens one `ord!(...)`
//! site at a time (see `docs/loom-sites.md`).
