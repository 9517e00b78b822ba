//! Broadcast across real processes: four subscriber processes each verifying every message of
//! a long stream (Block); a subscriber SIGKILLed while the producer is blocked on it; a
//! subscriber joining mid-stream; and Overwrite with a producer that never waits and slow
//! subscribers that count what they lost.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use shm_core::Region;
use shm_ring::broadcast::{Producer, Subscriber};
use shm_ring::{AttachOptions, Policy, RecvError, RingConfig};
use shm_testkit::{fork, pattern, Forked, Gate};

static HEAVY: Mutex<()> = Mutex::new(());
const MIN: usize = 16;
const MAX: usize = 200;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn ring(config: &RingConfig) -> Arc<Region> {
    let region = Region::anonymous(config.region_len()).unwrap();
    shm_ring::init(&region, config).unwrap();
    Arc::new(region)
}

/// A subscriber process: attach (with `options`), open `attached`, then receive until the
/// producer closes, checking that the messages are consecutive (from the first one, which is
/// `first` if given), each byte for byte, and that the last one is `last`. Block: no loss.
fn subscriber_process(
    region: &Arc<Region>,
    attached: &Gate,
    start: Option<&Gate>,
    options: AttachOptions,
    first: Option<u64>,
    last: u64,
) -> Forked {
    let region = region.clone();
    let attached_fd = attached.write_fd();
    fork(move || {
        if let Some(start) = start {
            assert!(start.wait(1, Duration::from_secs(60)), "the start signal came");
        }
        let mut s = Subscriber::open_with(region, &options).unwrap();
        Gate::open_fd(attached_fd);
        let mut expect = first;
        let mut buf = Vec::new();
        loop {
            match s.recv(&mut buf) {
                Ok(_) => {
                    let seq = u64::from_le_bytes(buf[..8].try_into().unwrap());
                    let want = *expect.get_or_insert(seq);
                    if seq != want {
                        panic!("message {seq} where {want} was due");
                    }
                    if let Err(e) = pattern::check(0, seq, MIN, MAX, &buf) {
                        panic!("{e}");
                    }
                    expect = Some(seq + 1);
                }
                Err(RecvError::Disconnected) => break,
                Err(e) => panic!("recv after {expect:?}: {e}"),
            }
        }
        assert_eq!(expect, Some(last + 1), "every message up to the last one");
        0
    })
}

fn send_all(p: &mut Producer, n: u64, sent: Option<&AtomicU64>) {
    let mut buf = [0u8; MAX];
    for seq in 0..n {
        let len = pattern::len(0, seq, MIN, MAX);
        pattern::fill(0, seq, &mut buf[..len]);
        p.send(&buf[..len]).unwrap();
        if let Some(sent) = sent {
            sent.store(seq + 1, Ordering::Release);
        }
    }
}

#[test]
fn four_subscriber_processes_each_receive_every_message_once_in_order() {
    let _heavy = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let n = env_u64("SHM_TEST_BROADCAST_MESSAGES", 10_000_000);
    let region = ring(&RingConfig::broadcast(1 << 16, 4).max_message(MAX as u64));
    let attached = Gate::new();
    let children: Vec<Forked> = (0..4)
        .map(|_| subscriber_process(&region, &attached, None, AttachOptions::new(), Some(0), n - 1))
        .collect();
    assert!(attached.wait(4, Duration::from_secs(30)), "all four subscribers attached");
    let mut p = Producer::open(region).unwrap();
    send_all(&mut p, n, None);
    drop(p);
    for child in children {
        child.join();
    }
}

/// The producer blocks on a subscriber that stopped reading; SIGKILLing that subscriber lets it
/// go on (measured, and bounded by a second), and the two others lose nothing.
#[test]
fn a_killed_subscriber_stops_holding_the_producer_back() {
    let _heavy = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let n = 20_000;
    let region = ring(&RingConfig::broadcast(4096, 4).max_message(MAX as u64));
    let attached = Gate::new();
    let readers: Vec<Forked> = (0..2)
        .map(|_| subscriber_process(&region, &attached, None, AttachOptions::new(), Some(0), n - 1))
        .collect();
    let stuck = {
        let region = region.clone();
        let attached_fd = attached.write_fd();
        fork(move || {
            let _s = Subscriber::open(region).unwrap();
            Gate::open_fd(attached_fd);
            loop {
                std::thread::sleep(Duration::from_secs(1)); // never reads
            }
        })
    };
    assert!(attached.wait(3, Duration::from_secs(30)), "three subscribers attached");
    let sent = Arc::new(AtomicU64::new(0));
    let killed_at: Arc<Mutex<Option<Instant>>> = Arc::default();
    let killer = {
        let (sent, killed_at) = (sent.clone(), killed_at.clone());
        std::thread::spawn(move || {
            // The producer is blocked once the sent count stops short of a ring's worth: the
            // stuck subscriber has read nothing, so no more than 4096 bytes of records fit.
            let mut last = u64::MAX;
            loop {
                std::thread::sleep(Duration::from_millis(100));
                let now = sent.load(Ordering::Acquire);
                if now == last {
                    break;
                }
                last = now;
            }
            assert!(last < 100, "blocked after {last} messages: at most a ring's worth");
            *killed_at.lock().unwrap() = Some(Instant::now());
            stuck.kill(Signal::SIGKILL);
            (stuck.wait(), last)
        })
    };
    let mut p = Producer::open(region).unwrap();
    let mut buf = [0u8; MAX];
    let mut resumed = None;
    for seq in 0..n {
        let len = pattern::len(0, seq, MIN, MAX);
        pattern::fill(0, seq, &mut buf[..len]);
        p.send(&buf[..len]).unwrap();
        if resumed.is_none() {
            if let Some(t) = *killed_at.lock().unwrap() {
                resumed = Some(t.elapsed());
            }
        }
        sent.store(seq + 1, Ordering::Release);
    }
    drop(p);
    let (exit, blocked_at) = killer.join().unwrap();
    assert_eq!(exit, shm_testkit::Exit::Signal(Signal::SIGKILL as i32));
    let resumed = resumed.expect("the producer went on after the kill");
    eprintln!("blocked after {blocked_at} messages; went on {resumed:?} after the SIGKILL");
    assert!(resumed < Duration::from_secs(1), "went on {resumed:?} after the kill");
    for r in readers {
        r.join();
    }
}

