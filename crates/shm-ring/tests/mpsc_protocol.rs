//! The MPSC protocol at its edges, each case a bug found on an earlier version: a consumer that
//! walked a whole lap without handing space back (exactly full rings of skipped records), a
//! producer with a stale position claiming inside a live record's payload, and a consumer killed
//! in the middle of its hand-back. Every call runs under a watchdog: a hang is a failure.

use std::sync::atomic::{AtomicI32, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use shm_core::Region;
use shm_ring::mpsc::{Consumer, HandBackStep, Producer};
use shm_ring::{RingConfig, TryRecvError, TrySendError};
use shm_testkit::{fork, pattern, Gate};

fn ring(capacity: u64, producers: u32) -> (Arc<Region>, Consumer) {
    let config = RingConfig::mpsc(capacity, producers);
    let region = Arc::new(Region::anonymous(config.region_len()).unwrap());
    let c = Consumer::create(region.clone(), &config).unwrap();
    (region, c)
}

/// Run `f` on its own thread; fail the test if it does not finish within `limit`.
fn within<T: Send + 'static>(limit: Duration, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit).unwrap_or_else(|_| panic!("{what} did not return within {limit:?}"))
}

const WATCHDOG: Duration = Duration::from_secs(20);

#[test]
fn ring_exactly_full_of_aborted_grants_is_walked_and_handed_back() {
    within(WATCHDOG, "try_recv over a ring of aborted grants", || {
        let (region, mut c) = ring(64, 1);
        let mut p = Producer::open(region).unwrap();
        for _ in 0..4 {
            drop(p.try_reserve(8).unwrap()); // 4 records of 16 bytes: exactly full
        }
        assert!(matches!(p.try_send(b"x"), Err(TrySendError::Full(_))));
        assert_eq!(c.try_recv(&mut Vec::new()), Err(TryRecvError::Empty));
        // The skipped lap was handed back: the producer has room again, every time.
        for round in 0..100u64 {
            p.try_send(round.to_le_bytes()).unwrap();
            assert_eq!(c.try_recv_pod::<u64>(), Ok(round));
            for _ in 0..4 {
                drop(p.try_reserve(8).unwrap());
            }
            assert_eq!(c.try_recv(&mut Vec::new()), Err(TryRecvError::Empty));
        }
    });
}

#[test]
fn a_message_is_never_delivered_twice_when_skips_fill_the_ring_exactly() {
    within(WATCHDOG, "the exact-full walk", || {
        let (region, mut c) = ring(128, 2);
        let mut p = Producer::open(region.clone()).unwrap();
        let mut q = Producer::open(region).unwrap();
        p.try_send(b"message0").unwrap();
        let held = q.try_reserve(8).unwrap();
        let mut buf = Vec::new();
        c.try_recv(&mut buf).unwrap();
        assert_eq!(buf, b"message0");
        drop(held);
        for _ in 0..6 {
            drop(p.try_reserve(8).unwrap());
        }
        assert!(matches!(p.try_send(b"x"), Err(TrySendError::Full(_))), "the ring is exactly full");
        assert_eq!(c.try_recv(&mut buf), Err(TryRecvError::Empty), "message0 must not come again");
        p.try_send(b"message1").unwrap();
        c.try_recv(&mut buf).unwrap();
        assert_eq!(buf, b"message1");
        assert_eq!(c.try_recv(&mut buf), Err(TryRecvError::Empty));
    });
}

/// A producer reads the tail (position 24), is descheduled, and meanwhile the ring laps so that
/// index 24 lies inside the zero-filled payload of a committed, unread message. When the stalled
/// producer resumes, its claim must fail (eight zero bytes are not a free word) and its message
/// go to the real tail; the zero-filled message must arrive intact.
#[test]
fn a_stale_producer_cannot_claim_inside_a_zero_filled_payload() {
    within(WATCHDOG, "the stale claim", || {
        let config = RingConfig::mpsc(256, 2).max_message(64);
        let region = Arc::new(Region::anonymous(config.region_len()).unwrap());
        let mut c = Consumer::create(region.clone(), &config).unwrap();
        let mut stale = Producer::open(region.clone()).unwrap();
        let mut other = Producer::open(region).unwrap();
        let mut buf = Vec::new();
        other.try_send([1u8; 16]).unwrap(); // tail = 24
        c.try_recv(&mut buf).unwrap();
        stale
            .try_send_stalled([0xABu8; 8], || {
                // The stalled producer holds position 24. The other one takes it and laps.
                other.try_send([2u8; 16]).unwrap(); // 24..48
                for _ in 0..6 {
                    other.try_send([3u8; 24]).unwrap(); // 48..240
                }
                // 240..256 is padding; the next message starts at index 0 of lap 1 and covers
                // index 24 with zero payload bytes.
                for _ in 0..7 {
                    c.try_recv(&mut buf).unwrap();
                }
                c.flush();
                other.try_send([0u8; 40]).unwrap();
            })
            .unwrap();
        c.try_recv(&mut buf).unwrap();
        assert_eq!(buf, [0u8; 40], "the zero-filled message arrives intact");
        c.try_recv(&mut buf).unwrap();
        assert_eq!(buf, [0xABu8; 8], "the stalled producer's message went to the real tail");
        assert_eq!(c.try_recv(&mut buf), Err(TryRecvError::Empty));
    });
}

