//! shm-bench: the ring against pipes and sockets, producer and consumer in separate processes
//! pinned to different cores, every message verified. Output format: see `Measurement`.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::async_bench::{self, AsyncKind};
use crate::pair::run_pair;
use crate::transport::{kernel_pair, Endpoint, Floor, Kernel, RingEnd, RingPair, Wait};

/// One line of the report (`--json` prints it as one JSON object per line).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Measurement {
    /// Transport name, e.g. `shm-spsc`, `pipe`, `atomic-floor`.
    pub transport: String,
    /// `rtt`, `wake_rtt`, `throughput`, `rtt_vs_floor`, `wake_vs_floor`, `batch_vs_pipe`,
    /// `mpsc_vs_spsc`, `broadcast_vs_spsc`, `throughput_vs_pipe`, `throughput_vs_sockets`,
    /// `blocking_vs_spinning`, `async_vs_spinning` or `idle_cpu`.
    pub test: &'static str,
    /// Message size in bytes.
    pub msg_size: usize,
    /// Producer processes.
    pub producers: u32,
    /// Subscriber processes of a broadcast ring (`shm-broadcast`); `msgs_per_s` is then per
    /// subscriber (the median of the subscribers' rates).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscribers: Option<u32>,
    /// Round trip, median (rtt).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub median_ns: Option<f64>,
    /// Round trip, 99th percentile (rtt).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_ns: Option<f64>,
    /// Messages per second, median of the repetitions (throughput).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msgs_per_s: Option<f64>,
    /// Megabytes (10^6) of payload per second (throughput).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mb_per_s: Option<f64>,
    /// CPU time used by a consumer blocked on an empty ring (idle_cpu).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_ns: Option<f64>,
    /// Wall time of that wait (idle_cpu).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wall_ns: Option<f64>,
    /// Blocking over spinning throughput, one ratio per repetition, each pair measured back to
    /// back (blocking_vs_spinning); ring over floor round trip (rtt_vs_floor) and wake round trip
    /// (wake_vs_floor), batch API over
    /// pipe-batched (batch_vs_pipe) and MPSC x1 over SPSC throughput (mpsc_vs_spsc), one per
    /// pair of alternating segments.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratios: Option<Vec<f64>>,
}

impl Measurement {
    fn new(transport: &str, test: &'static str, msg_size: usize, producers: u32) -> Measurement {
        Measurement {
            transport: transport.to_owned(),
            test,
            msg_size,
            producers,
            subscribers: None,
            median_ns: None,
            p99_ns: None,
            msgs_per_s: None,
            mb_per_s: None,
            cpu_ns: None,
            wall_ns: None,
            ratios: None,
        }
    }

    /// A measurement of ratios (one per repetition or pair of alternating segments).
    fn alternating(transport: &str, test: &'static str, msg_size: usize, ratios: Vec<f64>) -> Measurement {
        let mut m = Measurement::new(transport, test, msg_size, 1);
        m.ratios = Some(ratios);
        m
    }

    /// One JSON object, one line.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("plain data serialises")
    }
}

/// The transports measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// SPSC ring, spinning waits, zero-copy reserve/recv.
    ShmSpsc,
    /// SPSC ring, spinning waits, copying `try_send` / `try_recv` from and to a buffer.
    ShmSpscCopy,
    /// SPSC ring, blocking waits (spin then futex).
    ShmSpscBlocking,
    /// SPSC ring with the batch API: `send_batch` / `recv_batch`.
    ShmSpscBatch,
    /// A pipe, one `write` per message.
    Pipe,
    /// A pipe written in 64 KiB batches of packed messages.
    PipeBatched,
    /// Unix stream socket.
    UnixStream,
    /// Unix seqpacket socket.
    UnixSeqPacket,
    /// TCP over loopback.
    Tcp,
    /// Bare cross-process atomic ping-pong (round trip only).
    AtomicFloor,
    /// Bare futex ping-pong (round trip only).
    FutexFloor,
    /// MPSC ring with 1, 2 and 4 producer processes (throughput at 64 B only).
    ShmMpsc,
    /// Broadcast ring with 1, 2 and 4 subscriber processes (throughput at 64 B only).
    ShmBroadcast,
    /// SPSC ring, async ends awaited on a tokio current-thread runtime (throughput at 64 B).
    ShmSpscAsync,
    /// tokio's `UnixStream`, on a current-thread runtime (throughput at 64 B).
    TokioUnixStream,
}

impl Transport {
    /// Every transport, in report order.
    pub const ALL: [Transport; 15] = [
        Transport::ShmSpsc,
        Transport::ShmSpscCopy,
        Transport::ShmSpscBlocking,
        Transport::ShmSpscAsync,
        Transport::ShmSpscBatch,
        Transport::ShmMpsc,
        Transport::ShmBroadcast,
        Transport::AtomicFloor,
        Transport::FutexFloor,
        Transport::Pipe,
        Transport::PipeBatched,
        Transport::UnixStream,
        Transport::TokioUnixStream,
        Transport::UnixSeqPacket,
        Transport::Tcp,
    ];

    /// The report name.
    pub fn name(self) -> &'static str {
        match self {
            Transport::ShmSpsc => "shm-spsc",
            Transport::ShmSpscCopy => "shm-spsc-copy",
            Transport::ShmSpscBlocking => "shm-spsc-blocking",
            Transport::ShmSpscBatch => "shm-spsc-batch",
            Transport::Pipe => "pipe",
            Transport::PipeBatched => "pipe-batched",
            Transport::UnixStream => "unix-stream",
            Transport::UnixSeqPacket => "unix-seqpacket",
            Transport::Tcp => "tcp",
            Transport::AtomicFloor => "atomic-floor",
            Transport::FutexFloor => "futex-floor",
            Transport::ShmMpsc => "shm-mpsc",
            Transport::ShmBroadcast => "shm-broadcast",
            Transport::ShmSpscAsync => "shm-spsc-async",
            Transport::TokioUnixStream => "tokio-unix-stream",
        }
    }

    fn kernel(self) -> Option<Kernel> {
        match self {
            Transport::Pipe => Some(Kernel::Pipe),
            Transport::UnixStream => Some(Kernel::UnixStream),
            Transport::UnixSeqPacket => Some(Kernel::UnixSeqPacket),
            Transport::Tcp => Some(Kernel::Tcp),
            _ => None,
        }
    }

    fn does_rtt(self) -> bool {
        !matches!(
            self,
            Transport::ShmSpscBatch | Transport::PipeBatched | Transport::ShmMpsc | Transport::ShmBroadcast
        )
    }

    /// Whether the transport takes part in `wake_rtt` (the sleeping kinds and their floor).
    fn does_wake_rtt(self) -> bool {
        matches!(
            self,
            Transport::ShmSpscBlocking
                | Transport::FutexFloor
                | Transport::Pipe
                | Transport::UnixStream
                | Transport::ShmSpscAsync
                | Transport::TokioUnixStream
        )
    }

    fn does_throughput(self, size: usize) -> bool {
        match self {
            Transport::AtomicFloor | Transport::FutexFloor => false,
            Transport::PipeBatched
            | Transport::ShmSpscBatch
            | Transport::ShmMpsc
            | Transport::ShmBroadcast
            | Transport::ShmSpscAsync
            | Transport::TokioUnixStream => size == 64,
            _ => true,
        }
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Fewer iterations: the whole run stays under 30 s.
    pub quick: bool,
    /// Transports to measure.
    pub transports: Vec<Transport>,
    /// Throughput message sizes.
    pub sizes: Vec<usize>,
}

impl Plan {
    /// Everything, at the standard sizes.
    pub fn new(quick: bool) -> Plan {
        Plan { quick, transports: Transport::ALL.to_vec(), sizes: vec![8, 64, 1024, 65536] }
    }

    fn scale(&self, n: u64) -> u64 {
        if self.quick {
            (n / 5).max(1000)
        } else {
            n
        }
    }

    fn reps(&self) -> usize {
        if self.quick {
            3
        } else {
            5
        }
    }

    fn rtt_iters(&self, t: Transport) -> u64 {
        self.scale(match t {
            Transport::ShmSpsc | Transport::ShmSpscCopy | Transport::AtomicFloor => 200_000,
            _ => 50_000,
        })
    }

    /// Spaced pings for `wake_rtt`: each costs at least [`WAKE_SPACING`].
    fn wake_iters(&self) -> u64 {
        if self.quick {
            150
        } else {
            1000
        }
    }

    fn messages(&self, t: Transport, size: usize) -> u64 {
        let fast = matches!(
            t,
            Transport::ShmSpsc
                | Transport::ShmSpscCopy
                | Transport::ShmSpscBlocking
                | Transport::ShmSpscBatch
                | Transport::ShmMpsc
                | Transport::ShmBroadcast
                | Transport::ShmSpscAsync
        ) || t == Transport::PipeBatched;
        let n = match (size, fast) {
            (0..=64, true) => 4_000_000,
            (0..=64, false) => 400_000,
            (65..=4096, true) => 1_000_000,
            (65..=4096, false) => 200_000,
            (_, true) => 20_000,
            (_, false) => 10_000,
        };
        self.scale(n)
    }
}

