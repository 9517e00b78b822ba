//! A ring on the heap, for one process: [`HeapRing`] holds the memory of one ring (header,
//! slots, data) as atomics, initialises it through the same handshake code a region uses, and
//! attaches ends of any kind to it. For tests of code built on the rings, and for Miri, which
//! can run the whole ring protocol on it (`cargo +nightly miri test -p shm-ring --test heap`).
//! Under `--cfg loom` the atomics are loom's and the loom models use it (as
//! `shm_ring::model::ModelMemory`).
//!
//! ```
//! use shm_ring::{heap::HeapRing, RingConfig, Spsc};
//! let ring = HeapRing::new(&RingConfig::spsc(4096))?;
//! let (mut tx, mut rx) = (ring.producer::<Spsc>()?, ring.consumer::<Spsc>()?);
//! tx.send(b"on the heap")?;
//! let mut buf = Vec::new();
//! rx.recv(&mut buf)?;
//! assert_eq!(buf, b"on the heap");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::sync::Arc;

use crate::config::Geometry;
use crate::error::{AttachError, InitError};
use crate::handshake;
use crate::layout::Kind;
use crate::memory::{HeapMemory, Memory};
use crate::protocol::RingKind;
#[cfg(loom)]
use crate::{mpsc, spsc};
use crate::{Consumer, Producer, RingConfig};

/// The memory of one ring on the heap, shared by the threads (and ends) of one process.
#[derive(Clone, Debug)]
pub struct HeapRing {
    mem: Arc<HeapMemory>,
    geo: Geometry,
    kind: Kind,
}

impl HeapRing {
    /// Zeroed memory for a ring of `config`, not initialised yet.
    pub fn zeroed(config: &RingConfig) -> HeapRing {
        let geo = config.validate().expect("a valid config");
        let mem = Arc::new(HeapMemory::with_subscribers(
            geo.capacity as usize,
            geo.max_producers as usize,
            geo.subscribers as usize,
        ));
        HeapRing { mem, geo, kind: config.kind() }
    }

    /// Initialise the ring (what `shm_ring::init` does to a region).
    pub fn init(&self) -> Result<(), InitError> {
        let mem = &self.mem;
        handshake::init_header(
            mem.header(),
            &self.geo,
            || Ok(None),
            || shm_core::Liveness::Unknown,
            |w| mem.fill_words(0, self.geo.capacity as usize, w),
        )
        .map(|_key| ())
    }

    /// `spsc::Producer::open` (loom models).
    #[cfg(loom)]
    pub fn spsc_producer(&self) -> Result<spsc::Producer, AttachError> {
        self.producer::<crate::Spsc>()
    }

    /// `spsc::Consumer::open` (loom models).
    #[cfg(loom)]
    pub fn spsc_consumer(&self) -> Result<spsc::Consumer, AttachError> {
        self.consumer::<crate::Spsc>()
    }

    /// `mpsc::Producer::open` (loom models).
    #[cfg(loom)]
    pub fn mpsc_producer(&self) -> Result<mpsc::Producer, AttachError> {
        self.producer::<crate::Mpsc>()
    }

    /// `mpsc::Consumer::open` (loom models).
    #[cfg(loom)]
    pub fn mpsc_consumer(&self) -> Result<mpsc::Consumer, AttachError> {
        self.consumer::<crate::Mpsc>()
    }

    /// The consumer slot is free again, as when a consumer killed without closing is taken over
    /// (under loom no process dies, so the model frees the slot itself). Relaxed: learning of a
    /// death (a lock the kernel dropped, a pid gone) is no synchronisation the ring relies on, so
    /// a successor in another thread sees the dead consumer's writes only through the ring.
    #[cfg(loom)]
    pub fn free_consumer_slot(&self) {
        self.mem.header().consumer.owner.store(0, crate::sync::Ordering::Relaxed);
    }

    /// Producer slot `i` is free again, as when a producer killed without closing is taken
    /// over (see [`free_consumer_slot`](HeapRing::free_consumer_slot)). The next producer to
    /// attach takes it with the next generation.
    #[cfg(loom)]
    pub fn free_producer_slot(&self, i: usize) {
        self.mem.slot(i).owner.store(0, crate::sync::Ordering::Relaxed);
    }

    /// A zeroed, initialised ring of `config`.
    pub fn new(config: &RingConfig) -> Result<HeapRing, InitError> {
        let ring = HeapRing::zeroed(config);
        ring.init()?;
        Ok(ring)
    }

    /// Attach a producer of kind `K` (which must be the ring's kind).
    pub fn producer<K: RingKind>(&self) -> Result<Producer<K, Arc<HeapMemory>>, AttachError> {
        let desc = handshake::wait_ready(self.mem.header(), std::time::Duration::from_secs(1))?;
        Producer::attach_mem(self.mem.clone(), handshake::validate(&desc, K::KIND, self.mem.total_len())?)
    }

    /// Attach the consumer, of kind `K` (which must be the ring's kind).
    pub fn consumer<K: RingKind>(&self) -> Result<Consumer<K, Arc<HeapMemory>>, AttachError> {
        let desc = handshake::wait_ready(self.mem.header(), std::time::Duration::from_secs(1))?;
        Consumer::attach_mem(self.mem.clone(), handshake::validate(&desc, K::KIND, self.mem.total_len())?)
    }

    /// The ring's memory (for a test that writes the header or data as a hostile peer would).
    pub fn memory(&self) -> &Arc<HeapMemory> {
        &self.mem
    }

    /// The ring's kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// A producer's check of the consumer with liveness evidence, as a blocked producer makes
    /// it: the slot's word, and if attached, the evidence about its holder.
    #[cfg(loom)]
    pub fn check_consumer(&self) -> PeerCheck {
        use crate::slots::{self, End, Peer};
        match slots::peer(&self.mem, End::Consumer, true) {
            Peer::Present => PeerCheck::Present,
            Peer::Closed => PeerCheck::Closed,
            Peer::Dead(pid) => PeerCheck::Dead(pid),
        }
    }
}

#[cfg(loom)]
/// What an end's check of its peer finds ([`HeapRing::check_consumer`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerCheck {
    /// Never attached, or attached and not known dead.
    Present,
    /// Detached cleanly.
    Closed,
    /// Attached, and positive evidence says this pid is gone.
    Dead(u32),
}