static STOP_AT: AtomicU8 = AtomicU8::new(0);
static STOPPED_FD: AtomicI32 = AtomicI32::new(-1);

/// The hand-back hook of a consumer to be killed: at step `STOP_AT`, tell the parent and wait.
fn stop_here(step: HandBackStep) {
    if step as u8 == STOP_AT.load(Ordering::Relaxed) {
        Gate::open_fd(STOPPED_FD.load(Ordering::Relaxed));
        loop {
            nix::unistd::pause();
        }
    }
}

const STEPS: [HandBackStep; 6] = [
    HandBackStep::Start,
    HandBackStep::TailMoved,
    HandBackStep::IntentStored,
    HandBackStep::HalfFreed,
    HandBackStep::Freed,
    HandBackStep::HeadStored,
];

/// A consumer SIGKILLed at each step of its hand-back: the next consumer gets every message not
/// yet handed back (at least once), in order, then everything sent afterwards, and the producer
/// never stays full.
#[test]
fn a_consumer_killed_at_each_step_of_its_hand_back_loses_nothing() {
    for (i, &step) in STEPS.iter().enumerate() {
        for consumed_before_kill in [1u64, 5, 13] {
            // Large enough that no hand-back happens before the hooked one.
            let (region, first) = ring(1 << 16, 1);
            drop(first);
            let mut p = Producer::open(region.clone()).unwrap();
            let n = 40u64;
            for seq in 0..n {
                p.try_send(pattern::message(0, seq, 16, 40)).unwrap();
            }
            let gate = Gate::new();
            STOP_AT.store(step as u8, Ordering::Relaxed);
            STOPPED_FD.store(gate.write_fd(), Ordering::Relaxed);
            let child = {
                let region = region.clone();
                fork(move || {
                    let mut c = Consumer::open(region).unwrap();
                    let mut buf = Vec::new();
                    for _ in 0..consumed_before_kill {
                        c.try_recv(&mut buf).unwrap();
                    }
                    c.set_hand_back_hook(stop_here);
                    c.flush();
                    3 // the hook did not stop us: fail in the parent
                })
            };
            assert!(gate.wait(1, Duration::from_secs(20)), "step {step:?}: the consumer reached the hook");
            child.kill(Signal::SIGKILL);
            assert_eq!(child.wait(), shm_testkit::Exit::Signal(Signal::SIGKILL as i32));
            within(WATCHDOG, "the successor consumer", move || {
                let mut c = Consumer::open(region).unwrap();
                let mut buf = Vec::new();
                // Handed back before the kill (the intent was stored): not delivered again.
                let first = if i >= 2 { consumed_before_kill } else { 0 };
                for seq in first..n {
                    c.try_recv(&mut buf).unwrap_or_else(|e| panic!("step {step:?}: message {seq}: {e}"));
                    pattern::check(0, seq, 16, 40, &buf).unwrap();
                }
                assert_eq!(c.try_recv(&mut buf), Err(TryRecvError::Empty), "step {step:?}");
                // The ring keeps working for laps after.
                for seq in n..n + 5000 {
                    p.try_send(pattern::message(0, seq, 16, 40)).unwrap();
                    c.try_recv(&mut buf).unwrap();
                    pattern::check(0, seq, 16, 40, &buf).unwrap();
                }
            });
        }
    }
}