// ---------------------------------------------------------------------------------------------
// Message content: every message is filled and checked in full.
// ---------------------------------------------------------------------------------------------

/// Fill a message: its sequence number in the first 8 bytes (as far as they fit), then the low
/// byte of the sequence number repeated.
#[inline]
pub fn fill(buf: &mut [u8], seq: u64) {
    let head = seq.to_le_bytes();
    if buf.len() >= 8 {
        // A fixed-size copy: one store, where a copy of a variable length calls `memcpy`.
        buf[..8].copy_from_slice(&head);
        buf[8..].fill(seq as u8);
    } else {
        let n = buf.len();
        buf.copy_from_slice(&head[..n]);
    }
}

/// Check a message made by [`fill`] for `seq`, of length `len`, reading every byte (eight at a
/// time, which the compiler vectorises).
#[inline]
pub fn check(buf: &[u8], seq: u64, len: usize) -> bool {
    if buf.len() != len {
        return false;
    }
    let head = seq.to_le_bytes();
    if len < 8 {
        return buf == &head[..len];
    }
    // A fixed-size comparison: one load, where one of a variable length calls `bcmp`.
    if buf[..8] != head {
        return false;
    }
    let byte = seq as u8;
    let word = u64::from_ne_bytes([byte; 8]);
    let rest = &buf[8..];
    let words = rest.chunks_exact(8);
    let tail_ok = words.remainder().iter().all(|&b| b == byte);
    // Fold with `&` rather than `all` so the loop has no early exit and vectorises.
    tail_ok && words.fold(true, |ok, w| ok & (u64::from_ne_bytes(w.try_into().expect("8 bytes")) == word))
}

fn bad(seq: u64) -> io::Error {
    io::Error::other(format!("message {seq} arrived corrupted, out of order or with the wrong length"))
}

// ---------------------------------------------------------------------------------------------
// Measurements
// ---------------------------------------------------------------------------------------------

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v[v.len() / 2]
}

/// How long the pinger pauses before each ping of a `wake_rtt` run: long enough that a
/// blocking peer has given up spinning and sleeps on its futex.
pub const WAKE_SPACING: Duration = Duration::from_millis(2);

/// Ping-pong of 8-byte messages: the parent (core 1) pings, the child (core 0) echoes. With
/// `spaced`, the parent pauses [`WAKE_SPACING`] before each ping (untimed), so every ping wakes
/// a sleeping peer.
fn rtt_endpoints<A: Endpoint, B: Endpoint>(
    iters: u64,
    spaced: bool,
    make_pinger: impl FnOnce() -> io::Result<A>,
    make_ponger: impl FnOnce() -> io::Result<B>,
) -> io::Result<Vec<u64>> {
    let warm = iters / 10;
    let total = iters + warm;
    run_pair(
        || {
            let Ok(mut b) = make_ponger() else { return 2 };
            for seq in 0..total {
                let ok = b.recv_with(8, |m| check(m, seq, 8));
                if !matches!(ok, Ok(true)) || b.send_with(8, |m| fill(m, seq)).is_err() {
                    return 3;
                }
            }
            0
        },
        || -> io::Result<Vec<u64>> {
            let mut a = make_pinger()?;
            let mut samples = Vec::with_capacity(iters as usize);
            for seq in 0..total {
                if spaced {
                    std::thread::sleep(WAKE_SPACING);
                }
                let t = Instant::now();
                a.send_with(8, |m| fill(m, seq))?;
                if !a.recv_with(8, |m| check(m, seq, 8))? {
                    return Err(bad(seq));
                }
                if seq >= warm {
                    samples.push(t.elapsed().as_nanos() as u64);
                }
            }
            Ok(samples)
        },
    )?
}

fn rtt_floor(iters: u64, futex: bool, spaced: bool) -> io::Result<Vec<u64>> {
    let floor = Floor::new()?;
    let warm = iters / 10;
    let total = iters + warm;
    run_pair(
        || {
            for i in 1..=total {
                if futex {
                    floor.futex_pong(i as u32);
                } else {
                    floor.atomic_pong(i);
                }
            }
            0
        },
        || {
            let mut samples = Vec::with_capacity(iters as usize);
            for i in 1..=total {
                if spaced {
                    std::thread::sleep(WAKE_SPACING);
                }
                let t = Instant::now();
                if futex {
                    floor.futex_ping(i as u32);
                } else {
                    floor.atomic_ping(i);
                }
                if i > warm {
                    samples.push(t.elapsed().as_nanos() as u64);
                }
            }
            samples
        },
    )
}

/// Round-trip samples (ns) for one transport; `spaced`: the `wake_rtt` test (see
/// [`WAKE_SPACING`]).
pub fn rtt_samples(t: Transport, iters: u64, spaced: bool) -> io::Result<Vec<u64>> {
    let rings = |wait, copy: bool| -> io::Result<Vec<u64>> {
        let rings = RingPair::new(1 << 16)?;
        let copying = |end: RingEnd| if copy { end.copying() } else { end };
        rtt_endpoints(
            iters,
            spaced,
            || rings.side_a(wait, true).map(copying),
            || rings.side_b(wait, true).map(copying),
        )
    };
    match t {
        Transport::ShmSpsc => rings(Wait::Spin, false),
        Transport::ShmSpscCopy => rings(Wait::Spin, true),
        Transport::ShmSpscBlocking => rings(Wait::Block, false),
        Transport::AtomicFloor => rtt_floor(iters, false, spaced),
        Transport::FutexFloor => rtt_floor(iters, true, spaced),
        Transport::ShmSpscAsync => async_bench::rtt(AsyncKind::Ring, iters, spaced),
        Transport::TokioUnixStream => async_bench::rtt(AsyncKind::TokioUnix, iters, spaced),
        _ => {
            let kind =
                t.kernel().ok_or_else(|| io::Error::other(format!("{} has no round trip", t.name())))?;
            let (a, b) = kernel_pair(kind, 64)?;
            rtt_endpoints(iters, spaced, move || Ok(a), move || Ok(b))
        }
    }
}

/// One-way stream of `n` messages of `size` bytes from the child (core 0) to the parent
/// (core 1); returns messages per second, timed at the consumer from the first message to the
/// last.
fn stream_endpoints<P: Endpoint, C: Endpoint>(
    n: u64,
    size: usize,
    make_producer: impl FnOnce() -> io::Result<P>,
    make_consumer: impl FnOnce() -> io::Result<C>,
) -> io::Result<f64> {
    run_pair(
        || {
            let Ok(mut p) = make_producer() else { return 2 };
            for seq in 0..n {
                if p.send_with(size, |m| fill(m, seq)).is_err() {
                    return 3;
                }
            }
            0
        },
        || -> io::Result<f64> {
            let mut c = make_consumer()?;
            let mut start = Instant::now();
            for seq in 0..n {
                if !c.recv_with(size, |m| check(m, seq, size))? {
                    return Err(bad(seq));
                }
                if seq == 0 {
                    start = Instant::now();
                }
            }
            Ok((n - 1) as f64 / start.elapsed().as_secs_f64())
        },
    )?
}

/// Bytes per write of the batched pipe.
const CHUNK: usize = 64 * 1024;

/// A pipe with a 1 MiB buffer, for messages packed back to back into [`CHUNK`] writes.
fn batched_pipe() -> io::Result<(std::fs::File, std::fs::File)> {
    let (r, w) = nix::unistd::pipe()?;
    let _ = nix::fcntl::fcntl(&w, nix::fcntl::FcntlArg::F_SETPIPE_SZ(1 << 20));
    Ok((std::fs::File::from(r), std::fs::File::from(w)))
}

/// Fill `buf` with the messages from `seq` on, `size` bytes each, and write it in one go.
fn pipe_send_chunk(w: &mut std::fs::File, buf: &mut [u8], size: usize, seq: u64) -> io::Result<()> {
    for (i, m) in buf.chunks_exact_mut(size).enumerate() {
        fill(m, seq + i as u64);
    }
    w.write_all(buf)
}

/// Read one chunk of messages from `seq` on into `buf`; whether every one checked out.
fn pipe_recv_chunk(r: &mut std::fs::File, buf: &mut [u8], size: usize, seq: u64) -> io::Result<bool> {
    r.read_exact(buf)?;
    Ok(buf.chunks_exact(size).enumerate().fold(true, |ok, (i, m)| ok & check(m, seq + i as u64, size)))
}

