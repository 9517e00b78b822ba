//! A peer that writes the payload bytes while this process copies them in or out. Every call
//! that is safe against an untrusted peer must stay sound: it copies with atomic word accesses
//! and never makes a `&[u8]` over the ring, so the worst a scribbler can do is garbage bytes.
//!
//! The scribbler writes random words over every payload word of the data area and never a
//! record word, so the ring's structure stays valid and every call must return normally with
//! the right length (a scribbler that also hits record words and positions is
//! `spsc_corrupt.rs`'s). One test per call, on both ring kinds, with the scribbler in a thread;
//! then every call in turn with the scribbler in a forked process.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use shm_core::Region;
use shm_ring::{RingConfig, TryRecvError};
use shm_testkit::{fork, pattern};

const CAP: u64 = 4096;
/// Records of 256 bytes: 16 a lap, record words at multiples of 256, never a padding record.
const LEN: usize = 248;
const RECORD: usize = 256;
const IN_FLIGHT: usize = 8;
const ROUNDS: usize = 400;
/// A message as a plain-old-data value.
type Pod = [u64; LEN / 8];

/// Write random words over every payload word of the data area starting at `data`.
///
/// # Safety
/// `data` is the data area (`CAP` bytes, 8-aligned) of a live ring mapping.
unsafe fn scribble_once(data: usize, rng: &mut u64) {
    for block in 0..CAP as usize / RECORD {
        for word in 1..RECORD / 8 {
            *rng = pattern::mix(*rng);
            let at = data + block * RECORD + word * 8;
            // SAFETY: inside the data area and 8-aligned (caller's contract); the rings access
            // the data area only with 8-byte atomics, so this store races with nothing
            // non-atomic.
            unsafe { &*(at as *const AtomicU64) }.store(*rng, Ordering::Relaxed);
        }
    }
}