/// A forked child that drops its inherited copy of the parent's producer (as a child unwinding
/// through the frames that own it would) must not close the parent's end: the parent's claim is
/// not skipped, its slot not taken over, and nothing is lost or overwritten.
#[test]
fn a_forked_child_dropping_an_inherited_end_leaves_the_parents_end_open() {
    let (region, mut c) = ring(256, 2);
    let mut hold = Some(Producer::open(region.clone()).unwrap());
    let child = fork(|| {
        drop(hold.take());
        0
    });
    child.join();
    let mut p = hold.unwrap();
    let mut g = p.try_reserve(8).unwrap(); // a claim at position 0
    let mut buf = Vec::new();
    assert_eq!(c.try_recv(&mut buf), Err(TryRecvError::Empty), "the live parent's claim is waited for");
    let mut q = Producer::open(region).unwrap();
    assert_eq!(q.slot(), 1, "the parent's slot is still the parent's");
    let mut sent = 0u64;
    while q.try_send(sent.to_le_bytes()).is_ok() {
        sent += 1;
    }
    g.copy_from_slice(b"PARENT!!");
    g.commit();
    c.try_recv(&mut buf).unwrap();
    assert_eq!(buf, b"PARENT!!");
    for i in 0..sent {
        c.try_recv(&mut buf).unwrap();
        assert_eq!(buf, i.to_le_bytes());
    }
    assert_eq!(c.try_recv(&mut buf), Err(TryRecvError::Empty));

    // The same for a consumer: the child's copy neither hands space back nor closes.
    let (region, c) = ring(256, 1);
    let mut p = Producer::open(region).unwrap();
    p.try_send(b"kept").unwrap();
    let mut hold = Some(c);
    let child = fork(|| {
        drop(hold.take());
        0
    });
    child.join();
    let mut c = hold.unwrap();
    assert!(p.try_send(b"more").is_ok(), "the consumer is not closed for the producer");
    c.try_recv(&mut buf).unwrap();
    assert_eq!(buf, b"kept");
    c.try_recv(&mut buf).unwrap();
    assert_eq!(buf, b"more");
}

/// A producer that died holding a claim: the messages another producer committed behind it are
/// all received before `PeerDead`/`Disconnected` is reported, at the first call.
#[test]
fn messages_behind_a_dead_claim_come_before_the_error() {
    let (region, mut c) = ring(256, 2);
    let mut q = Producer::open(region.clone()).unwrap();
    let dead = {
        let region = region.clone();
        fork(move || {
            let mut d = Producer::open(region).unwrap();
            assert!(d.claim_without_advancing(8));
            std::mem::forget(d);
            0 // _exit: dies holding its claim, the tail not advanced
        })
    };
    dead.join();
    q.try_send(b"after").unwrap();
    drop(q);
    let mut buf = Vec::new();
    assert_eq!(c.try_recv(&mut buf), Ok(5), "the message behind the dead claim comes first");
    assert_eq!(buf, b"after");
    // Then the error, once the (rate-limited) liveness check has run; never another message.
    assert!(shm_testkit::wait_until(Duration::from_secs(20), || match c.try_recv(&mut buf) {
        Err(TryRecvError::PeerDead { .. } | TryRecvError::Disconnected) => true,
        Err(TryRecvError::Empty) => false,
        other => panic!("{other:?}"),
    }));
}

#[test]
fn recv_batch_of_zero_messages_consumes_nothing() {
    let (region, mut c) = ring(256, 1);
    let mut p = Producer::open(region).unwrap();
    p.try_send(b"one").unwrap();
    let mut calls = 0;
    assert_eq!(c.recv_batch(0, |_| calls += 1), Ok(0));
    assert_eq!(calls, 0);
    assert_eq!(c.try_recv_pod::<[u8; 3]>(), Ok(*b"one"));
}

/// A closed producer left thousands of skipped records and then one message: a timed receive
/// that runs out of time in the middle of the walk says `Timeout`, never `Disconnected`, and
/// the message comes next (found in review: it said `Disconnected` with the message waiting).
#[test]
fn a_timed_receive_out_of_time_mid_walk_is_a_timeout_not_disconnected() {
    let config = RingConfig::mpsc(1 << 20, 2);
    let region = Arc::new(Region::anonymous(config.region_len()).unwrap());
    let mut c = Consumer::create(region.clone(), &config).unwrap();
    let mut p = Producer::open(region).unwrap();
    let mut skips = 0;
    while p.len_bytes() + 64 < 1 << 20 {
        drop(p.try_reserve(0).unwrap());
        skips += 1;
    }
    // Far more than the steps of 4096 records a timed wait walks while it spins.
    assert!(skips > 100_000, "{skips} skipped records");
    p.try_send(b"last words").unwrap();
    drop(p);
    let mut buf = Vec::new();
    let mut timeouts = 0;
    loop {
        match c.recv_timeout(&mut buf, Duration::ZERO) {
            Err(shm_ring::RecvTimeoutError::Timeout) => timeouts += 1,
            Ok(_) => break,
            Err(e) => panic!("after {timeouts} timeouts: {e} with the message still in the ring"),
        }
        assert!(timeouts < 100, "the walk makes progress");
    }
    assert_eq!(buf, b"last words");
    assert_eq!(c.recv_timeout(&mut buf, Duration::ZERO), Err(shm_ring::RecvTimeoutError::Disconnected));
}