/// Send messages `*seq..stop` with the batch API: up to 1024 written in place per batch, each
/// batch published with one store. False if the ring failed.
fn ring_send_batched(p: &mut shm_ring::spsc::Producer, size: usize, seq: &mut u64, stop: u64) -> bool {
    while *seq < stop {
        let mut batch = p.write_batch();
        while *seq < stop && batch.len() < 1024 {
            let s = *seq;
            // SAFETY: both ends are this program, forked from this process, following the ring
            // protocol.
            match unsafe { batch.push_unchecked(size, |m| fill(m, s)) } {
                Ok(()) => *seq += 1,
                Err(shm_ring::TrySendError::Full(())) => break,
                Err(_) => return false,
            }
        }
        if batch.commit() == 0 {
            std::hint::spin_loop();
        }
    }
    true
}

/// Receive with one `recv_batch` whatever waits now of messages `*seq..stop`, read in place
/// and checked (`ok` goes false on a bad one).
fn ring_recv_batched(
    c: &mut shm_ring::spsc::Consumer,
    size: usize,
    seq: &mut u64,
    stop: u64,
    ok: &mut bool,
) -> io::Result<()> {
    // SAFETY: both ends are this program, forked from this process, following the ring protocol.
    let got = unsafe {
        c.recv_batch_unchecked((stop - *seq) as usize, |m| {
            *ok &= check(m, *seq, size);
            *seq += 1;
        })
    };
    match got {
        Ok(_) => Ok(()),
        Err(shm_ring::TryRecvError::Empty) => {
            std::hint::spin_loop();
            Ok(())
        }
        Err(e) => Err(io::Error::other(e.to_string())),
    }
}

/// Messages packed back to back into 64 KiB writes on a pipe.
fn stream_pipe_batched(n: u64, size: usize) -> io::Result<f64> {
    let per = (CHUNK / size) as u64;
    let n = n.div_ceil(per) * per;
    let (mut r, mut w) = batched_pipe()?;
    run_pair(
        || {
            let mut buf = vec![0u8; per as usize * size];
            for base in (0..n).step_by(per as usize) {
                if pipe_send_chunk(&mut w, &mut buf, size, base).is_err() {
                    return 3;
                }
            }
            0
        },
        || -> io::Result<f64> {
            let mut buf = vec![0u8; per as usize * size];
            let mut start = Instant::now();
            for base in (0..n).step_by(per as usize) {
                if !pipe_recv_chunk(&mut r, &mut buf, size, base)? {
                    return Err(bad(base));
                }
                if base == 0 {
                    start = Instant::now();
                }
            }
            Ok((n - per) as f64 / start.elapsed().as_secs_f64())
        },
    )?
}

/// The ring with the batch API on both sides: `write_batch` of up to 1024 messages written in
/// place, one `recv_batch` handling everything waiting (the in-place, trusted forms: both ends
/// are this program).
fn stream_ring_batched(n: u64, size: usize) -> io::Result<f64> {
    let rings = RingPair::new(1 << 18)?;
    run_pair(
        || {
            let Ok(mut end) = rings.side_a(Wait::Spin, false) else { return 2 };
            let Some(p) = end.producer() else { return 2 };
            if ring_send_batched(p, size, &mut 0, n) {
                0
            } else {
                3
            }
        },
        || -> io::Result<f64> {
            let mut end = rings.side_b(Wait::Spin, false)?;
            let c = end.consumer().ok_or_else(|| io::Error::other("no consumer"))?;
            let (mut seq, mut ok) = (0u64, true);
            let mut start: Option<(Instant, u64)> = None;
            while seq < n {
                ring_recv_batched(c, size, &mut seq, n, &mut ok)?;
                if !ok {
                    return Err(bad(seq));
                }
                if start.is_none() && seq > 0 {
                    start = Some((Instant::now(), seq));
                }
            }
            let (t0, first) = start.ok_or_else(|| io::Error::other("nothing received"))?;
            Ok((n - first) as f64 / t0.elapsed().as_secs_f64())
        },
    )?
}

/// MPSC: `producers` processes on core 0 each send `n / producers` messages (tagged with the
/// producer's id in the top byte of the sequence number) to one consumer on core 1, which
/// checks every message and the order per producer.
pub fn mpsc_throughput(producers: u32, size: usize, n: u64) -> io::Result<f64> {
    use shm_ring::mpsc::{Consumer, Producer};
    let config = shm_ring::RingConfig::mpsc(1 << 18, producers);
    let region = shm_core::Region::anonymous(config.region_len())?;
    region.prefault()?;
    shm_ring::init(&region, &config).map_err(|e| io::Error::other(e.to_string()))?;
    let region = std::sync::Arc::new(region);
    let per = n / producers as u64;
    let mut children = Vec::new();
    for id in 0..producers as u64 {
        let region = region.clone();
        let child = crate::pair::spawn_child(0, move || {
            let Ok(mut p) = Producer::open(region) else { return 2 };
            for seq in 0..per {
                // Spinning, as the shm-spsc transport does; yield when full, since several
                // producers may share core 0.
                let mut g = loop {
                    match p.try_reserve(size) {
                        Ok(g) => break g,
                        Err(shm_ring::TrySendError::Full(())) => std::thread::yield_now(),
                        Err(_) => return 3,
                    }
                };
                // SAFETY: every process on this ring is this program, forked from this process,
                // following the ring protocol: nobody else touches the claimed bytes.
                fill(unsafe { g.as_mut_slice_unchecked() }, id << 56 | seq);
                g.commit();
            }
            0
        })?;
        children.push(child);
    }
    crate::pair::pin_to(1);
    let mut c = Consumer::open(region).map_err(|e| io::Error::other(e.to_string()))?;
    let mut next = vec![0u64; producers as usize];
    let total = per * producers as u64;
    let mut start = Instant::now();
    let give_up = Instant::now() + Duration::from_secs(120);
    for i in 0..total {
        let g = loop {
            match c.try_read() {
                Ok(g) => break g,
                Err(shm_ring::TryRecvError::Empty) if Instant::now() < give_up => std::hint::spin_loop(),
                Err(e) => return Err(io::Error::other(e.to_string())),
            }
        };
        // SAFETY: as for the producers: every peer is this program, which does not write a
        // committed message.
        let g = unsafe { g.as_slice_unchecked() };
        let mut head = [0u8; 8];
        let k = g.len().min(8);
        head[..k].copy_from_slice(&g[..k]);
        let head = u64::from_le_bytes(head);
        let id = (head >> 56) as usize;
        let seq = next.get(id).copied().ok_or_else(|| bad(head))?;
        if !check(g, (id as u64) << 56 | seq, size) {
            return Err(bad(seq));
        }
        next[id] += 1;
        if i == 0 {
            start = Instant::now();
        }
    }
    let rate = (total - 1) as f64 / start.elapsed().as_secs_f64();
    for child in children {
        child.join()?;
    }
    Ok(rate)
}

/// MPSC with one producer over SPSC at `size` bytes, both measured in one pair of processes
/// that switch between an SPSC and an MPSC ring every [`MPSC_SEGMENT`] messages (as
/// [`rtt_vs_floor`] does, for the same reason), with the same calls on both (`try_reserve` and
/// `try_read`, spinning, every message checked). One ratio per pair of segments (MPSC rate over
/// SPSC rate); the first pair warms up and is not counted.
pub fn mpsc_vs_spsc(size: usize, pairs: usize) -> io::Result<Measurement> {
    let other = shm_ring::RingConfig::mpsc(1 << 18, 1);
    kind_vs_spsc::<shm_ring::Mpsc>(&other, Transport::ShmMpsc.name(), "mpsc_vs_spsc", size, pairs)
}

/// A broadcast ring with one subscriber over SPSC at `size` bytes, measured as
/// [`mpsc_vs_spsc`] is: one ratio per pair of alternating segments.
pub fn broadcast_vs_spsc(size: usize, pairs: usize) -> io::Result<Measurement> {
    let other = shm_ring::RingConfig::broadcast(1 << 18, 1);
    let mut m = kind_vs_spsc::<shm_ring::Broadcast>(
        &other,
        Transport::ShmBroadcast.name(),
        "broadcast_vs_spsc",
        size,
        pairs,
    )?;
    m.subscribers = Some(1);
    Ok(m)
}

