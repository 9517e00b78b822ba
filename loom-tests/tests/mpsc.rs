//! The MPSC protocol under loom: two producer threads and a consumer on a ring of a few
//! records, across the wrap with padding, with commits out of claim order, and sleeping.
#![cfg(loom)]

use loom::thread;
use shm_ring::model::mpsc_ring as model;
use shm_ring::mpsc::Consumer;
use shm_ring::{RingConfig, TryRecvError};

/// 64 data bytes, messages up to 24 bytes: records of 16-32 bytes, so claims wrap and pad.
fn config() -> RingConfig {
    RingConfig::mpsc(64, 2).max_message(24)
}

/// Message `i` of producer `p`: its first byte names the producer, the second the index.
fn msg(p: u8, i: u8) -> Vec<u8> {
    let mut m = vec![p; 8 + ((p as usize + i as usize * 7) % 17)];
    m[1] = i;
    m
}

fn recv_spin(c: &mut Consumer) -> Vec<u8> {
    loom_tests::spin::recv(c, false)
}

/// Every message of each producer arrives once, whole, in that producer's order.
fn check_per_producer(got: &[Vec<u8>], per: u8) {
    for p in 0..2u8 {
        let mine: Vec<&Vec<u8>> = got.iter().filter(|m| m[0] == p).collect();
        assert_eq!(mine.len(), per as usize);
        for (i, m) in mine.iter().enumerate() {
            assert_eq!(**m, msg(p, i as u8));
        }
    }
}

/// The ring is first moved so its tail sits 16 bytes before the end; then two producers race to
/// claim. Whoever comes first needs a padding record and wraps to index 0; the other lands after
/// it. Both messages arrive, whole.
#[test]
fn two_producers_across_the_wrap() {
    let mut builder = loom::model::Builder::new();
    builder.max_branches = 10_000;
    builder.check(|| {
        let (mut ps, mut c) = model(&config(), 2);
        for _ in 0..3 {
            ps[0].try_send([9u8; 8]).unwrap(); // 16-byte records: tail and head at 48
            assert_eq!(recv_spin(&mut c), [9u8; 8]);
        }
        let mut p1 = ps.pop().unwrap();
        let mut p0 = ps.pop().unwrap();
        let a = thread::spawn(move || p0.try_send([0u8; 24]).unwrap()); // a 32-byte record
        let b = thread::spawn(move || p1.try_send([1u8; 8]).unwrap()); // a 16-byte record
        let mut got = vec![recv_spin(&mut c), recv_spin(&mut c)];
        got.sort();
        assert_eq!(got, vec![vec![0u8; 24], vec![1u8; 8]]);
        a.join().unwrap();
        b.join().unwrap();
    });
}

/// Producer 0 claims first and commits last; the consumer must wait for it, then deliver both.
#[test]
fn commit_order_differs_from_claim_order() {
    loom::model(|| {
        let (mut ps, mut c) = model(&config(), 2);
        let mut p1 = ps.pop().unwrap();
        let mut p0 = ps.pop().unwrap();
        let mut g = p0.try_reserve(8).unwrap();
        let t = thread::spawn(move || {
            p1.try_send(msg(1, 0)).unwrap();
        });
        g.copy_from_slice(&msg(0, 0)[..8]);
        let consumer = thread::spawn(move || {
            let a = recv_spin(&mut c);
            let b = recv_spin(&mut c);
            (a, b)
        });
        t.join().unwrap();
        g.commit();
        let (a, b) = consumer.join().unwrap();
        assert_eq!(a[..8], msg(0, 0)[..8], "claim order is delivery order");
        assert_eq!(b, msg(1, 0));
    });
}

