//! `shm-bench soak`: producers and a consumer as separate processes for a long time, random
//! message sizes and random pauses on both sides, every message verified.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use shm_core::Region;
use shm_ring::{Kind, RecvTimeoutError, RingConfig};

use crate::bench::{check, fill};
use crate::pair::{pin_to, spawn_child};

/// What a soak run moved.
#[derive(Clone, Debug, Serialize)]
pub struct SoakReport {
    /// "spsc" or "mpsc".
    pub kind: &'static str,
    /// Producer processes.
    pub producers: u32,
    /// Wall time.
    pub seconds: f64,
    /// Messages received and verified.
    pub messages: u64,
    /// Payload bytes received.
    pub bytes: u64,
    /// Messages missing or out of order (must be 0).
    pub lost: u64,
    /// Messages with wrong content (must be 0).
    pub corrupt: u64,
    /// Peak resident set size of the consumer process, KiB.
    pub consumer_peak_rss_kib: u64,
    /// Peak resident set size of the largest producer process, KiB.
    pub producer_peak_rss_kib: u64,
}

const MAX: usize = 4096;

/// Receive one message into the buffer, waiting a little: either ring kind's consumer.
type ReceiveFn = dyn FnMut(&mut Vec<u8>) -> Result<usize, RecvTimeoutError>;

/// A small generator for sizes and pauses.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn err<E: std::fmt::Display>(e: E) -> io::Error {
    io::Error::other(e.to_string())
}

fn maxrss_kib(who: nix::sys::resource::UsageWho) -> u64 {
    nix::sys::resource::getrusage(who).map(|u| u.max_rss() as u64).unwrap_or(0)
}

/// Run `producers` producer processes (1 for SPSC) against one consumer for `duration`.
pub fn soak(kind: Kind, producers: u32, duration: Duration) -> io::Result<SoakReport> {
    let producers = if kind == Kind::Mpsc { producers.max(1) } else { 1 };
    let config = match kind {
        Kind::Spsc => RingConfig::spsc(1 << 16),
        Kind::Mpsc => RingConfig::mpsc(1 << 16, producers),
        Kind::Broadcast => RingConfig::broadcast(1 << 16, 1),
    }
    .max_message(MAX as u64);
    let region = Region::anonymous(config.region_len())?;
    shm_ring::init(&region, &config).map_err(err)?;
    let region = Arc::new(region);
    // The receiving end first: a broadcast subscriber gets what is sent after it joined.
    let mut recv: Box<ReceiveFn> = match kind {
        Kind::Spsc => {
            let mut c = shm_ring::spsc::Consumer::open(region.clone()).map_err(err)?;
            Box::new(move |b| c.recv_timeout(b, Duration::from_millis(100)))
        }
        Kind::Mpsc => {
            let mut c = shm_ring::mpsc::Consumer::open(region.clone()).map_err(err)?;
            Box::new(move |b| c.recv_timeout(b, Duration::from_millis(100)))
        }
        Kind::Broadcast => {
            let mut c = shm_ring::broadcast::Subscriber::open(region.clone()).map_err(err)?;
            Box::new(move |b| c.recv_timeout(b, Duration::from_millis(100)))
        }
    };
    let start = Instant::now();
    let end = start + duration;
    let mut children = Vec::new();
    for id in 0..producers as u64 {
        let region = region.clone();
        children.push(spawn_child(0, move || {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (id + 1));
            let mut buf = vec![0u8; MAX];
            let (mut spsc, mut mpsc, mut broadcast) = (None, None, None);
            match kind {
                Kind::Spsc => spsc = shm_ring::spsc::Producer::open(region).ok(),
                Kind::Mpsc => mpsc = shm_ring::mpsc::Producer::open(region).ok(),
                Kind::Broadcast => broadcast = shm_ring::broadcast::Producer::open(region).ok(),
            }
            let mut push = |m: &[u8]| match (&mut spsc, &mut mpsc, &mut broadcast) {
                (Some(p), _, _) => p.send(m).is_ok(),
                (_, Some(p), _) => p.send(m).is_ok(),
                (_, _, Some(p)) => p.send(m).is_ok(),
                _ => false,
            };
            let mut seq = 0u64;
            while Instant::now() < end {
                let len = 8 + (rng.next() % (MAX as u64 - 7)) as usize;
                fill(&mut buf[..len], id << 56 | seq);
                if !push(&buf[..len]) {
                    return 3;
                }
                seq += 1;
                if rng.next() % 20_000 == 0 {
                    std::thread::sleep(Duration::from_micros(rng.next() % 3000));
                }
            }
            0
        })?);
    }
    pin_to(1);
    let mut next = vec![0u64; producers as usize];
    let mut report = SoakReport {
        kind: match kind {
            Kind::Spsc => "spsc",
            Kind::Mpsc => "mpsc",
            Kind::Broadcast => "broadcast",
        },
        producers,
        seconds: 0.0,
        messages: 0,
        bytes: 0,
        lost: 0,
        corrupt: 0,
        consumer_peak_rss_kib: 0,
        producer_peak_rss_kib: 0,
    };
    let mut rng = Rng(0xC0FFEE);
    let mut on_message = |m: &[u8], report: &mut SoakReport| {
        let mut head = [0u8; 8];
        head.copy_from_slice(&m[..8.min(m.len())]);
        let tagged = u64::from_le_bytes(head);
        let (id, seq) = ((tagged >> 56) as usize, tagged & ((1 << 56) - 1));
        match next.get_mut(id) {
            Some(want) if check(m, tagged, m.len()) => {
                report.lost += seq.saturating_sub(*want) + u64::from(seq < *want);
                *want = seq + 1;
            }
            _ => report.corrupt += 1,
        }
        report.messages += 1;
        report.bytes += m.len() as u64;
    };
    let grace = end + Duration::from_secs(30);
    let mut buf = Vec::new();
    loop {
        match recv(&mut buf) {
            Ok(_) => on_message(&buf, &mut report),
            Err(RecvTimeoutError::Timeout) if Instant::now() < grace => {}
            Err(RecvTimeoutError::Disconnected) if Instant::now() >= end => break,
            Err(RecvTimeoutError::Disconnected | RecvTimeoutError::Timeout) if Instant::now() < grace => {}
            Err(e) => return Err(err(e)),
        }
        if rng.next() % 50_000 == 0 {
            std::thread::sleep(Duration::from_micros(rng.next() % 3000));
        }
    }
    drop(recv);
    for c in children {
        c.join()?;
    }
    report.seconds = start.elapsed().as_secs_f64();
    report.consumer_peak_rss_kib = maxrss_kib(nix::sys::resource::UsageWho::RUSAGE_SELF);
    report.producer_peak_rss_kib = maxrss_kib(nix::sys::resource::UsageWho::RUSAGE_CHILDREN);
    Ok(report)
}