/// Kind `K` (a ring made with `other`) over SPSC at `size` bytes, both measured in one pair of
/// processes that switch rings every [`MPSC_SEGMENT`] messages (see [`mpsc_vs_spsc`]).
fn kind_vs_spsc<K: shm_ring::RingKind>(
    other: &shm_ring::RingConfig,
    transport: &str,
    test: &'static str,
    size: usize,
    pairs: usize,
) -> io::Result<Measurement> {
    fn ring(config: &shm_ring::RingConfig) -> io::Result<std::sync::Arc<shm_core::Region>> {
        let region = shm_core::Region::anonymous(config.region_len())?;
        region.prefault()?;
        shm_ring::init(&region, config).map_err(|e| io::Error::other(e.to_string()))?;
        Ok(std::sync::Arc::new(region))
    }
    fn send<K: shm_ring::RingKind>(p: &mut shm_ring::Producer<K>, size: usize, seq: u64) -> bool {
        let mut g = loop {
            match p.try_reserve(size) {
                Ok(g) => break g,
                Err(shm_ring::TrySendError::Full(())) => std::hint::spin_loop(),
                Err(_) => return false,
            }
        };
        // SAFETY: both ends are this program, forked from this process, following the ring
        // protocol: nobody else touches the claimed bytes.
        fill(unsafe { g.as_mut_slice_unchecked() }, seq);
        g.commit();
        true
    }
    fn recv<K: shm_ring::RingKind>(c: &mut shm_ring::Consumer<K>, size: usize, seq: u64) -> io::Result<()> {
        let give_up = Instant::now() + Duration::from_secs(120);
        let g = loop {
            match c.try_read() {
                Ok(g) => break g,
                Err(shm_ring::TryRecvError::Empty) if Instant::now() < give_up => std::hint::spin_loop(),
                Err(e) => return Err(io::Error::other(e.to_string())),
            }
        };
        // SAFETY: as for the producer side.
        if check(unsafe { g.as_slice_unchecked() }, seq, size) {
            Ok(())
        } else {
            Err(bad(seq))
        }
    }
    let spsc_ring = ring(&shm_ring::RingConfig::spsc(1 << 18))?;
    let mpsc_ring = ring(other)?;
    let segments = 2 * (pairs as u64 + 1);
    let ratios = run_pair(
        || {
            let Ok(mut sp) = shm_ring::Producer::<shm_ring::Spsc>::open(spsc_ring.clone()) else { return 2 };
            let Ok(mut mp) = shm_ring::Producer::<K>::open(mpsc_ring.clone()) else { return 2 };
            for seq in 0..segments * MPSC_SEGMENT {
                let ok = if (seq / MPSC_SEGMENT) % 2 == 0 {
                    send(&mut sp, size, seq)
                } else {
                    send(&mut mp, size, seq)
                };
                if !ok {
                    return 3;
                }
            }
            0
        },
        || -> io::Result<Vec<f64>> {
            let mut sc =
                shm_ring::Consumer::<shm_ring::Spsc>::open(spsc_ring.clone()).map_err(io::Error::other)?;
            let mut mc = shm_ring::Consumer::<K>::open(mpsc_ring.clone()).map_err(io::Error::other)?;
            let mut rates = [0.0f64; 2];
            let mut ratios = Vec::with_capacity(pairs);
            let mut start = Instant::now();
            for seq in 0..segments * MPSC_SEGMENT {
                let k = ((seq / MPSC_SEGMENT) % 2) as usize;
                if k == 0 {
                    recv(&mut sc, size, seq)?;
                } else {
                    recv(&mut mc, size, seq)?;
                }
                if seq % MPSC_SEGMENT == 0 {
                    start = Instant::now(); // timed from the segment's first message
                } else if (seq + 1) % MPSC_SEGMENT == 0 {
                    rates[k] = (MPSC_SEGMENT - 1) as f64 / start.elapsed().as_secs_f64();
                    if k == 1 && seq >= 2 * MPSC_SEGMENT {
                        ratios.push(rates[1] / rates[0]);
                    }
                }
            }
            Ok(ratios)
        },
    )??;
    Ok(Measurement::alternating(transport, test, size, ratios))
}

/// Broadcast: one producer process on core 0 sends `n` messages of `size` bytes (spinning, as
/// the shm-spsc transport does) to `subscribers` subscriber processes on core 1 (spinning,
/// with a yield every 64 empty looks), each checking every message. Returns each subscriber's rate, timed from its first message to its last.
/// The subscribers attach and report ready (through an MPSC ring, which also brings their
/// rates back) before the producer starts.
pub fn broadcast_throughput(subscribers: u32, size: usize, n: u64) -> io::Result<Vec<f64>> {
    use shm_ring::broadcast::{Producer, Subscriber};
    let ring = |config: &shm_ring::RingConfig| -> io::Result<std::sync::Arc<shm_core::Region>> {
        let region = shm_core::Region::anonymous(config.region_len())?;
        region.prefault()?;
        shm_ring::init(&region, config).map_err(|e| io::Error::other(e.to_string()))?;
        Ok(std::sync::Arc::new(region))
    };
    let data = ring(&shm_ring::RingConfig::broadcast(1 << 18, subscribers))?;
    let results = ring(&shm_ring::RingConfig::mpsc(4096, subscribers))?;
    let mut children = Vec::new();
    for _ in 0..subscribers {
        let (data, results) = (data.clone(), results.clone());
        children.push(crate::pair::spawn_child(1, move || {
            let (Ok(mut s), Ok(mut out)) = (Subscriber::open(data), shm_ring::mpsc::Producer::open(results))
            else {
                return 2;
            };
            if out.send_pod(0.0f64).is_err() {
                return 2; // ready
            }
            let give_up = Instant::now() + Duration::from_secs(120);
            let mut start = Instant::now();
            let mut empty = 0u32;
            for seq in 0..n {
                let g = loop {
                    match s.try_read() {
                        Ok(g) => break g,
                        // Spinning, as the shm-spsc transport does, and yielding now and then:
                        // several subscribers may share core 1.
                        Err(shm_ring::TryRecvError::Empty) if Instant::now() < give_up => {
                            empty = empty.wrapping_add(1);
                            if empty % 64 == 0 {
                                std::thread::yield_now();
                            } else {
                                std::hint::spin_loop();
                            }
                        }
                        Err(_) => return 3,
                    }
                };
                // SAFETY: every process on this ring is this program, forked from this
                // process, following the ring protocol (Block: nothing is written over a
                // message a subscriber has not read).
                if !check(unsafe { g.as_slice_unchecked() }, seq, size) {
                    return 4;
                }
                if seq == 0 {
                    start = Instant::now();
                }
            }
            let rate = (n - 1) as f64 / start.elapsed().as_secs_f64();
            if out.send_pod(rate).is_err() {
                return 5;
            }
            0
        })?);
    }
    let mut c = shm_ring::mpsc::Consumer::open(results).map_err(|e| io::Error::other(e.to_string()))?;
    let next = |c: &mut shm_ring::mpsc::Consumer| {
        c.recv_pod_timeout::<f64>(Duration::from_secs(120)).map_err(|e| io::Error::other(e.to_string()))
    };
    for _ in 0..subscribers {
        next(&mut c)?; // ready
    }
    children.push(crate::pair::spawn_child(0, move || {
        let Ok(mut p) = Producer::open(data) else { return 2 };
        for seq in 0..n {
            let mut g = loop {
                match p.try_reserve(size) {
                    Ok(g) => break g,
                    Err(shm_ring::TrySendError::Full(())) => std::hint::spin_loop(),
                    Err(_) => return 3,
                }
            };
            // SAFETY: as for the subscribers.
            fill(unsafe { g.as_mut_slice_unchecked() }, seq);
            g.commit();
        }
        0
    })?);
    let rates = (0..subscribers).map(|_| next(&mut c)).collect::<io::Result<Vec<f64>>>()?;
    for child in children {
        child.join()?;
    }
    Ok(rates)
}

/// The spinning ring's one-way throughput at `size` bytes over the best of `kinds` (kernel
/// transports), all measured in one pair of processes that take turns every `segment`
/// messages, the ring first (as [`rtt_vs_floor`] does, for the same reason). Each rate is timed
/// at the consumer from its segment's first message to its last; one ratio per round after the
/// first: the ring's rate over the best kernel transport's of that round.
pub fn ring_vs_kernels(
    test: &'static str,
    size: usize,
    kinds: &[Kernel],
    segment: u64,
    rounds: usize,
) -> io::Result<Measurement> {
    let capacity = if size > 4096 { 1 << 20 } else { 1 << 18 };
    let rings = RingPair::new(capacity)?;
    let (mut senders, mut receivers) = (Vec::new(), Vec::new());
    for &kind in kinds {
        let (a, b) = kernel_pair(kind, size.max(64))?;
        senders.push(a);
        receivers.push(b);
    }
    let turns = kinds.len() + 1;
    let ratios = run_pair(
        || {
            let Ok(mut ring) = rings.side_a(Wait::Spin, false) else { return 2 };
            let mut seq = vec![0u64; turns];
            for _ in 0..=rounds {
                for (k, seq) in seq.iter_mut().enumerate() {
                    for _ in 0..segment {
                        let s = *seq;
                        let sent = match k {
                            0 => ring.send_with(size, |m| fill(m, s)),
                            _ => senders[k - 1].send_with(size, |m| fill(m, s)),
                        };
                        if sent.is_err() {
                            return 3;
                        }
                        *seq += 1;
                    }
                }
            }
            0
        },
        || -> io::Result<Vec<f64>> {
            let mut ring = rings.side_b(Wait::Spin, false)?;
            let mut seq = vec![0u64; turns];
            let mut rates = vec![0.0f64; turns];
            let mut ratios = Vec::with_capacity(rounds);
            for round in 0..=rounds {
                for (k, seq) in seq.iter_mut().enumerate() {
                    let mut start = Instant::now();
                    for i in 0..segment {
                        let s = *seq;
                        let ok = match k {
                            0 => ring.recv_with(size, |m| check(m, s, size))?,
                            _ => receivers[k - 1].recv_with(size, |m| check(m, s, size))?,
                        };
                        if !ok {
                            return Err(bad(s));
                        }
                        *seq += 1;
                        if i == 0 {
                            start = Instant::now(); // timed from the segment's first message
                        }
                    }
                    rates[k] = (segment - 1) as f64 / start.elapsed().as_secs_f64();
                }
                if round > 0 {
                    ratios.push(rates[0] / rates[1..].iter().copied().fold(0.0, f64::max));
                }
            }
            Ok(ratios)
        },
    )??;
    Ok(Measurement::alternating(Transport::ShmSpsc.name(), test, size, ratios))
}

