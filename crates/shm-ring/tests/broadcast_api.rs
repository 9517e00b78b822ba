//! The broadcast API in one process: every subscriber gets every message, joining and
//! history, Block holding the producer at the slowest subscriber, closing releasing it,
//! Overwrite's `Lagged` counts, guards, batches and attach errors.

use std::sync::Arc;
use std::time::Duration;

use shm_core::Region;
use shm_ring::broadcast::{Producer, Subscriber};
use shm_ring::{
    AttachError, AttachOptions, InitError, Policy, RecvTimeoutError, RingConfig, TryRecvError, TrySendError,
};
use shm_testkit::pattern;

fn ring(config: &RingConfig) -> (Arc<Region>, Producer) {
    let region = Arc::new(Region::anonymous(config.region_len()).unwrap());
    let p = Producer::create(region.clone(), config).unwrap();
    (region, p)
}

fn init_err(config: &RingConfig) -> InitError {
    let region = Region::anonymous(config.region_len().max(1 << 16)).unwrap();
    Producer::create(region, config).unwrap_err()
}

#[test]
fn every_subscriber_receives_every_message_in_order_across_many_wraps() {
    let (region, mut p) = ring(&RingConfig::broadcast(1024, 3));
    let mut subs: Vec<Subscriber> = (0..3).map(|_| Subscriber::open(region.clone()).unwrap()).collect();
    assert_eq!(subs.iter().map(|s| s.slot()).collect::<Vec<_>>(), vec![0, 1, 2]);
    let mut buf = Vec::new();
    for seq in 0..20_000u64 {
        p.try_send(pattern::message(0, seq, 0, 300)).unwrap();
        for s in &mut subs {
            s.try_recv(&mut buf).unwrap();
            pattern::check(0, seq, 0, 300, &buf).unwrap();
        }
    }
    for s in &mut subs {
        assert_eq!(s.try_recv(&mut buf), Err(TryRecvError::Empty));
        assert_eq!(s.next_seq(), 20_000);
    }
    assert_eq!(p.sent(), 20_000);
}

#[test]
fn block_holds_the_producer_at_the_slowest_subscriber_until_it_reads_or_closes() {
    let (region, mut p) = ring(&RingConfig::broadcast(1024, 2));
    let mut fast = Subscriber::open(region.clone()).unwrap();
    let slow = Subscriber::open(region.clone()).unwrap();
    let mut buf = Vec::new();
    let mut sent = 0u64;
    while p.try_send(pattern::message(0, sent, 40, 40)).is_ok() {
        fast.try_recv(&mut buf).unwrap();
        pattern::check(0, sent, 40, 40, &buf).unwrap();
        sent += 1;
        assert!(sent < 1000, "the slow subscriber never read: the producer must stop");
    }
    // 56-byte records and the 8-byte terminator in 1024 bytes.
    assert_eq!(sent, 18, "a ring's worth of records, then Full");
    assert!(matches!(p.try_send(b"x"), Err(TrySendError::Full(_))));
    assert!(matches!(
        p.send_timeout(b"x", Duration::from_millis(20)),
        Err(shm_ring::SendTimeoutError::Timeout(_))
    ));
    // The slow one closes: the producer goes on with the fast one alone.
    drop(slow);
    for seq in sent..sent + 100 {
        p.try_send(pattern::message(0, seq, 40, 40)).unwrap();
        fast.try_recv(&mut buf).unwrap();
        pattern::check(0, seq, 40, 40, &buf).unwrap();
    }
}

#[test]
fn a_blocked_producer_is_woken_when_the_slowest_subscriber_reads() {
    let (region, mut p) = ring(&RingConfig::broadcast(1024, 1));
    let mut s = Subscriber::open(region).unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        for seq in 0..5_000u64 {
            s.recv(&mut buf).unwrap();
            pattern::check(0, seq, 0, 200, &buf).unwrap();
        }
        s
    });
    for seq in 0..5_000u64 {
        p.send(pattern::message(0, seq, 0, 200)).unwrap();
    }
    let mut s = reader.join().unwrap();
    assert_eq!(s.try_recv(&mut Vec::new()), Err(TryRecvError::Empty));
}

