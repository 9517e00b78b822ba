//! Loom model support (`--cfg loom` only): a ring in heap memory that the models initialise and
//! attach to from their own threads, through the same handshake code a region uses.

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

pub use crate::heap::HeapRing as ModelMemory;
pub use crate::heap::PeerCheck;

/// An SPSC producer and consumer on fresh heap memory.
pub fn spsc_pair(config: &RingConfig) -> (spsc::Producer, spsc::Consumer) {
    let mem = ModelMemory::zeroed(config);
    mem.init().expect("init");
    (mem.spsc_producer().expect("producer"), mem.spsc_consumer().expect("consumer"))
}

/// `producers` MPSC producers and a consumer on fresh heap memory.
pub fn mpsc_ring(config: &RingConfig, producers: usize) -> (Vec<mpsc::Producer>, mpsc::Consumer) {
    let mem = ModelMemory::zeroed(config);
    mem.init().expect("init");
    let ps = (0..producers).map(|_| mem.mpsc_producer().expect("producer")).collect();
    (ps, mem.mpsc_consumer().expect("consumer"))
}
