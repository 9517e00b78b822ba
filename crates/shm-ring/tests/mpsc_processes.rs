//! MPSC across real processes: four producer processes streaming at once, producers SIGKILLed at
//! random moments (including between claim and commit), and oversubscription on two cores.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use shm_core::Region;
use shm_ring::mpsc::{Consumer, Producer};
use shm_ring::{RecvError, RingConfig};
use shm_testkit::{fork, pattern, Forked};

static HEAVY: Mutex<()> = Mutex::new(());
const MAX: usize = 200;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn mpsc_ring(capacity: u64, producers: u32) -> Arc<Region> {
    let config = RingConfig::mpsc(capacity, producers).max_message(MAX as u64);
    let region = Region::anonymous(config.region_len()).unwrap();
    shm_ring::init(&region, &config).unwrap();
    Arc::new(region)
}

/// Producer `id` sends its messages `0..n` (stream id = producer id), blocking when full.
fn producer_process(region: &Arc<Region>, id: u64, n: u64) -> Forked {
    let region = region.clone();
    fork(move || {
        let mut p = Producer::open(region).unwrap();
        let mut buf = [0u8; MAX];
        for seq in 0..n {
            let len = pattern::len(id, seq, 16, MAX);
            pattern::fill(id, seq, &mut buf[..len]);
            p.send(&buf[..len]).unwrap();
        }
        0
    })
}

/// Whether `n` producers have attached to this (fresh) ring so far: a closed slot may be
/// taken again, so count attaches (slot generations), not slots.
fn attached_so_far(region: &Region, n: u32) -> bool {
    shm_ring::status(region).unwrap().producers.iter().map(|p| p.generation).sum::<u32>() >= n
}

/// The producer a message came from: bytes 8..16 of a pattern message of 16 bytes or more.
fn stream_of(msg: &[u8]) -> u64 {
    u64::from_le_bytes(msg[8..16].try_into().unwrap())
}

#[test]
fn four_producer_processes_every_message_once_in_order_per_producer() {
    let _heavy = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let n = env_u64("SHM_TEST_MPSC_MESSAGES", 2_000_000);
    let region = mpsc_ring(1 << 16, 4);
    let mut c = Consumer::open(region.clone()).unwrap();
    let children: Vec<Forked> = (0..4).map(|id| producer_process(&region, id, n)).collect();
    let mut next = [0u64; 4];
    let mut buf = Vec::new();
    while next.iter().sum::<u64>() < 4 * n {
        match c.recv_blocking(&mut buf) {
            Ok(_) => {
                let id = stream_of(&buf);
                assert!(id < 4, "message from unknown producer {id}");
                if let Err(e) = pattern::check(id, next[id as usize], 16, MAX, &buf) {
                    panic!("{e}");
                }
                next[id as usize] += 1;
            }
            // Every producer attached so far closed; one may still be starting.
            Err(RecvError::Disconnected) => std::thread::yield_now(),
            Err(e) => panic!("recv: {e}"),
        }
    }
    for child in children {
        child.join();
    }
    assert_eq!(next, [n; 4], "every message of every producer, exactly once");
    assert_eq!(
        c.recv_timeout(&mut buf, Duration::from_secs(5)),
        Err(RecvError::Disconnected),
        "no extra message"
    );
}