#[test]
fn a_subscriber_joins_at_the_end_or_with_history_and_gets_a_whole_in_order_suffix() {
    let (region, mut p) = ring(&RingConfig::broadcast(4096, 4));
    for seq in 0..10u64 {
        p.try_send(pattern::message(0, seq, 8, 100)).unwrap();
    }
    let mut buf = Vec::new();
    let mut late = Subscriber::open(region.clone()).unwrap();
    assert_eq!(late.try_recv(&mut buf), Err(TryRecvError::Empty), "joins at the end");
    assert_eq!(late.next_seq(), 10);
    let mut back3 = Subscriber::open_with(region.clone(), &AttachOptions::new().history(3)).unwrap();
    let mut all = Subscriber::open_with(region.clone(), &AttachOptions::new().history(1000)).unwrap();
    assert_eq!(back3.next_seq(), 7);
    assert_eq!(all.next_seq(), 0, "every message is still in the ring");
    for seq in 7..10 {
        back3.try_recv(&mut buf).unwrap();
        pattern::check(0, seq, 8, 100, &buf).unwrap();
    }
    for seq in 0..10 {
        all.try_recv(&mut buf).unwrap();
        pattern::check(0, seq, 8, 100, &buf).unwrap();
    }
    for seq in 10..200u64 {
        p.try_send(pattern::message(0, seq, 8, 100)).unwrap();
        for s in [&mut late, &mut back3, &mut all] {
            s.try_recv(&mut buf).unwrap();
            pattern::check(0, seq, 8, 100, &buf).unwrap();
        }
    }
    // With the ring wrapped many times, history gives what is still whole, in order.
    let mut h = Subscriber::open_with(region, &AttachOptions::new().history(1_000_000)).unwrap();
    let first = h.next_seq();
    assert!(first > 10 && first < 200, "starts at the oldest message kept ({first})");
    for seq in first..200 {
        h.try_recv(&mut buf).unwrap();
        pattern::check(0, seq, 8, 100, &buf).unwrap();
    }
    assert_eq!(h.try_recv(&mut buf), Err(TryRecvError::Empty));
}

#[test]
fn with_no_subscriber_the_producer_never_blocks() {
    let (region, mut p) = ring(&RingConfig::broadcast(512, 2));
    for seq in 0..1_000u64 {
        p.try_send(pattern::message(0, seq, 0, 100)).unwrap();
    }
    let mut s = Subscriber::open_with(region, &AttachOptions::new().history(2)).unwrap();
    let mut buf = Vec::new();
    for seq in 998..1000 {
        s.try_recv(&mut buf).unwrap();
        pattern::check(0, seq, 0, 100, &buf).unwrap();
    }
}