/// Messages per segment of the 64 B [`ring_vs_kernels`] (against a pipe).
pub const SMALL_SEGMENT: u64 = 200_000;

/// Messages per segment of the 64 KiB [`ring_vs_kernels`] (against the sockets).
pub const LARGE_SEGMENT: u64 = 2_000;

/// Messages per segment of [`mpsc_vs_spsc`].
pub const MPSC_SEGMENT: u64 = 200_000;

/// Messages per second for one transport and size.
pub fn throughput(t: Transport, size: usize, n: u64) -> io::Result<f64> {
    // The 64-byte batch transports carry 64-byte arrays.
    let rings = |wait, copy: bool| -> io::Result<f64> {
        let capacity = if size > 4096 { 1 << 20 } else { 1 << 18 };
        let rings = RingPair::new(capacity)?;
        let copying = |end: RingEnd| if copy { end.copying() } else { end };
        stream_endpoints(
            n,
            size,
            || rings.side_a(wait, false).map(copying),
            || rings.side_b(wait, false).map(copying),
        )
    };
    match t {
        Transport::ShmSpsc => rings(Wait::Spin, false),
        Transport::ShmSpscCopy => rings(Wait::Spin, true),
        Transport::ShmSpscBlocking => rings(Wait::Block, false),
        Transport::ShmSpscBatch => stream_ring_batched(n, size),
        Transport::PipeBatched => stream_pipe_batched(n, size),
        Transport::ShmSpscAsync => async_bench::throughput(AsyncKind::Ring, size, n),
        Transport::TokioUnixStream => async_bench::throughput(AsyncKind::TokioUnix, size, n),
        _ => {
            let kind =
                t.kernel().ok_or_else(|| io::Error::other(format!("{} has no throughput", t.name())))?;
            let (a, b) = kernel_pair(kind, size.max(64))?;
            stream_endpoints(n, size, move || Ok(a), move || Ok(b))
        }
    }
}

/// CPU time a consumer uses while blocked on an empty ring for `wait`.
pub fn idle_cpu(wait: Duration) -> io::Result<Measurement> {
    let rings = RingPair::new(1 << 16)?;
    let _producer = rings.side_a(Wait::Block, false)?;
    // The child's CPU time and wall time of the wait itself (not its start, attach and exit),
    // in nanoseconds, written to memory shared with us.
    let out = shm_core::Region::anonymous(16)?;
    run_pair(
        || {
            let Ok(mut end) = rings.side_b(Wait::Block, false) else { return 2 };
            let Some(c) = end.consumer() else { return 2 };
            // A first short wait faults in what the wait touches.
            let _ = c.recv_timeout(&mut Vec::new(), Duration::from_millis(5));
            let (cpu, start) = (cpu_time(UsageWho::RUSAGE_SELF), Instant::now());
            let r = c.recv_timeout(&mut Vec::new(), wait);
            let (cpu, wall) = (cpu_time(UsageWho::RUSAGE_SELF).saturating_sub(cpu), start.elapsed());
            let mut bytes = [0u8; 16];
            bytes[..8].copy_from_slice(&(cpu.as_nanos() as u64).to_le_bytes());
            bytes[8..].copy_from_slice(&(wall.as_nanos() as u64).to_le_bytes());
            match (r, out.write_at(0, &bytes)) {
                (Err(shm_ring::RecvTimeoutError::Timeout), Ok(())) => 0,
                _ => 3,
            }
        },
        || (),
    )?;
    let mut bytes = [0u8; 16];
    out.read_at(0, &mut bytes)?;
    let word = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().unwrap_or([0; 8])) as f64;
    let mut m = Measurement::new(Transport::ShmSpscBlocking.name(), "idle_cpu", 0, 1);
    m.cpu_ns = Some(word(0));
    m.wall_ns = Some(word(8));
    Ok(m)
}

/// Blocking over spinning SPSC throughput at `size` bytes, `reps` times. Each repetition is
/// one stream whose both ends switch between spinning and blocking calls every [`SEGMENT`]
/// messages, so that both kinds of wait see the same machine at the same time (on a VM the
/// two vCPUs' placement on the host changes the rate of a stream by up to 4x between runs);
/// the ratio is of the median rate of the blocking segments over the median of the spinning
/// ones (a segment that met a preempted vCPU moves a median little). The first two segments
/// warm up and are not counted.
pub fn blocking_vs_spinning(size: usize, n: u64, reps: usize) -> io::Result<Measurement> {
    let mode = |seq: u64| if (seq / SEGMENT) % 2 == 0 { Wait::Spin } else { Wait::Block };
    let n = n.max(42 * SEGMENT);
    let ratios = (0..reps)
        .map(|_| {
            let rings = RingPair::new(1 << 18)?;
            run_pair(
                || {
                    let Ok(mut p) = rings.side_a(Wait::Spin, false) else { return 2 };
                    for seq in 0..n {
                        p.set_wait(mode(seq));
                        if p.send_with(size, |m| fill(m, seq)).is_err() {
                            return 3;
                        }
                    }
                    0
                },
                || -> io::Result<f64> {
                    let mut c = rings.side_b(Wait::Spin, false)?;
                    // Segment rates, spinning (0) and blocking (1).
                    let mut rates: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
                    let mut start = Instant::now();
                    for seq in 0..n {
                        c.set_wait(mode(seq));
                        if !c.recv_with(size, |m| check(m, seq, size))? {
                            return Err(bad(seq));
                        }
                        if (seq + 1) % SEGMENT == 0 {
                            let k = (mode(seq) == Wait::Block) as usize;
                            if seq >= 2 * SEGMENT {
                                rates[k].push(SEGMENT as f64 / start.elapsed().as_secs_f64());
                            }
                            start = Instant::now();
                        }
                    }
                    let [spinning, blocking] = rates;
                    Ok(median(blocking) / median(spinning))
                },
            )?
        })
        .collect::<io::Result<Vec<f64>>>()?;
    Ok(Measurement::alternating(Transport::ShmSpscBlocking.name(), "blocking_vs_spinning", size, ratios))
}

/// The spinning ring's round trip over the atomic floor's, both measured in one pair of
/// processes that switch between the two every [`RTT_SEGMENT`] round trips, so that both see the
/// same placement of the two vCPUs (which on a VM moves the floor between 80 and 400 ns from one
/// run to the next). One ratio per pair of segments (ring median over floor median); the first
/// pair warms up and is not counted. Round trips are timed [`RTT_GROUP`] at a time.
pub fn rtt_vs_floor(pairs: usize) -> io::Result<Measurement> {
    let ratios = ring_vs_floor(pairs, RTT_SEGMENT, RTT_GROUP, false)?;
    Ok(Measurement::alternating(Transport::ShmSpsc.name(), "rtt_vs_floor", 8, ratios))
}

/// The blocking ring's wake round trip over the futex floor's, both measured in one pair of
/// processes that switch between the two every [`WAKE_SEGMENT`] pings, each ping
/// [`WAKE_SPACING`] after the last (as [`rtt_vs_floor`] does, for the same reason: on this VM
/// the cost of waking a vCPU changes by 2x from one run to the next). One ratio per pair of
/// segments (ring median over floor median); the first pair warms up and is not counted.
pub fn wake_vs_floor(pairs: usize) -> io::Result<Measurement> {
    let ratios = ring_vs_floor(pairs, WAKE_SEGMENT, 1, true)?;
    Ok(Measurement::alternating(Transport::ShmSpscBlocking.name(), "wake_vs_floor", 8, ratios))
}

