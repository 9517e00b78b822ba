//! MPSC across real processes: four producer processes streaming at once, producers SIGKILLed at
//! random moments (including between claim and commit), and oversubscription on two cores.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use shm_core::Region;
use shm_ring::mpsc::{Consumer, Producer};
use shm_ring::{RecvTimeoutError, RingConfig};
use shm_testkit::{fork, pattern, Forked, Gate};

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

/// Producer `id` sends its messages `0..n` (stream id = producer id), blocking when full. It
/// opens `attached` once it holds its slot: a consumer that waits for every producer's gate
/// before it reads knows that `Disconnected` means they have all finished.
fn producer_process(region: &Arc<Region>, attached: &Gate, id: u64, n: u64) -> Forked {
    let region = region.clone();
    let attached_fd = attached.write_fd();
    fork(move || {
        let mut p = Producer::open(region).unwrap();
        Gate::open_fd(attached_fd);
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
    let attached = Gate::new();
    let children: Vec<Forked> = (0..4).map(|id| producer_process(&region, &attached, id, n)).collect();
    assert!(attached.wait(4, Duration::from_secs(30)), "all four producers attached");
    let mut next = [0u64; 4];
    let mut buf = Vec::new();
    while next.iter().sum::<u64>() < 4 * n {
        match c.recv(&mut buf) {
            Ok(_) => {
                let id = stream_of(&buf);
                assert!(id < 4, "message from unknown producer {id}");
                if let Err(e) = pattern::check(id, next[id as usize], 16, MAX, &buf) {
                    panic!("{e}");
                }
                next[id as usize] += 1;
            }
            Err(e) => panic!("recv after {next:?}: {e}"),
        }
    }
    for child in children {
        child.join();
    }
    assert_eq!(next, [n; 4], "every message of every producer, exactly once");
    assert_eq!(
        c.recv_timeout(&mut buf, Duration::from_secs(5)),
        Err(RecvTimeoutError::Disconnected),
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
        // Producers 0 and 1 survive; producer 2 is the victim. All three attach before the
        // consumer reads, so a `Disconnected` can only mean they are done.
        let attached = Gate::new();
        let survivors: Vec<Forked> = (0..2).map(|id| producer_process(&region, &attached, id, n)).collect();
        // 0: killed at a random point; 1: killed holding a half-written claim; 2: killed between
        // the claim and the tail advance (test hook).
        let mode = rng % 3;
        let mid_claim = mode != 0;
        let stop_after = (rng >> 8) % 500;
        let victim = {
            let region = region.clone();
            let attached_fd = attached.write_fd();
            fork(move || {
                let mut p = Producer::open(region).unwrap();
                Gate::open_fd(attached_fd);
                let mut buf = [0u8; MAX];
                for seq in 0.. {
                    let len = pattern::len(2, seq, 16, MAX);
                    if mid_claim && seq == stop_after {
                        if mode == 1 {
                            // Claim, write half the payload, and wait to be killed.
                            let mut g = p.reserve(len).unwrap();
                            pattern::fill(2, seq, &mut buf[..len / 2]);
                            g.write_at(0, &buf[..len / 2]);
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
        assert!(attached.wait(3, Duration::from_secs(30)), "trial {trial}: the producers attached");
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
                Err(RecvTimeoutError::Timeout) if !killed => {}
                Err(
                    RecvTimeoutError::Timeout
                    | RecvTimeoutError::Disconnected
                    | RecvTimeoutError::PeerDead { .. },
                ) if killed && next[0] == n && next[1] == n => break,
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::PeerDead { .. }) => {}
                // Every producer attached so far closed; another may not have started yet (on a
                // loaded machine a forked producer can wait longer than another takes to finish).
                Err(RecvTimeoutError::Disconnected) if !attached_so_far(&region, 3) => {
                    std::thread::yield_now()
                }
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
    let attached = Gate::new();
    let children: Vec<Forked> = (0..4).map(|id| producer_process(&region, &attached, id, n)).collect();
    assert!(attached.wait(4, Duration::from_secs(30)), "all four producers attached");
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
    assert_eq!(c.recv_timeout(&mut buf, Duration::from_millis(500)), Err(RecvTimeoutError::Timeout));
    let used = cpu() - before;
    eprintln!("blocked 500 ms on an empty ring, used {used:?} of CPU");
    assert!(used < Duration::from_millis(100), "an idle consumer burned {used:?} of CPU in 500 ms");
}

/// Shared progress of the consumer incarnations of `killed_consumers_lose_nothing`, in an
/// anonymous region of its own: per stream, the next sequence number not yet received by any
/// consumer; then the count of messages received, and a failure code.
struct Progress {
    region: Arc<Region>,
}

impl Progress {
    const STREAMS: usize = 3;

    fn new() -> Progress {
        Progress { region: Arc::new(Region::anonymous(4096).unwrap()) }
    }

    fn word(&self, i: usize) -> &std::sync::atomic::AtomicU64 {
        // SAFETY: the region is 4096 bytes, page-aligned, and i < 8; an AtomicU64 is valid for
        // any bytes and shared across fork as atomics.
        unsafe { &*(self.region.as_ptr().add(8 * i) as *const std::sync::atomic::AtomicU64) }
    }

    fn frontier(&self, stream: usize) -> &std::sync::atomic::AtomicU64 {
        self.word(stream)
    }

    fn received(&self) -> &std::sync::atomic::AtomicU64 {
        self.word(Self::STREAMS)
    }

    fn failure(&self) -> &std::sync::atomic::AtomicU64 {
        self.word(Self::STREAMS + 1)
    }
}

static CONSUMER_STOP_AT: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(u8::MAX);
static CONSUMER_STOPPED_FD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

fn stop_consumer_here(step: shm_ring::mpsc::HandBackStep) {
    use std::sync::atomic::Ordering::Relaxed;
    if step as u8 == CONSUMER_STOP_AT.load(Relaxed) {
        Gate::open_fd(CONSUMER_STOPPED_FD.load(Relaxed));
        loop {
            nix::unistd::pause();
        }
    }
}

/// One consumer incarnation: receive and verify until told otherwise (killed). Each stream's
/// messages must come in order without a gap, starting at or before the frontier (messages that
/// a killed predecessor received but had not handed back come again: at-least-once).
fn consumer_incarnation(region: Arc<Region>, progress: &Progress, n: u64) -> i32 {
    use std::sync::atomic::Ordering::SeqCst;
    let mut c = match Consumer::open(region) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("consumer attach: {e}");
            return 10;
        }
    };
    if CONSUMER_STOP_AT.load(SeqCst) != u8::MAX {
        c.set_hand_back_hook(stop_consumer_here);
    }
    let mut last: [Option<u64>; Progress::STREAMS] = [None; Progress::STREAMS];
    let mut buf = Vec::new();
    loop {
        if (0..Progress::STREAMS).all(|s| progress.frontier(s).load(SeqCst) == n) {
            return 0;
        }
        // Record each message while the guard holds it, before the ring may hand its space back:
        // a kill between the two then means "delivered again", never "lost".
        match c.read_timeout(Duration::from_millis(100)) {
            Ok(guard) => {
                buf.clear();
                buf.resize(guard.len(), 0);
                guard.copy_to(&mut buf);
                let id = stream_of(&buf) as usize;
                if id >= Progress::STREAMS {
                    progress.failure().store(1, SeqCst);
                    return 11;
                }
                let seq = u64::from_le_bytes(buf[..8].try_into().unwrap());
                let ok_order = match last[id] {
                    None => seq <= progress.frontier(id).load(SeqCst),
                    Some(prev) => seq == prev + 1,
                };
                if !ok_order || pattern::check(id as u64, seq, 16, MAX, &buf).is_err() {
                    eprintln!(
                        "stream {id}: got seq {seq} after {:?}, frontier {}",
                        last[id],
                        progress.frontier(id).load(SeqCst)
                    );
                    progress.failure().store(2, SeqCst);
                    return 12;
                }
                last[id] = Some(seq);
                if seq == progress.frontier(id).load(SeqCst) {
                    progress.frontier(id).store(seq + 1, SeqCst);
                }
                progress.received().fetch_add(1, SeqCst);
                drop(guard);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(e) => {
                eprintln!("consumer recv: {e}");
                progress.failure().store(3, SeqCst);
                return 13;
            }
        }
    }
}

/// A producer for `killed_consumers_lose_nothing`: sends `0..n`, and when the consumer is dead
/// or closed, waits for the next one and sends the same message again.
fn patient_producer(region: &Arc<Region>, attached: &Gate, id: u64, n: u64) -> Forked {
    let region = region.clone();
    let attached_fd = attached.write_fd();
    fork(move || {
        let mut p = Producer::open(region).unwrap();
        Gate::open_fd(attached_fd);
        let mut buf = [0u8; MAX];
        for seq in 0..n {
            let len = pattern::len(id, seq, 16, MAX);
            pattern::fill(id, seq, &mut buf[..len]);
            loop {
                match p.send_timeout(&buf[..len], Duration::from_secs(30)) {
                    Ok(()) => break,
                    Err(
                        shm_ring::SendTimeoutError::PeerDead { .. }
                        | shm_ring::SendTimeoutError::Disconnected(_),
                    ) => {
                        std::thread::sleep(Duration::from_millis(1)) // between consumers
                    }
                    Err(e) => panic!("producer {id} message {seq}: {e}"),
                }
            }
        }
        0
    })
}

/// The MPSC consumer SIGKILLed at random moments, a third of the time at a chosen step of its
/// hand-back, and a new one started each time, while three producers keep sending: every
/// message arrives, each stream in order (at-least-once for what a killed consumer had not
/// handed back), and nothing hangs.
#[test]
fn killed_consumers_lose_nothing() {
    use std::sync::atomic::Ordering::SeqCst;
    let _heavy = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let trials = env_u64("SHM_TEST_KILL_TRIALS", 200);
    let n = env_u64("SHM_TEST_MPSC_MESSAGES", 2_000_000) / 4;
    let region = mpsc_ring(4096, 3);
    let progress = Progress::new();
    let attached = Gate::new();
    let producers: Vec<Forked> = (0..3).map(|id| patient_producer(&region, &attached, id, n)).collect();
    assert!(attached.wait(3, Duration::from_secs(30)), "the producers attached");
    let mut rng = 0xc0ffee_u64;
    let mut at_hook = 0;
    for trial in 0..trials {
        rng = pattern::mix(rng);
        let stopped = Gate::new();
        let hook_step = (rng % 3 == 0).then_some((rng >> 8) % 6);
        CONSUMER_STOP_AT.store(hook_step.map_or(u8::MAX, |s| s as u8), SeqCst);
        CONSUMER_STOPPED_FD.store(stopped.write_fd(), SeqCst);
        let start = progress.received().load(SeqCst);
        let target = start + (rng >> 16) % 400;
        let child = {
            let region = region.clone();
            let progress = Progress { region: progress.region.clone() };
            fork(move || consumer_incarnation(region, &progress, n))
        };
        let reached = match hook_step {
            Some(_) => stopped.wait(1, Duration::from_secs(30)),
            None => shm_testkit::wait_until(Duration::from_secs(30), || {
                progress.received().load(SeqCst) >= target || progress.failure().load(SeqCst) != 0
            }),
        };
        assert_eq!(
            progress.failure().load(SeqCst),
            0,
            "trial {trial}: the consumer found a gap or a bad message"
        );
        assert!(reached, "trial {trial}: the consumer made no progress (hook {hook_step:?})");
        child.kill(Signal::SIGKILL);
        match child.wait() {
            shm_testkit::Exit::Signal(_) => {}
            other => panic!("trial {trial}: the consumer ended with {other:?}"),
        }
        at_hook += hook_step.is_some() as u32;
    }
    // The last consumer reads everything that is left.
    CONSUMER_STOP_AT.store(u8::MAX, SeqCst);
    assert_eq!(consumer_incarnation(region.clone(), &progress, n), 0, "the final consumer");
    for p in producers {
        p.join();
    }
    for s in 0..Progress::STREAMS {
        assert_eq!(progress.frontier(s).load(SeqCst), n, "stream {s}: every message");
    }
    assert!(at_hook >= trials as u32 / 5, "too few kills inside the hand-back: {at_hook}");
}