#[test]
fn overwrite_reports_what_a_lapped_subscriber_lost_and_goes_on_from_the_oldest() {
    let config = RingConfig::broadcast(1024, 2).policy(Policy::Overwrite);
    let (region, mut p) = ring(&config);
    let mut s = Subscriber::open(region.clone()).unwrap();
    let mut buf = Vec::new();
    for seq in 0..100u64 {
        p.try_send(pattern::message(0, seq, 24, 24)).unwrap();
    }
    let skipped = match s.try_recv(&mut buf) {
        Err(TryRecvError::Lagged { skipped }) => skipped,
        other => panic!("expected Lagged, got {other:?}"),
    };
    let mut received = 0;
    let mut expect = skipped;
    loop {
        match s.try_recv(&mut buf) {
            Ok(_) => {
                pattern::check(0, expect, 24, 24, &buf).unwrap();
                expect += 1;
                received += 1;
            }
            Err(TryRecvError::Empty) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(skipped + received, 100, "lost + received = sent");
    assert!(received > 0 && skipped > 0);
    // A guard hands out the checked copy.
    p.try_send(b"guarded").unwrap();
    let g = s.try_read().unwrap();
    assert_eq!(g.to_vec(), b"guarded");
    // SAFETY: on an Overwrite ring the guard lends the subscriber's private copy.
    assert_eq!(unsafe { g.as_slice_unchecked() }, b"guarded");
    drop(g);
    assert_eq!(s.try_recv(&mut buf), Err(TryRecvError::Empty));
}

#[test]
fn recv_batch_hands_every_waiting_message_once() {
    for policy in [Policy::Block, Policy::Overwrite] {
        let (region, mut p) = ring(&RingConfig::broadcast(4096, 1).policy(policy));
        let mut s = Subscriber::open(region).unwrap();
        for seq in 0..20u64 {
            p.try_send(pattern::message(1, seq, 0, 64)).unwrap();
        }
        let mut seq = 0;
        let n = s
            .recv_batch(100, |m| {
                pattern::check(1, seq, 0, 64, m).unwrap();
                seq += 1;
            })
            .unwrap();
        assert_eq!((n, seq), (20, 20), "{policy}");
        assert_eq!(s.try_recv(&mut Vec::new()), Err(TryRecvError::Empty));
    }
}

#[test]
fn closing_the_producer_disconnects_subscribers_after_they_drain() {
    let (region, mut p) = ring(&RingConfig::broadcast(1024, 2));
    let mut s = Subscriber::open(region).unwrap();
    p.try_send(b"last").unwrap();
    drop(p);
    let mut buf = Vec::new();
    s.try_recv(&mut buf).unwrap();
    assert_eq!(buf, b"last");
    assert_eq!(s.try_recv(&mut buf), Err(TryRecvError::Disconnected));
    assert_eq!(s.recv_timeout(&mut buf, Duration::from_millis(10)), Err(RecvTimeoutError::Disconnected));
}

#[test]
fn attach_errors_name_what_is_wrong() {
    let (region, _p) = ring(&RingConfig::broadcast(1024, 2));
    let _a = Subscriber::open(region.clone()).unwrap();
    let _b = Subscriber::open(region.clone()).unwrap();
    match Subscriber::open(region.clone()) {
        Err(AttachError::NoFreeSubscriberSlot { slots: 2 }) => {}
        other => panic!("{other:?}"),
    }
    assert!(matches!(Producer::open(region.clone()), Err(AttachError::AlreadyAttached { .. })));
    assert!(matches!(shm_ring::spsc::Consumer::open(region), Err(AttachError::WrongKind { .. })));

    let e = init_err(&RingConfig::broadcast(1024, 0));
    assert!(matches!(e, InitError::BadSubscribers { found: 0, limit: 255 }), "{e}");
    let e = init_err(&RingConfig::broadcast(1024, 256));
    assert!(matches!(e, InitError::BadSubscribers { found: 256, limit: 255 }), "{e}");
    let config = RingConfig::spsc(1024).policy(Policy::Overwrite);
    let e = shm_ring::spsc::Producer::create(Region::anonymous(1 << 16).unwrap(), &config).unwrap_err();
    assert!(matches!(e, InitError::PolicyNotSupported { .. }), "{e}");
    assert!(e.to_string().contains("SPSC") && e.to_string().contains("overwrite"), "{e}");
    let too_big = init_err(&RingConfig::broadcast(1024, 1).max_message(1024));
    assert!(matches!(too_big, InitError::BadMaxMessage { limit: 488, .. }), "{too_big}");
}

fn heap(config: &RingConfig) -> shm_ring::heap::HeapRing {
    shm_ring::heap::HeapRing::new(config).unwrap()
}

fn record_word(kind: u64, len: u64, lap: u64) -> u64 {
    len | kind << 56 | (lap & 0xFF_FFFF) << 32
}

/// A reservation left far beyond the oldest record (a hostile peer, before a producer attaches)
/// would make every Overwrite subscriber think itself overtaken for good: the producer refuses
/// to attach and names it.
#[test]
fn a_producer_refuses_a_reservation_beyond_a_lap_at_attach() {
    use std::sync::atomic::Ordering::Relaxed;
    let ring = heap(&RingConfig::broadcast(1024, 2).policy(Policy::Overwrite));
    shm_ring::Memory::header(&**ring.memory()).reserved.store(u64::MAX, Relaxed);
    match ring.producer::<shm_ring::Broadcast>() {
        Err(AttachError::Corrupt(e)) => {
            assert_eq!((e.what, e.found), ("reservation end", u64::MAX), "{e}");
            assert!(e.to_string().contains("at most a capacity past the oldest record"), "{e}");
        }
        other => panic!("{other:?}"),
    }
}

/// Records chained over two laps from the stored tail: a successor producer does not take
/// them all as published (the end is never more than a lap past the oldest record).
#[test]
fn a_producer_refuses_records_of_more_than_a_lap_at_attach() {
    use std::sync::atomic::Ordering::Relaxed;
    let ring = heap(&RingConfig::broadcast(1024, 1));
    let mut p = ring.producer::<shm_ring::Broadcast>().unwrap();
    for _ in 0..32 {
        p.try_send([]).unwrap(); // 16-byte records
    }
    drop(p);
    let rec = |idx: usize, w: u64| shm_ring::Memory::record(&**ring.memory(), idx).store(w, Relaxed);
    // Lap 0 from 512: a 488-byte message, then padding; lap 1: two more and padding.
    rec(512, record_word(1, 488, 0));
    rec(1016, record_word(2, 0, 0));
    rec(0, record_word(1, 488, 1));
    rec(504, record_word(1, 488, 1));
    rec(1008, record_word(2, 8, 1));
    match ring.producer::<shm_ring::Broadcast>() {
        Err(AttachError::Corrupt(e)) => assert_eq!(e.what, "record word", "{e}"),
        other => panic!("{other:?}"),
    }
}

/// A message count at its limit in the header: the producer's sequence numbers wrap instead of
/// overflowing (a count bounds nothing).
#[test]
fn a_hostile_message_count_does_not_make_the_producer_panic() {
    use std::sync::atomic::Ordering::Relaxed;
    let ring = heap(&RingConfig::broadcast(1024, 1));
    shm_ring::Memory::header(&**ring.memory()).next_seq.store(u64::MAX, Relaxed);
    let mut p = ring.producer::<shm_ring::Broadcast>().unwrap();
    let mut s = ring.consumer::<shm_ring::Broadcast>().unwrap();
    for i in 0..3u8 {
        p.try_send([i]).unwrap();
        let mut buf = Vec::new();
        s.try_recv(&mut buf).unwrap();
        assert_eq!(buf, [i]);
    }
    assert_eq!(p.sent(), 2, "u64::MAX, then 0, 1: wrapped");
}

/// Batches across the wrap, both policies: as many as fit go with one store, in order, and a
/// Block producer's batch stops at the slowest subscriber.
#[test]
fn send_batch_publishes_what_fits_in_order() {
    for policy in [Policy::Block, Policy::Overwrite] {
        let (region, mut p) = ring(&RingConfig::broadcast(1024, 1).policy(policy));
        let mut s = Subscriber::open(region).unwrap();
        let mut next_out = 0u64;
        let mut next_in = 0u64;
        let mut buf = Vec::new();
        while next_in < 5_000 {
            let mut msgs = (next_out..next_out + 20).map(|seq| pattern::message(2, seq, 0, 60)).peekable();
            match p.send_batch(&mut msgs) {
                Ok(n) => next_out += n as u64,
                Err(TrySendError::Full(())) => assert_eq!(policy, Policy::Block, "Overwrite never waits"),
                Err(e) => panic!("{e}"),
            }
            loop {
                match s.try_recv(&mut buf) {
                    Ok(_) => {
                        pattern::check(2, next_in, 0, 60, &buf).unwrap();
                        next_in += 1;
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Lagged { skipped }) => next_in += skipped,
                    Err(e) => panic!("{e}"),
                }
            }
            assert_eq!(next_in, next_out, "{policy}: everything sent was read or reported lost");
        }
    }
}