/// 8-byte ping-pong alternating between a ring pair and a floor every `segment` round trips:
/// the spinning ring and the atomic floor, or with `spaced` the blocking ring and the futex
/// floor, each ping [`WAKE_SPACING`] after the last. Round trips are timed `group` at a time.
/// One ratio (ring median over floor median) per pair of segments after the first.
fn ring_vs_floor(pairs: usize, segment: u64, group: u64, spaced: bool) -> io::Result<Vec<f64>> {
    let rings = RingPair::new(1 << 16)?;
    let floor = Floor::new()?;
    let wait = if spaced { Wait::Block } else { Wait::Spin };
    let segments = 2 * (pairs as u64 + 1);
    run_pair(
        || {
            let Ok(mut b) = rings.side_b(wait, true) else { return 2 };
            let (mut seq, mut i) = (0u64, 0u64);
            for s in 0..segments {
                for _ in 0..segment {
                    if s % 2 == 0 {
                        i += 1;
                        if spaced {
                            floor.futex_pong(i as u32);
                        } else {
                            floor.atomic_pong(i);
                        }
                        continue;
                    }
                    let ok = b.recv_with(8, |m| check(m, seq, 8));
                    if !matches!(ok, Ok(true)) || b.send_with(8, |m| fill(m, seq)).is_err() {
                        return 3;
                    }
                    seq += 1;
                }
            }
            0
        },
        || -> io::Result<Vec<f64>> {
            let mut a = rings.side_a(wait, true)?;
            let (mut seq, mut i) = (0u64, 0u64);
            let mut medians = [0.0f64; 2];
            let mut ratios = Vec::with_capacity(pairs);
            let mut samples = Vec::with_capacity((segment / group) as usize);
            for s in 0..segments {
                samples.clear();
                for _ in 0..segment / group {
                    if spaced {
                        std::thread::sleep(WAKE_SPACING);
                    }
                    let t = Instant::now();
                    for _ in 0..group {
                        if s % 2 == 0 {
                            i += 1;
                            if spaced {
                                floor.futex_ping(i as u32);
                            } else {
                                floor.atomic_ping(i);
                            }
                        } else {
                            a.send_with(8, |m| fill(m, seq))?;
                            if !a.recv_with(8, |m| check(m, seq, 8))? {
                                return Err(bad(seq));
                            }
                            seq += 1;
                        }
                    }
                    samples.push(t.elapsed().as_nanos() as u64);
                }
                samples.sort_unstable();
                medians[(s % 2) as usize] = percentile(&samples, 0.5);
                if s % 2 == 1 && s > 1 {
                    ratios.push(medians[1] / medians[0]);
                }
            }
            Ok(ratios)
        },
    )?
}

/// The batch API over a pipe written in 64 KiB batches, both measured in one pair of processes
/// that switch between the two every [`BATCH_SEGMENT`] messages (as [`rtt_vs_floor`] does, for
/// the same reason). One ratio per pair of segments (ring rate over pipe rate), each rate
/// timed at the consumer from the first batch of its segment to the last message; the first
/// pair warms up and is not counted.
pub fn batch_vs_pipe(size: usize, pairs: usize) -> io::Result<Measurement> {
    let per = (CHUNK / size) as u64;
    let seg = BATCH_SEGMENT.div_ceil(per) * per;
    let segments = 2 * (pairs as u64 + 1);
    let rings = RingPair::new(1 << 18)?;
    let (mut r, mut w) = batched_pipe()?;
    let ratios = run_pair(
        || {
            let Ok(mut end) = rings.side_a(Wait::Spin, false) else { return 2 };
            let Some(p) = end.producer() else { return 2 };
            let mut buf = vec![0u8; per as usize * size];
            let mut seq = 0u64;
            for s in 0..segments {
                let stop = seq + seg;
                if s % 2 == 0 {
                    if !ring_send_batched(p, size, &mut seq, stop) {
                        return 3;
                    }
                    continue;
                }
                while seq < stop {
                    if pipe_send_chunk(&mut w, &mut buf, size, seq).is_err() {
                        return 3;
                    }
                    seq += per;
                }
            }
            0
        },
        || -> io::Result<Vec<f64>> {
            let mut end = rings.side_b(Wait::Spin, false)?;
            let c = end.consumer().ok_or_else(|| io::Error::other("no consumer"))?;
            let mut buf = vec![0u8; per as usize * size];
            let (mut seq, mut ok) = (0u64, true);
            let mut rates = [0.0f64; 2];
            let mut ratios = Vec::with_capacity(pairs);
            for s in 0..segments {
                let stop = seq + seg;
                let mut start: Option<(Instant, u64)> = None;
                while seq < stop {
                    if s % 2 == 1 {
                        ok &= pipe_recv_chunk(&mut r, &mut buf, size, seq)?;
                        seq += per;
                    } else {
                        ring_recv_batched(c, size, &mut seq, stop, &mut ok)?;
                    }
                    if !ok {
                        return Err(bad(seq));
                    }
                    if start.is_none() && seq > stop - seg {
                        start = Some((Instant::now(), seq));
                    }
                }
                let (t0, first) = start.ok_or_else(|| io::Error::other("nothing received"))?;
                rates[(s % 2) as usize] = (stop - first) as f64 / t0.elapsed().as_secs_f64();
                if s % 2 == 1 && s > 1 {
                    ratios.push(rates[0] / rates[1]);
                }
            }
            Ok(ratios)
        },
    )??;
    Ok(Measurement::alternating(Transport::ShmSpscBatch.name(), "batch_vs_pipe", size, ratios))
}

/// Messages per segment of [`batch_vs_pipe`] (rounded up to whole 64 KiB pipe writes).
pub const BATCH_SEGMENT: u64 = 200_000;

/// Pings per segment of [`wake_vs_floor`].
pub const WAKE_SEGMENT: u64 = 25;

/// Round trips per segment of [`rtt_vs_floor`].
pub const RTT_SEGMENT: u64 = 4_992;

/// Round trips timed together in [`rtt_vs_floor`] (one after the other, each a full ping-pong):
/// the clock's steps on this VM (about 10 ns) would otherwise move a median of 130 ns by 8 %.
pub const RTT_GROUP: u64 = 16;

/// Messages per segment of [`blocking_vs_spinning`]: many times what the ring holds, so that the
/// producer running ahead of the consumer mixes little of one mode into the other.
pub const SEGMENT: u64 = 50_000;

use nix::sys::resource::UsageWho;

fn cpu_time(who: UsageWho) -> Duration {
    use nix::sys::resource::getrusage;
    match getrusage(who) {
        Ok(u) => {
            let tv = |t: nix::sys::time::TimeVal| {
                Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
            };
            tv(u.user_time()) + tv(u.system_time())
        }
        Err(_) => Duration::ZERO,
    }
}