/// Subscribers that join while the stream runs get a whole, in-order suffix to the end: one at
/// the end of the stream, one with 100 messages of history.
#[test]
fn subscribers_joining_mid_stream_get_a_whole_suffix() {
    let _heavy = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let n = 200_000;
    let region = ring(&RingConfig::broadcast(1 << 14, 4).max_message(MAX as u64));
    let (attached, late_attached, go) = (Gate::new(), Gate::new(), Gate::new());
    let early = subscriber_process(&region, &attached, None, AttachOptions::new(), Some(0), n - 1);
    let late = subscriber_process(&region, &late_attached, Some(&go), AttachOptions::new(), None, n - 1);
    let history = subscriber_process(
        &region,
        &late_attached,
        Some(&go),
        AttachOptions::new().history(100),
        None,
        n - 1,
    );
    assert!(attached.wait(1, Duration::from_secs(30)));
    let mut p = Producer::open(region).unwrap();
    let mut buf = [0u8; MAX];
    for seq in 0..n {
        if seq == n / 2 {
            // The two late subscribers attach now, while we go on sending.
            go.open();
            go.open();
        }
        if seq == n / 2 + 50_000 {
            assert!(late_attached.wait(2, Duration::from_secs(30)), "the late subscribers attached");
        }
        let len = pattern::len(0, seq, MIN, MAX);
        pattern::fill(0, seq, &mut buf[..len]);
        p.send(&buf[..len]).unwrap();
    }
    drop(p);
    for child in [early, late, history] {
        child.join();
    }
}

/// Overwrite: the producer never waits; two slow subscribers (they pause now and then) check
/// every message they get byte for byte and count what they lost: received + lagged == sent.
#[test]
fn overwrite_subscribers_count_every_message_received_or_lost_and_never_see_a_torn_one() {
    let _heavy = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let n = env_u64("SHM_TEST_BROADCAST_MESSAGES", 10_000_000);
    let region = ring(&RingConfig::broadcast(1 << 14, 2).max_message(MAX as u64).policy(Policy::Overwrite));
    let attached = Gate::new();
    let children: Vec<Forked> = (0..2)
        .map(|id| {
            let region = region.clone();
            let attached_fd = attached.write_fd();
            fork(move || {
                let mut s = Subscriber::open(region).unwrap();
                Gate::open_fd(attached_fd);
                let (mut expect, mut received, mut lagged, mut lag_reports) = (0u64, 0u64, 0u64, 0u64);
                let mut buf = Vec::new();
                loop {
                    match s.recv(&mut buf) {
                        Ok(_) => {
                            let seq = u64::from_le_bytes(buf[..8].try_into().unwrap());
                            if seq != expect {
                                panic!("message {seq} where {expect} was due (lost without a report?)");
                            }
                            if let Err(e) = pattern::check(0, seq, MIN, MAX, &buf) {
                                panic!("{e}");
                            }
                            expect += 1;
                            received += 1;
                            if received % (20_000 + 5_000 * id) == 0 {
                                std::thread::sleep(Duration::from_micros(100)); // slow
                            }
                        }
                        Err(RecvError::Lagged { skipped }) => {
                            expect += skipped;
                            lagged += skipped;
                            lag_reports += 1;
                        }
                        Err(RecvError::Disconnected) => break,
                        Err(e) => panic!("recv at {expect}: {e}"),
                    }
                }
                eprintln!("subscriber {id}: received {received}, lost {lagged} in {lag_reports} reports");
                assert_eq!(received + lagged, n, "received + lost == sent");
                assert!(lagged > 0 && received > 0, "the test lapped the subscriber and it still read");
                0
            })
        })
        .collect();
    assert!(attached.wait(2, Duration::from_secs(30)), "both subscribers attached");
    let mut p = Producer::open(region).unwrap();
    let started = Instant::now();
    send_all(&mut p, n, None);
    let took = started.elapsed();
    drop(p);
    eprintln!("{n} messages sent in {took:?}, never waiting");
    for child in children {
        child.join();
    }
}