/// Several producers send; one is SIGKILLed at a random moment, sometimes while holding a claim
/// it has half written. The consumer never hangs, receives every message the others sent, and
/// never a partial record of the dead one.
#[test]
fn killed_producers_cost_nobody_else_a_message() {
    let _heavy = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let trials = env_u64("SHM_TEST_KILL_TRIALS", 200);
    let mut rng = 0x5eed_u64;
    let mut killed_mid_claim = 0;
    for trial in 0..trials {
        rng = pattern::mix(rng);
        let region = mpsc_ring(4096, 4);
        let mut c = Consumer::open(region.clone()).unwrap();
        let n = 3000;
        // Producers 0 and 1 survive; producer 2 is the victim.
        let survivors: Vec<Forked> = (0..2).map(|id| producer_process(&region, id, n)).collect();
        // 0: killed at a random point; 1: killed holding a half-written claim; 2: killed between
        // the claim and the tail advance (test hook).
        let mode = rng % 3;
        let mid_claim = mode != 0;
        let stop_after = (rng >> 8) % 500;
        let victim = {
            let region = region.clone();
            fork(move || {
                let mut p = Producer::open(region).unwrap();
                let mut buf = [0u8; MAX];
                for seq in 0.. {
                    let len = pattern::len(2, seq, 16, MAX);
                    if mid_claim && seq == stop_after {
                        if mode == 1 {
                            // Claim, write half the payload, and wait to be killed.
                            let mut g = p.reserve_timeout(len, None).unwrap();
                            pattern::fill(2, seq, &mut g[..len / 2]);
                            std::mem::forget(g);
                        } else {
                            while !p.claim_without_advancing(len) {}
                        }
                        loop {
                            nix::unistd::pause();
                        }
                    }
                    pattern::fill(2, seq, &mut buf[..len]);
                    p.send(&buf[..len]).unwrap();
                }
                0
            })
        };
        let mut next = [0u64; 3];
        let mut buf = Vec::new();
        let mut killed = false;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if Instant::now() > deadline {
                let word = |off: usize| {
                    let mut b = [0u8; 8];
                    region.read_at(off, &mut b).unwrap();
                    u64::from_le_bytes(b)
                };
                let (tail, head) = (word(128), word(256));
                panic!(
                    "trial {trial}: consumer hung: next {next:?} killed {killed} mid_claim {mid_claim} head {head} \
                     tail {tail} word at head {:#x} slots {:#x} {:#x} {:#x} gens {} {} {}",
                    word(896 + (head as usize & 4095)),
                    word(768),
                    word(784),
                    word(800),
                    word(776) as u32,
                    word(792) as u32,
                    word(808) as u32
                );
            }
            // Kill the victim at a random point of the stream, or, when it holds a half-written
            // claim, once everything it sent before that claim has arrived.
            let due = if mid_claim { next[2] >= stop_after } else { next[0] + next[1] >= rng % (2 * n) };
            if !killed && due {
                victim.kill(Signal::SIGKILL);
                killed = true;
            }
            match c.recv_timeout(&mut buf, Duration::from_millis(200)) {
                Ok(_) => {
                    let id = stream_of(&buf);
                    assert!(id < 3, "trial {trial}: unknown producer {id}");
                    if let Err(e) = pattern::check(id, next[id as usize], 16, MAX, &buf) {
                        panic!("trial {trial}: {e}");
                    }
                    next[id as usize] += 1;
                }
                Err(RecvError::Timeout) if !killed => {}
                Err(RecvError::Timeout | RecvError::Disconnected | RecvError::PeerDead { .. })
                    if killed && next[0] == n && next[1] == n =>
                {
                    break
                }
                Err(RecvError::Timeout | RecvError::PeerDead { .. }) => {}
                // Every producer attached so far closed; another may not have started yet (on a
                // loaded machine a forked producer can wait longer than another takes to finish).
                Err(RecvError::Disconnected) if !attached_so_far(&region, 3) => std::thread::yield_now(),
                Err(e) => panic!("trial {trial}: {e}"),
            }
        }
        assert_eq!(victim.wait(), shm_testkit::Exit::Signal(Signal::SIGKILL as i32));
        for s in survivors {
            s.join();
        }
        if mid_claim {
            killed_mid_claim += 1;
        }
    }
    assert!(killed_mid_claim >= trials / 2, "too few kills between claim and commit: {killed_mid_claim}");
}

/// Four blocking producers and a blocking consumer on two cores: they finish (no livelock), and
/// the consumer, blocked on an empty ring afterwards, burns no CPU.
#[test]
fn oversubscribed_blocking_finishes_and_idles_quietly() {
    let _heavy = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let n = env_u64("SHM_TEST_MPSC_MESSAGES", 2_000_000) / 10;
    let region = mpsc_ring(1 << 12, 5);
    let mut c = Consumer::open(region.clone()).unwrap();
    let children: Vec<Forked> = (0..4).map(|id| producer_process(&region, id, n)).collect();
    let _idle = Producer::open(region.clone()).unwrap(); // keeps the ring "connected" afterwards
    let mut count = 0;
    let mut buf = Vec::new();
    while count < 4 * n {
        c.recv_timeout(&mut buf, Duration::from_secs(30)).expect("no livelock");
        count += 1;
    }
    for child in children {
        child.join();
    }
    // Idle: blocked 500 ms on an empty ring; CPU time of this thread barely moves.
    let cpu = || {
        let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID).unwrap();
        Duration::new(ts.tv_sec() as u64, ts.tv_nsec() as u32)
    };
    let before = cpu();
    assert_eq!(c.recv_timeout(&mut buf, Duration::from_millis(500)), Err(RecvError::Timeout));
    let used = cpu() - before;
    eprintln!("blocked 500 ms on an empty ring, used {used:?} of CPU");
    assert!(used < Duration::from_millis(100), "an idle consumer burned {used:?} of CPU in 500 ms");
}