/// A thread scribbling over the payloads of `region` until dropped.
struct Scribbler {
    stop: Arc<AtomicBool>,
    rounds: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Scribbler {
    /// Start scribbling; returns once the first pass over the data area is done.
    fn start(region: &Arc<Region>, header: usize) -> Scribbler {
        let stop = Arc::new(AtomicBool::new(false));
        let rounds = Arc::new(AtomicU64::new(0));
        let (region, flag, count) = (region.clone(), stop.clone(), rounds.clone());
        let thread = std::thread::spawn(move || {
            let data = region.as_mut_ptr() as usize + header;
            let mut rng = 1u64;
            while !flag.load(Ordering::Relaxed) {
                // SAFETY: `data` is the data area of the ring in `region`, alive (we hold it).
                unsafe { scribble_once(data, &mut rng) };
                count.fetch_add(1, Ordering::Relaxed);
            }
        });
        let s = Scribbler { stop, rounds, thread: Some(thread) };
        assert!(
            shm_testkit::wait_until(Duration::from_secs(20), || s.passes() > 0),
            "the scribbler never ran"
        );
        s
    }

    /// Passes over the data area so far.
    fn passes(&self) -> u64 {
        self.rounds.load(Ordering::Relaxed)
    }

    /// Whether the scribbler made `n` passes since `since` (it overlapped the calls).
    fn overlapped(&self, since: u64, n: u64) -> bool {
        self.passes() >= since + n
    }
}

impl Drop for Scribbler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn message(seq: u64) -> Vec<u8> {
    pattern::message(3, seq, LEN, LEN)
}

macro_rules! hostile_tests {
    ($kind:ident, $config:expr) => {
        mod $kind {
            use super::*;
            use shm_ring::$kind::{Consumer, Producer};

            fn ring() -> (Arc<Region>, usize, Producer, Consumer) {
                let config: RingConfig = $config;
                let region = Arc::new(Region::anonymous(config.region_len()).unwrap());
                shm_ring::init(&region, &config).unwrap();
                let p = Producer::open(region.clone()).unwrap();
                let c = Consumer::open(region.clone()).unwrap();
                (region, config.header_len(), p, c)
            }

            /// `ROUNDS` times: send `IN_FLIGHT` messages with `send`, receive them with `recv`
            /// (which returns the length it got), all while a thread scribbles the payloads.
            /// Then, the scribbler stopped, the ring still carries messages intact.
            fn case(
                mut send: impl FnMut(&mut Producer, &[u8]),
                mut recv: impl FnMut(&mut Consumer) -> usize,
            ) {
                let (region, header, mut p, mut c) = ring();
                let scribbler = Scribbler::start(&region, header);
                let since = scribbler.passes();
                let mut seq = 0;
                // At least ROUNDS rounds, and until the scribbler made 20 passes meanwhile.
                for round in 0.. {
                    if round >= ROUNDS && (scribbler.overlapped(since, 20) || round >= 1000 * ROUNDS) {
                        break;
                    }
                    for _ in 0..IN_FLIGHT {
                        send(&mut p, &message(seq));
                        seq += 1;
                    }
                    for _ in 0..IN_FLIGHT {
                        assert_eq!(recv(&mut c), LEN);
                    }
                }
                assert!(scribbler.overlapped(since, 20), "the scribbler hardly ran during the calls");
                drop(scribbler);
                let mut buf = Vec::new();
                for seq in 0..2 * CAP / RECORD as u64 {
                    send(&mut p, &message(seq));
                    c.try_recv(&mut buf).unwrap();
                    pattern::check(3, seq, LEN, LEN, &buf).unwrap();
                }
                assert_eq!(c.try_recv(&mut buf), Err(TryRecvError::Empty));
            }

            fn try_send(p: &mut Producer, m: &[u8]) {
                p.try_send(m).unwrap();
            }

            fn try_recv(c: &mut Consumer) -> usize {
                let mut buf = Vec::with_capacity(7); // grown from spare capacity
                let n = c.try_recv(&mut buf).unwrap();
                assert_eq!(buf.len(), n);
                n
            }

            #[test]
            fn try_recv_copies() {
                case(try_send, try_recv);
            }

            #[test]
            fn recv_timeout_copies() {
                case(try_send, |c| {
                    let mut buf = Vec::new();
                    c.recv_timeout(&mut buf, Duration::from_secs(5)).unwrap()
                });
            }

            #[test]
            fn recv_blocking_copies() {
                case(try_send, |c| c.recv(&mut Vec::new()).unwrap());
            }

            #[test]
            fn try_recv_into_copies() {
                case(try_send, |c| c.try_recv_into(&mut [0u8; 300]).unwrap());
            }

            #[test]
            fn recv_pod_copies() {
                case(try_send, |c| std::mem::size_of_val(&c.try_recv_pod::<Pod>().unwrap()));
            }

            #[test]
            fn recv_pod_timeout_copies() {
                case(try_send, |c| {
                    std::mem::size_of_val(&c.recv_pod_timeout::<Pod>(Duration::from_secs(5)).unwrap())
                });
            }

            #[test]
            fn read_guard_copies() {
                case(try_send, |c| {
                    let g = c.try_read().unwrap();
                    let mut all = [0u8; 300];
                    assert_eq!(g.copy_to(&mut all), LEN);
                    let mut part = [0u8; 101];
                    g.read_at(13, &mut part); // unaligned start and end
                    assert_eq!(g.to_vec().len(), LEN);
                    g.len()
                });
            }

            #[test]
            fn read_guard_timeout_copies() {
                case(try_send, |c| {
                    let g = c.read_timeout(Duration::from_secs(5)).unwrap();
                    g.to_vec().len()
                });
            }

            #[test]
            fn recv_batch_copies() {
                case(try_send, |c| {
                    let mut len = 0;
                    assert_eq!(c.recv_batch(1, |m| len = m.len()).unwrap(), 1);
                    len
                });
            }

            #[test]
            fn send_copies() {
                case(|p, m| p.send(m).unwrap(), try_recv);
            }

            #[test]
            fn send_timeout_copies() {
                case(|p, m| p.send_timeout(m, Duration::from_secs(5)).unwrap(), try_recv);
            }

            #[test]
            fn send_pod_copies() {
                case(|p, m| p.try_send_pod(bytemuck::pod_read_unaligned::<Pod>(m)).unwrap(), try_recv);
            }

            #[test]
            fn send_pod_timeout_copies() {
                case(
                    |p, m| {
                        p.send_pod_timeout(bytemuck::pod_read_unaligned::<Pod>(m), Duration::from_secs(5))
                            .unwrap()
                    },
                    try_recv,
                );
            }

            #[test]
            fn grant_copy_from_slice_copies() {
                case(
                    |p, m| {
                        let mut g = p.try_reserve(m.len()).unwrap();
                        g.copy_from_slice(m);
                        g.commit();
                    },
                    try_recv,
                );
            }

            #[test]
            fn grant_write_at_copies() {
                case(
                    |p, m| {
                        let mut g = p.reserve_timeout(m.len(), Duration::from_secs(5)).unwrap();
                        g.write_at(0, &m[..3]); // a partial first word
                        g.write_at(3, &m[3..100]); // unaligned start and end
                        g.write_at(100, &m[100..]);
                        g.commit();
                    },
                    try_recv,
                );
            }
        }
    };
}

hostile_tests!(spsc, RingConfig::spsc(CAP));
hostile_tests!(mpsc, RingConfig::mpsc(CAP, 2));

mod spsc_batches {
    use super::*;
    use shm_ring::spsc::{Consumer, Producer};

    /// Both batch calls of the SPSC producer, against a scribbler, received with `recv_batch`.
    fn case(mut send: impl FnMut(&mut Producer, &[Vec<u8>])) {
        let config = RingConfig::spsc(CAP);
        let region = Arc::new(Region::anonymous(config.region_len()).unwrap());
        let mut p = Producer::create(region.clone(), &config).unwrap();
        let mut c = Consumer::open(region.clone()).unwrap();
        let scribbler = Scribbler::start(&region, config.header_len());
        let since = scribbler.passes();
        for round in 0.. {
            if round >= ROUNDS as u64 && (scribbler.overlapped(since, 20) || round >= 1000 * ROUNDS as u64) {
                break;
            }
            let msgs: Vec<Vec<u8>> = (0..IN_FLIGHT as u64).map(|i| message(round * 8 + i)).collect();
            send(&mut p, &msgs);
            let mut lens = Vec::new();
            while lens.len() < IN_FLIGHT {
                c.recv_batch(usize::MAX, |m| lens.push(m.len())).unwrap();
            }
            assert_eq!(lens, vec![LEN; IN_FLIGHT]);
        }
        assert!(scribbler.overlapped(since, 20), "the scribbler hardly ran during the calls");
    }