/// Blocking on both sides: producers sleep on a full ring, the consumer on an empty one. A lost
/// wake-up is a deadlock, which loom reports.
#[test]
fn sleep_wake_handshake() {
    loom::model(|| {
        let (ps, mut c) = model(&config(), 2);
        let handles: Vec<_> = ps
            .into_iter()
            .enumerate()
            .map(|(p, mut prod)| {
                thread::spawn(move || {
                    for i in 0..2u8 {
                        prod.send(msg(p as u8, i)).unwrap();
                    }
                })
            })
            .collect();
        let mut buf = Vec::new();
        let mut got = Vec::new();
        for _ in 0..4 {
            c.recv(&mut buf).unwrap();
            got.push(buf.clone());
        }
        check_per_producer(&got, 2);
        for h in handles {
            h.join().unwrap();
        }
    });
}

/// A consumer killed at each step of its hand-back while a producer sends: the next consumer
/// (which completes an interrupted hand-back at attach) receives every message not handed back,
/// in order, at least once, then the rest; the memory aliases record words and payloads, so a
/// free word written over a live payload (or the reverse) would show.
#[test]
fn consumer_killed_in_its_hand_back() {
    use shm_ring::model::ModelMemory;
    use shm_ring::mpsc::HandBackStep;
    for step in [
        HandBackStep::Start,
        HandBackStep::TailMoved,
        HandBackStep::IntentStored,
        HandBackStep::HalfFreed,
        HandBackStep::Freed,
        HandBackStep::HeadStored,
    ] {
        loom::model(move || {
            let mem = ModelMemory::zeroed(&config());
            mem.init().unwrap();
            let mut c = mem.mpsc_consumer().unwrap();
            let mut p = mem.mpsc_producer().unwrap();
            p.try_send(msg(0, 0)).unwrap();
            p.try_send(msg(0, 1)).unwrap();
            assert_eq!(recv_spin(&mut c), msg(0, 0));
            let producer = thread::spawn(move || {
                for i in 2..4 {
                    loop {
                        match p.try_send(msg(0, i)) {
                            Ok(()) => break,
                            Err(shm_ring::TrySendError::Full(_)) => thread::yield_now(),
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
            });
            c.crash_in_hand_back(step);
            mem.free_consumer_slot();
            let mut next = mem.mpsc_consumer().expect("the successor attaches");
            let first = recv_spin(&mut next);
            let from = if first == msg(0, 0) { 0 } else { 1 };
            assert_eq!(first, msg(0, from), "step {step:?}: nothing lost at the start");
            for i in from + 1..4 {
                assert_eq!(recv_spin(&mut next), msg(0, i), "step {step:?}");
            }
            producer.join().unwrap();
        });
    }
}

/// A producer that read the tail and stalled while the ring lapped under it: index 24 now holds
/// zero payload bytes of a committed message. The stalled claim must fail (zeros are no free
/// word) and both messages arrive whole.
#[test]
fn stale_producer_claim_fails_inside_a_payload() {
    use loom::sync::atomic::{AtomicBool, Ordering};
    use loom::sync::Arc;
    loom::model(|| {
        let config = RingConfig::mpsc(64, 2).max_message(24);
        let mem = shm_ring::model::ModelMemory::zeroed(&config);
        mem.init().unwrap();
        let mut c = mem.mpsc_consumer().unwrap();
        let mut stale = mem.mpsc_producer().unwrap();
        let mut other = mem.mpsc_producer().unwrap();
        other.try_send([1u8; 16]).unwrap(); // 0..24
        assert_eq!(recv_spin(&mut c), [1u8; 16]);
        let lapped = Arc::new(AtomicBool::new(false));
        let t = {
            let lapped = lapped.clone();
            thread::spawn(move || {
                stale
                    .try_send_stalled([0xABu8; 8], || {
                        while !lapped.load(Ordering::Acquire) {
                            thread::yield_now();
                        }
                    })
                    .unwrap();
            })
        };
        // Lap the ring while the stalled producer holds position 24: 24..48, 48..64 padding
        // (a 24-byte payload needs 32), then a zero-filled message at index 0..32 of lap 1.
        other.try_send([2u8; 16]).unwrap();
        assert_eq!(recv_spin(&mut c), [2u8; 16]);
        c.flush();
        other.try_send([0u8; 24]).unwrap();
        lapped.store(true, Ordering::Release);
        t.join().unwrap();
        assert_eq!(recv_spin(&mut c), [0u8; 24], "the zero-filled message arrives whole");
        assert_eq!(recv_spin(&mut c), [0xABu8; 8]);
    });
}

/// A consumer killed right after it stored its hand-back intent, and a successor in another
/// thread that learns of the death with no synchronisation: the dead consumer skipped a claim
/// whose producer closed before advancing the tail, moved the tail up past it, then stored the
/// intent. A successor that sees the intent (Acquire, pairing with the Release store) must see
/// the tail it moved too, or it refuses the ring as corrupt (intent ahead of the tail).
#[test]
fn successor_completes_the_hand_back_intent() {
    use shm_ring::model::ModelMemory;
    use shm_ring::mpsc::HandBackStep;
    use shm_ring::AttachError;
    loom::model(|| {
        let config = RingConfig::mpsc(64, 1).max_message(24);
        let mem = ModelMemory::zeroed(&config);
        mem.init().unwrap();
        let mut c = mem.mpsc_consumer().unwrap();
        let mut p = mem.mpsc_producer().unwrap();
        assert!(p.claim_without_advancing(8)); // record 0..16 claimed, tail still 0
        drop(p); // closed: its claim is abandoned
        let dead = {
            let mem = mem.clone();
            thread::spawn(move || {
                c.crash_at(HandBackStep::IntentStored);
                // Skips the abandoned claim, moves the tail to 16, stores the intent, dies.
                assert_eq!(c.try_recv(&mut Vec::new()), Err(TryRecvError::Disconnected));
                std::mem::forget(c);
                mem.free_consumer_slot();
            })
        };
        let successor = thread::spawn(move || {
            let mut next = loop {
                match mem.mpsc_consumer() {
                    Ok(c) => break c,
                    Err(AttachError::AlreadyAttached { .. }) => thread::yield_now(),
                    Err(e) => panic!("the successor refused the ring: {e}"),
                }
            };
            assert_eq!(next.try_recv(&mut Vec::new()), Err(TryRecvError::Disconnected));
        });
        dead.join().unwrap();
        successor.join().unwrap();
    });
}

/// A producer that attaches after the ring filled, while the consumer drains it: it claims the
/// space handed back with the consumer position it read at attach (Acquire, pairing with the
/// consumer's Release store of head), without reading head again, so the consumer must be done
/// reading that space (loom's race detector checks the payload cells).
#[test]
fn late_producer_claims_released_space() {
    use shm_ring::model::ModelMemory;
    loom::model(|| {
        let config = RingConfig::mpsc(64, 1).max_message(24);
        let mem = ModelMemory::zeroed(&config);
        mem.init().unwrap();
        let mut c = mem.mpsc_consumer().unwrap();
        let mut first = mem.mpsc_producer().unwrap();
        first.try_send([1u8; 24]).unwrap();
        first.try_send([2u8; 24]).unwrap(); // full
        drop(first);
        let consumer = thread::spawn(move || {
            assert_eq!(recv_spin(&mut c), [1u8; 24]);
            assert_eq!(recv_spin(&mut c), [2u8; 24]);
            c
        });
        let late = thread::spawn(move || {
            let mut p = loop {
                match mem.mpsc_producer() {
                    Ok(p) => break p,
                    Err(shm_ring::AttachError::NoFreeSlot { .. }) => thread::yield_now(),
                    Err(e) => panic!("{e}"),
                }
            };
            p.try_send([3u8; 24]).is_ok()
        });
        let mut c = consumer.join().unwrap();
        if late.join().unwrap() {
            assert_eq!(recv_spin(&mut c), [3u8; 24]);
        }
    });
}