/// Run the plan, handing each measurement to `report` as soon as it is done.
pub fn run(plan: &Plan, mut report: impl FnMut(&Measurement)) -> io::Result<Vec<Measurement>> {
    let mut all = Vec::new();
    let mut emit = |m: Measurement, all: &mut Vec<Measurement>| {
        report(&m);
        all.push(m);
    };
    for &t in &plan.transports {
        if t.does_rtt() {
            let mut s = rtt_samples(t, plan.rtt_iters(t), false)?;
            s.sort_unstable();
            let mut m = Measurement::new(t.name(), "rtt", 8, 1);
            m.median_ns = Some(percentile(&s, 0.5));
            m.p99_ns = Some(percentile(&s, 0.99));
            emit(m, &mut all);
        }
    }
    for &t in &plan.transports {
        if t.does_wake_rtt() {
            let mut s = rtt_samples(t, plan.wake_iters(), true)?;
            s.sort_unstable();
            let mut m = Measurement::new(t.name(), "wake_rtt", 8, 1);
            m.median_ns = Some(percentile(&s, 0.5));
            m.p99_ns = Some(percentile(&s, 0.99));
            emit(m, &mut all);
        }
    }
    for &size in &plan.sizes {
        for &t in &plan.transports {
            if !t.does_throughput(size) {
                continue;
            }
            let n = plan.messages(t, size);
            if t == Transport::ShmBroadcast {
                for subscribers in [1, 2, 4] {
                    // Per subscriber: the median over subscribers of each repetition, then over
                    // repetitions.
                    let runs = (0..plan.reps())
                        .map(|_| broadcast_throughput(subscribers, size, n).map(median))
                        .collect::<io::Result<Vec<f64>>>()?;
                    let rate = median(runs);
                    let mut m = Measurement::new(t.name(), "throughput", size, 1);
                    m.subscribers = Some(subscribers);
                    m.msgs_per_s = Some(rate);
                    m.mb_per_s = Some(rate * size as f64 / 1e6);
                    emit(m, &mut all);
                }
                continue;
            }
            let producer_counts: &[u32] = if t == Transport::ShmMpsc { &[1, 2, 4] } else { &[1] };
            for &producers in producer_counts {
                let runs = (0..plan.reps())
                    .map(|_| match t {
                        Transport::ShmMpsc => mpsc_throughput(producers, size, n),
                        _ => throughput(t, size, n),
                    })
                    .collect::<io::Result<Vec<f64>>>()?;
                let rate = median(runs);
                let mut m = Measurement::new(t.name(), "throughput", size, producers);
                m.msgs_per_s = Some(rate);
                m.mb_per_s = Some(rate * size as f64 / 1e6);
                emit(m, &mut all);
            }
        }
    }
    if [Transport::ShmSpscBlocking, Transport::FutexFloor].iter().all(|t| plan.transports.contains(t)) {
        emit(wake_vs_floor(if plan.quick { 3 } else { 20 })?, &mut all);
    }
    if [Transport::ShmSpsc, Transport::AtomicFloor].iter().all(|t| plan.transports.contains(t)) {
        emit(rtt_vs_floor(if plan.quick { 8 } else { 40 })?, &mut all);
    }
    if [Transport::ShmSpsc, Transport::ShmMpsc].iter().all(|t| plan.transports.contains(t))
        && plan.sizes.contains(&64)
    {
        emit(mpsc_vs_spsc(64, if plan.quick { 6 } else { 15 })?, &mut all);
    }
    if [Transport::ShmSpsc, Transport::ShmBroadcast].iter().all(|t| plan.transports.contains(t))
        && plan.sizes.contains(&64)
    {
        emit(broadcast_vs_spsc(64, if plan.quick { 6 } else { 15 })?, &mut all);
    }
    if [Transport::ShmSpsc, Transport::Pipe].iter().all(|t| plan.transports.contains(t))
        && plan.sizes.contains(&64)
    {
        let rounds = if plan.quick { 3 } else { 8 };
        emit(ring_vs_kernels("throughput_vs_pipe", 64, &[Kernel::Pipe], SMALL_SEGMENT, rounds)?, &mut all);
    }
    let sockets = [Transport::UnixStream, Transport::UnixSeqPacket, Transport::Tcp];
    if plan.transports.contains(&Transport::ShmSpsc)
        && sockets.iter().all(|t| plan.transports.contains(t))
        && plan.sizes.contains(&65536)
    {
        let rounds = if plan.quick { 3 } else { 8 };
        let kinds = [Kernel::UnixStream, Kernel::UnixSeqPacket, Kernel::Tcp];
        emit(ring_vs_kernels("throughput_vs_sockets", 65536, &kinds, LARGE_SEGMENT, rounds)?, &mut all);
    }
    let batched = [Transport::ShmSpscBatch, Transport::PipeBatched];
    if batched.iter().all(|t| plan.transports.contains(t)) && plan.sizes.contains(&64) {
        emit(batch_vs_pipe(64, if plan.quick { 6 } else { 15 })?, &mut all);
    }
    let both = [Transport::ShmSpsc, Transport::ShmSpscBlocking];
    if both.iter().all(|t| plan.transports.contains(t)) && plan.sizes.contains(&64) {
        let n = plan.messages(Transport::ShmSpsc, 64);
        emit(blocking_vs_spinning(64, n, 5)?, &mut all);
    }
    let both = [Transport::ShmSpsc, Transport::ShmSpscAsync];
    if both.iter().all(|t| plan.transports.contains(t)) && plan.sizes.contains(&64) {
        let (reps, segments) = if plan.quick { (3, 8) } else { (5, 40) };
        let ratios = async_bench::async_vs_spinning(64, reps, segments)?;
        emit(
            Measurement::alternating(Transport::ShmSpscAsync.name(), "async_vs_spinning", 64, ratios),
            &mut all,
        );
    }
    if plan.transports.contains(&Transport::ShmSpscBlocking) {
        let wait = if plan.quick { Duration::from_millis(300) } else { Duration::from_secs(1) };
        emit(idle_cpu(wait)?, &mut all);
    }
    Ok(all)
}

// ---------------------------------------------------------------------------------------------
// Report: table and targets
// ---------------------------------------------------------------------------------------------

fn find<'a>(all: &'a [Measurement], transport: &str, test: &str, size: usize) -> Option<&'a Measurement> {
    all.iter().find(|m| m.transport == transport && m.test == test && m.msg_size == size)
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

fn fmt_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2} M/s", r / 1e6)
    } else {
        format!("{:.0} k/s", r / 1e3)
    }
}

/// The rows of one round-trip test: header, then median, p99 and `ratio(median)` per transport.
fn rtt_rows(
    out: &mut String,
    all: &[Measurement],
    test: &str,
    vs: &str,
    ratio: impl Fn(f64) -> Option<String>,
) {
    out.push_str(&format!("  {:<20} {:>12} {:>12} {:>14}\n", "transport", "median", "p99", vs));
    for m in all.iter().filter(|m| m.test == test) {
        let med = m.median_ns.unwrap_or(0.0);
        out.push_str(&format!(
            "  {:<20} {:>12} {:>12} {:>14}\n",
            m.transport,
            fmt_ns(med),
            fmt_ns(m.p99_ns.unwrap_or(0.0)),
            ratio(med).unwrap_or_default()
        ));
    }
}

/// The results as a text table.
pub fn table(all: &[Measurement]) -> String {
    let mut out = String::new();
    out.push_str("Round trip, 8-byte ping-pong between two processes\n");
    let pipe_rtt = find(all, "pipe", "rtt", 8).and_then(|m| m.median_ns);
    rtt_rows(&mut out, all, "rtt", "vs pipe", |med| pipe_rtt.map(|p| format!("{:.1}x faster", p / med)));
    if all.iter().any(|m| m.test == "wake_rtt") {
        out.push_str(&format!(
            "\nWake round trip, 8-byte pings {} ms apart (the peer sleeps before each)\n",
            WAKE_SPACING.as_millis()
        ));
        let floor = find(all, "futex-floor", "wake_rtt", 8).and_then(|m| m.median_ns);
        rtt_rows(&mut out, all, "wake_rtt", "vs futex floor", |med| {
            floor.map(|f| format!("{:.2}x", med / f))
        });
    }
    out.push_str("\nOne-way throughput (median of repetitions), every message verified\n");
    out.push_str(&format!(
        "  {:<24} {:>8} {:>12} {:>12} {:>12}\n",
        "transport", "size", "msgs/s", "MB/s", "vs pipe"
    ));
    let label = |m: &Measurement| {
        if let Some(n) = m.subscribers {
            format!("{} x{n} (each)", m.transport)
        } else if m.producers > 1 || m.transport == "shm-mpsc" {
            format!("{} x{}", m.transport, m.producers)
        } else {
            m.transport.clone()
        }
    };
    for m in all.iter().filter(|m| m.test == "throughput") {
        let pipe = find(all, "pipe", "throughput", m.msg_size).and_then(|p| p.msgs_per_s);
        let r = m.msgs_per_s.unwrap_or(0.0);
        let ratio = pipe.map(|p| format!("{:.1}x", r / p)).unwrap_or_default();
        out.push_str(&format!(
            "  {:<24} {:>8} {:>12} {:>12.1} {:>12}\n",
            label(m),
            m.msg_size,
            fmt_rate(r),
            m.mb_per_s.unwrap_or(0.0),
            ratio
        ));
    }
    let alternating = [
        (
            "wake_vs_floor",
            format!("Blocking ring wake RTT over the futex floor's, alternating every {WAKE_SEGMENT} pings"),
        ),
        (
            "rtt_vs_floor",
            format!("Spinning ring RTT over the atomic floor's, alternating every {RTT_SEGMENT} round trips"),
        ),
        ("mpsc_vs_spsc", format!("MPSC x1 over SPSC at 64 B, alternating every {MPSC_SEGMENT} messages")),
        (
            "broadcast_vs_spsc",
            format!(
                "Broadcast, one subscriber, over SPSC at 64 B, alternating every {MPSC_SEGMENT} messages"
            ),
        ),
        (
            "batch_vs_pipe",
            format!("Batch API over pipe-batched at 64 B, alternating every {BATCH_SEGMENT} messages"),
        ),
        (
            "throughput_vs_pipe",
            format!("Spinning ring over pipe at 64 B, alternating every {SMALL_SEGMENT} messages"),
        ),
        (
            "throughput_vs_sockets",
            format!("Spinning ring over the best socket at 64 KiB, in turns of {LARGE_SEGMENT} messages"),
        ),
    ];
    for (test, what) in alternating {
        let ratios = all.iter().find(|m| m.test == test).and_then(|m| m.ratios.clone()).unwrap_or_default();
        if !ratios.is_empty() {
            let (lo, hi) = ratios.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), &r| (lo.min(r), hi.max(r)));
            out.push_str(&format!(
                "\n{what}: median {:.2}x of {} pairs (from {lo:.2}x to {hi:.2}x)\n",
                median(ratios.clone()),
                ratios.len()
            ));
        }
    }
    for m in all.iter().filter(|m| m.test == "blocking_vs_spinning") {
        let ratios: Vec<String> = m.ratios.iter().flatten().map(|r| format!("{r:.2}x")).collect();
        out.push_str(&format!(
            "\nBlocking over spinning throughput at {} B, both in one stream, alternating: {}\n",
            m.msg_size,
            ratios.join(" ")
        ));
    }
    for m in all.iter().filter(|m| m.test == "idle_cpu") {
        out.push_str(&format!(
            "\nIdle: a consumer blocked {} on an empty ring used {} of CPU\n",
            fmt_ns(m.wall_ns.unwrap_or(0.0)),
            fmt_ns(m.cpu_ns.unwrap_or(0.0))
        ));
    }
    let targets = targets(all);
    if !targets.is_empty() {
        out.push_str("\nTargets (ratios within this run)\n");
        for t in targets {
            out.push_str(&format!("  [{}] {}\n", if t.met { "met" } else { "MISSED" }, t.text));
        }
    }
    out
}

