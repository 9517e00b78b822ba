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

/// What the models share: sends and receives that yield to the model until they can go on.
#[cfg(loom)]
pub mod spin {
    use loom::thread;
    use shm_ring::{Consumer, Producer, RingKind, TryRecvError, TrySendError};

    /// Send `m`, yielding while the ring is full.
    pub fn send<K: RingKind>(p: &mut Producer<K>, m: &[u8]) {
        loop {
            match p.try_send(m) {
                Ok(()) => return,
                Err(TrySendError::Full(_)) => thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// Receive one message, yielding while the ring is empty (and, with `disconnected_too`,
    /// while it is disconnected: a state, not the end, when a producer attaches later).
    pub fn recv<K: RingKind>(c: &mut Consumer<K>, disconnected_too: bool) -> Vec<u8> {
        let mut buf = Vec::new();
        loop {
            match c.try_recv(&mut buf) {
                Ok(_) => return buf,
                Err(TryRecvError::Empty) => thread::yield_now(),
                Err(TryRecvError::Disconnected) if disconnected_too => thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
    }
}
