//! Loom model support (`--cfg loom` only): a ring in heap memory that the models initialise and
//! attach to from their own threads, through the same handshake code a region uses.

use std::sync::Arc;

use crate::config::Geometry;
use crate::error::{AttachError, InitError};
use crate::handshake;
use crate::layout::Kind;
use crate::memory::{HeapMemory, Memory};
use crate::slots::{self, End};
use crate::{mpsc, spsc, RingConfig};

/// From now on the calling model thread acts as process `pid` in PID namespace `pid_ns` (a
/// thread that does not say is pid 1 in namespace 1): the words it writes name that pid and
/// namespace, and it checks others from that namespace.
pub fn act_as(pid: u32, pid_ns: u32) {
    crate::identity::model_process::act_as(pid, pid_ns);
}

/// In the calling thread's PID namespace, `pids` no longer exist: pid evidence about them says
/// gone (any other pid is alive). Locks are not modelled (heap memory has none), so pid
/// evidence under the namespace rule is the only liveness evidence a model sees.
pub fn dead_here(pids: &[u32]) {
    crate::identity::model_process::dead_here(pids);
}

/// What an end's check of its peer finds ([`ModelMemory::check_consumer`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerCheck {
    /// Never attached, or attached and not known dead.
    Present,
    /// Detached cleanly.
    Closed,
    /// Attached, and positive evidence says this pid is gone.
    Dead(u32),
}

/// Heap memory for one ring, shared by the threads of a model.
#[derive(Clone, Debug)]
pub struct ModelMemory {
    mem: Arc<HeapMemory>,
    geo: Geometry,
    kind: Kind,
}

impl ModelMemory {
    /// Zeroed memory for a ring of `config`, not initialised yet.
    pub fn zeroed(config: &RingConfig) -> ModelMemory {
        let geo = config.validate().expect("a valid config");
        let mem = Arc::new(HeapMemory::new(geo.capacity as usize, geo.max_producers as usize));
        ModelMemory { mem, geo, kind: config.kind() }
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

    /// The attach handshake of `open`: wait (a few polls) for READY, copy and check the
    /// descriptor.
    fn attach(&self) -> Result<Geometry, AttachError> {
        let desc = handshake::wait_ready(self.mem.header(), std::time::Duration::from_secs(1))?;
        handshake::validate(&desc, self.kind, self.mem.total_len())
    }

    /// `spsc::Producer::open`.
    pub fn spsc_producer(&self) -> Result<spsc::Producer, AttachError> {
        spsc::Producer::attach_mem(self.mem.clone(), self.attach()?)
    }

    /// `spsc::Consumer::open`.
    pub fn spsc_consumer(&self) -> Result<spsc::Consumer, AttachError> {
        spsc::Consumer::attach_mem(self.mem.clone(), self.attach()?)
    }

    /// `mpsc::Producer::open`.
    pub fn mpsc_producer(&self) -> Result<mpsc::Producer, AttachError> {
        mpsc::Producer::attach_mem(self.mem.clone(), self.attach()?)
    }

    /// `mpsc::Consumer::open`.
    pub fn mpsc_consumer(&self) -> Result<mpsc::Consumer, AttachError> {
        mpsc::Consumer::attach_mem(self.mem.clone(), self.attach()?)
    }

    /// The consumer slot is free again, as when a consumer killed without closing is taken over
    /// (under loom no process dies, so the model frees the slot itself). Relaxed: learning of a
    /// death (a lock the kernel dropped, a pid gone) is no synchronisation the ring relies on, so
    /// a successor in another thread sees the dead consumer's writes only through the ring.
    pub fn free_consumer_slot(&self) {
        self.mem.header().consumer.owner.store(0, crate::sync::Ordering::Relaxed);
    }

    /// Producer slot `i` is free again, as when a producer killed without closing is taken
    /// over (see [`free_consumer_slot`](ModelMemory::free_consumer_slot)). The next producer to
    /// attach takes it with the next generation.
    pub fn free_producer_slot(&self, i: usize) {
        self.mem.slot(i).owner.store(0, crate::sync::Ordering::Relaxed);
    }

    /// A producer's check of the consumer with liveness evidence, as a blocked producer makes
    /// it: the slot's word, and if attached, the evidence about its holder.
    pub fn check_consumer(&self) -> PeerCheck {
        match slots::peer(&self.mem, End::Consumer, true) {
            slots::Peer::Present => PeerCheck::Present,
            slots::Peer::Closed => PeerCheck::Closed,
            slots::Peer::Dead(pid) => PeerCheck::Dead(pid),
        }
    }
}