/// A target of the project, checked against one run.
#[derive(Clone, Debug)]
pub struct Target {
    /// What was compared, with the figures.
    pub text: String,
    /// Whether it held.
    pub met: bool,
}

/// The median ratio of an alternating measurement (`rtt_vs_floor`, `wake_vs_floor`,
/// `mpsc_vs_spsc`, `batch_vs_pipe`, `throughput_vs_pipe`, `throughput_vs_sockets`), if it was
/// made.
fn alternating(all: &[Measurement], test: &str) -> Option<f64> {
    let ratios = all.iter().find(|m| m.test == test)?.ratios.clone()?;
    (!ratios.is_empty()).then(|| median(ratios))
}

/// The project's performance targets, evaluated on the measurements present.
pub fn targets(all: &[Measurement]) -> Vec<Target> {
    let rtt = |t: &str| find(all, t, "rtt", 8).and_then(|m| m.median_ns);
    let thr = |t: &str, s: usize| find(all, t, "throughput", s).and_then(|m| m.msgs_per_s);
    let mut out = Vec::new();
    let mut add = |text: String, met: bool| out.push(Target { text, met });
    if let Some(ratio) = alternating(all, "rtt_vs_floor") {
        add(
            format!("spinning ring RTT {ratio:.2}x the atomic floor, alternating (target <= 1.3x)"),
            ratio <= 1.3,
        );
    } else if let (Some(ring), Some(floor)) = (rtt("shm-spsc"), rtt("atomic-floor")) {
        add(
            format!("spinning ring RTT {:.2}x the atomic floor (target <= 1.3x)", ring / floor),
            ring <= floor * 1.3,
        );
    }
    for k in ["pipe", "unix-stream"] {
        if let (Some(ring), Some(other)) = (rtt("shm-spsc"), rtt(k)) {
            add(
                format!("spinning ring RTT {:.1}x faster than {k} (target >= 25x)", other / ring),
                other >= 25.0 * ring,
            );
        }
    }
    let wake = |t: &str| find(all, t, "wake_rtt", 8).and_then(|m| m.median_ns);
    if let Some(ratio) = alternating(all, "wake_vs_floor") {
        add(
            format!(
                "blocking ring wake RTT {ratio:.2}x the futex floor's, pings {} ms apart, alternating (target <= 1.15x)",
                WAKE_SPACING.as_millis()
            ),
            ratio <= 1.15,
        );
    } else if let (Some(ring), Some(floor)) = (wake("shm-spsc-blocking"), wake("futex-floor")) {
        add(
            format!(
                "blocking ring wake RTT {:.2}x the futex floor's, pings {} ms apart (target <= 1.15x)",
                ring / floor,
                WAKE_SPACING.as_millis()
            ),
            ring <= floor * 1.15,
        );
    }
    if let (Some(ring), Some(pipe)) = (rtt("shm-spsc-blocking"), rtt("pipe")) {
        add(format!("blocking ring RTT {:.1}x faster than pipe (target > 1x)", pipe / ring), ring < pipe);
    }
    if let Some(ratio) = alternating(all, "throughput_vs_pipe") {
        add(format!("64 B throughput {ratio:.1}x pipe, alternating (target >= 10x)"), ratio >= 10.0);
    } else if let (Some(ring), Some(pipe)) = (thr("shm-spsc", 64), thr("pipe", 64)) {
        add(format!("64 B throughput {:.1}x pipe (target >= 10x)", ring / pipe), ring >= 10.0 * pipe);
    }
    if let Some(ratio) = alternating(all, "batch_vs_pipe") {
        add(
            format!("64 B batch API {ratio:.2}x pipe written in 64 KiB batches, alternating (target >= 1x)"),
            ratio >= 1.0,
        );
    } else if let (Some(ring), Some(pipe)) = (thr("shm-spsc-batch", 64), thr("pipe-batched", 64)) {
        add(
            format!("64 B batch API {:.1}x pipe written in 64 KiB batches (target >= 1x)", ring / pipe),
            ring >= pipe,
        );
    }
    let mpsc1 = all
        .iter()
        .find(|m| m.transport == "shm-mpsc" && m.producers == 1 && m.msg_size == 64)
        .and_then(|m| m.msgs_per_s);
    if let Some(ratio) = alternating(all, "mpsc_vs_spsc") {
        add(
            format!("MPSC with one producer {ratio:.2}x SPSC at 64 B, alternating (target >= 0.85x)"),
            ratio >= 0.85,
        );
    } else if let (Some(mpsc), Some(spsc)) = (mpsc1, thr("shm-spsc", 64)) {
        add(
            format!("MPSC with one producer {:.2}x SPSC at 64 B (target >= 0.85x)", mpsc / spsc),
            mpsc >= 0.85 * spsc,
        );
    }
    let broadcast1 = all
        .iter()
        .find(|m| m.transport == "shm-broadcast" && m.subscribers == Some(1) && m.msg_size == 64)
        .and_then(|m| m.msgs_per_s);
    if let Some(ratio) = alternating(all, "broadcast_vs_spsc") {
        add(
            format!("broadcast with one subscriber {ratio:.2}x SPSC at 64 B, alternating (target >= 0.7x)"),
            ratio >= 0.7,
        );
    } else if let (Some(b), Some(spsc)) = (broadcast1, thr("shm-spsc", 64)) {
        add(
            format!("broadcast with one subscriber {:.2}x SPSC at 64 B (target >= 0.7x)", b / spsc),
            b >= 0.7 * spsc,
        );
    }
    if let Some(ratios) =
        all.iter().find(|m| m.test == "blocking_vs_spinning").and_then(|m| m.ratios.as_ref())
    {
        let worst = ratios.iter().copied().fold(f64::INFINITY, f64::min);
        add(
            format!(
                "blocking 64 B throughput at least {worst:.2}x spinning in each of {} repetitions (target >= 0.7x)",
                ratios.len()
            ),
            !ratios.is_empty() && worst >= 0.7,
        );
    }
    if let (Some(ring), Some(tokio)) = (rtt("shm-spsc-async"), rtt("tokio-unix-stream")) {
        add(
            format!("async ring RTT {:.1}x faster than tokio's UnixStream (target >= 5x)", tokio / ring),
            tokio >= 5.0 * ring,
        );
    }
    if let Some(ratio) = alternating(all, "async_vs_spinning") {
        add(
            format!("async ring 64 B throughput {ratio:.2}x the spinning ring, alternating (target >= 0.5x)"),
            ratio >= 0.5,
        );
    } else if let (Some(a), Some(spin)) = (thr("shm-spsc-async", 64), thr("shm-spsc", 64)) {
        add(
            format!("async ring 64 B throughput {:.2}x the spinning ring (target >= 0.5x)", a / spin),
            a >= 0.5 * spin,
        );
    }
    if let Some(m) = all.iter().find(|m| m.test == "idle_cpu") {
        let share = m.cpu_ns.unwrap_or(0.0) / m.wall_ns.unwrap_or(f64::INFINITY);
        add(
            format!(
                "a consumer blocked on an empty ring used {:.2} % of a core (target <= 1 %)",
                share * 100.0
            ),
            share <= 0.01,
        );
    }
    let best_socket = ["unix-stream", "unix-seqpacket", "tcp"]
        .iter()
        .filter_map(|k| thr(k, 65536))
        .fold(None, |a: Option<f64>, b| Some(a.map_or(b, |a| a.max(b))));
    if let Some(ratio) = alternating(all, "throughput_vs_sockets") {
        add(
            format!("64 KiB throughput {ratio:.1}x the best socket, alternating (target >= 1.5x)"),
            ratio >= 1.5,
        );
    } else if let (Some(ring), Some(sock)) = (thr("shm-spsc", 65536), best_socket) {
        add(
            format!("64 KiB throughput {:.1}x the best socket (target >= 1.5x)", ring / sock),
            ring >= 1.5 * sock,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{check, fill};

    #[test]
    fn fill_and_check_agree_at_every_length_and_catch_any_changed_byte() {
        for len in 0..=40 {
            let mut buf = vec![0xEE; len];
            fill(&mut buf, 0x0102_0304_0506_0708);
            assert!(check(&buf, 0x0102_0304_0506_0708, len), "len {len}");
            assert!(!check(&buf, 0x0102_0304_0506_0709, len) || len == 0, "wrong seq passed at len {len}");
            for i in 0..len {
                let mut bad = buf.clone();
                bad[i] ^= 0x40;
                assert!(!check(&bad, 0x0102_0304_0506_0708, len), "byte {i} of {len} changed unnoticed");
            }
            assert!(!check(&buf, 0x0102_0304_0506_0708, len + 1), "wrong length passed at {len}");
        }
    }
}