    #[test]
    fn batch_writer_push_copies() {
        case(|p, msgs| {
            let mut b = p.write_batch();
            for m in msgs {
                b.push(m.len(), |buf| buf.copy_from_slice(m)).unwrap();
            }
            assert_eq!(b.commit(), msgs.len());
        });
    }

    #[test]
    fn send_batch_copies() {
        case(|p, msgs| assert_eq!(p.send_batch(&mut msgs.iter().peekable()).unwrap(), msgs.len()));
    }
}

/// Run `run` (at least once, and until the scribbler made 20 passes meanwhile) while another
/// process scribbles over the payloads.
fn with_hostile_process(config: RingConfig, mut run: impl FnMut(&Arc<Region>)) {
    let region = Arc::new(Region::anonymous(config.region_len()).unwrap());
    shm_ring::init(&region, &config).unwrap();
    // Word 0: stop flag (parent to child); word 1: passes made (child to parent).
    let control = Region::anonymous(4096).unwrap();
    // SAFETY: two aligned words at the start of a live 4096-byte mapping, only accessed
    // atomically by both processes.
    let word = |i: usize| unsafe { &*(control.as_ptr().add(i * 8) as *const AtomicU64) };
    let data = region.as_mut_ptr() as usize + config.header_len();
    let child = fork(|| {
        let mut rng = 7u64;
        while word(0).load(Ordering::Relaxed) == 0 {
            // SAFETY: the ring's data area, mapped in this forked child too.
            unsafe { scribble_once(data, &mut rng) };
            word(1).fetch_add(1, Ordering::Relaxed);
        }
        0
    });
    assert!(shm_testkit::wait_until(Duration::from_secs(20), || word(1).load(Ordering::Relaxed) > 0));
    let since = word(1).load(Ordering::Relaxed);
    run(&region);
    for _ in 0..1000 {
        if word(1).load(Ordering::Relaxed) >= since + 20 {
            break;
        }
        run(&region);
    }
    let passes = word(1).load(Ordering::Relaxed) - since;
    word(0).store(1, Ordering::Relaxed);
    child.join();
    assert!(passes >= 20, "the scribbling process made only {passes} passes during the calls");
}

macro_rules! every_call_against_a_process {
    ($name:ident, $kind:ident, $config:expr) => {
        #[test]
        fn $name() {
            use shm_ring::$kind::{Consumer, Producer};
            with_hostile_process($config, |region| {
                let mut p = Producer::open(region.clone()).unwrap();
                let mut c = Consumer::open(region.clone()).unwrap();
                let mut buf = Vec::new();
                let mut fixed = [0u8; LEN];
                let t = Duration::from_secs(5);
                for round in 0..ROUNDS as u64 {
                    let m = message(round);
                    let pod = bytemuck::pod_read_unaligned::<Pod>(&m);
                    for i in 0..IN_FLIGHT {
                        match (round as usize + i) % 6 {
                            0 => p.try_send(&m).unwrap(),
                            1 => p.send(&m).unwrap(),
                            2 => p.send_timeout(&m, t).unwrap(),
                            3 => p.try_send_pod(pod).unwrap(),
                            4 => p.send_pod_timeout(pod, t).unwrap(),
                            _ => {
                                let mut g = p.try_reserve(LEN).unwrap();
                                g.write_at(5, &m[5..]);
                                g.write_at(0, &m[..5]);
                                g.commit();
                            }
                        }
                    }
                    for i in 0..IN_FLIGHT {
                        let n = match (round as usize + i) % 9 {
                            0 => c.try_recv(&mut buf).unwrap(),
                            1 => c.recv_timeout(&mut buf, t).unwrap(),
                            2 => c.recv(&mut buf).unwrap(),
                            3 => c.try_recv_into(&mut fixed).unwrap(),
                            4 => std::mem::size_of_val(&c.try_recv_pod::<Pod>().unwrap()),
                            5 => std::mem::size_of_val(&c.recv_pod_timeout::<Pod>(t).unwrap()),
                            6 => c.try_read().unwrap().copy_to(&mut fixed),
                            7 => c.read_timeout(t).unwrap().to_vec().len(),
                            _ => {
                                let mut n = 0;
                                c.recv_batch(1, |m| n = m.len()).unwrap();
                                n
                            }
                        };
                        assert_eq!(n, LEN);
                    }
                }
            });
        }
    };
}

every_call_against_a_process!(spsc_every_call_against_a_scribbling_process, spsc, RingConfig::spsc(CAP));
every_call_against_a_process!(mpsc_every_call_against_a_scribbling_process, mpsc, RingConfig::mpsc(CAP, 2));
