//! The SPSC protocol under loom: every interleaving (up to the preemption bound) of a producer
//! and a consumer thread on a ring of a few records.
#![cfg(loom)]

use loom::thread;
use shm_ring::model::spsc_pair as model_pair;
use shm_ring::spsc::{Consumer, Producer};
use shm_ring::{RecvError, RingConfig, SendError, TryRecvError, TrySendError};

/// 64 data bytes, messages up to 24 bytes: two or three records fit, so sends wrap and pad.
fn config() -> RingConfig {
    RingConfig::spsc(64).max_message(24)
}

fn msg(i: u8) -> Vec<u8> {
    vec![i; 8 + (i as usize * 5) % 17]
}

fn send_spin(p: &mut Producer, m: &[u8]) {
    loom_tests::spin::send(p, m)
}

fn recv_spin(c: &mut Consumer) -> Vec<u8> {
    loom_tests::spin::recv(c, false)
}

#[test]
fn send_recv_across_the_wrap() {
    loom::model(|| {
        let (mut p, mut c) = model_pair(&config());
        let t = thread::spawn(move || {
            for i in 0..4 {
                send_spin(&mut p, &msg(i));
            }
        });
        for i in 0..4 {
            assert_eq!(recv_spin(&mut c), msg(i));
        }
        t.join().unwrap();
    });
}

#[test]
fn full_and_empty() {
    loom::model(|| {
        let (mut p, mut c) = model_pair(&config());
        // Fill: 24-byte payloads take 32-byte records, two fill the ring.
        p.try_send([1u8; 24]).unwrap();
        p.try_send([2u8; 24]).unwrap();
        assert!(matches!(p.try_send([3u8; 24]), Err(TrySendError::Full(_))));
        let t = thread::spawn(move || {
            let a = recv_spin(&mut c);
            let b = recv_spin(&mut c);
            let c3 = recv_spin(&mut c);
            assert_eq!((a[0], b[0], c3[0]), (1, 2, 3));
            assert_eq!(c.try_recv(&mut Vec::new()), Err(TryRecvError::Empty));
        });
        send_spin(&mut p, &[3u8; 24]);
        t.join().unwrap();
    });
}

#[test]
fn reserve_commit_abort() {
    loom::model(|| {
        let (mut p, mut c) = model_pair(&config());
        let t = thread::spawn(move || {
            for i in 0..3u8 {
                loop {
                    match p.try_reserve(16) {
                        Ok(mut g) => {
                            g.copy_from_slice(&[i; 16]);
                            if i == 1 {
                                let _aborted = g; // dropped unpublished: never delivered
                            } else {
                                g.commit_len(8 + i as usize);
                            }
                            break;
                        }
                        Err(TrySendError::Full(())) => thread::yield_now(),
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        });
        assert_eq!(recv_spin(&mut c), vec![0u8; 8]);
        loop {
            match c.try_read() {
                Ok(g) => {
                    assert_eq!(g.to_vec(), [2u8; 10]);
                    break;
                }
                Err(TryRecvError::Empty) => thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        t.join().unwrap();
    });
}

#[test]
fn batch_receive() {
    loom::model(|| {
        let (mut p, mut c) = model_pair(&config());
        let t = thread::spawn(move || {
            for i in 0..4 {
                send_spin(&mut p, &msg(i));
            }
        });
        let mut next = 0u8;
        while next < 4 {
            match c.recv_batch(usize::MAX, |m| {
                assert_eq!(m, &msg(next)[..]);
                next += 1;
            }) {
                Ok(n) => assert!(n >= 1),
                Err(TryRecvError::Empty) => thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        t.join().unwrap();
    });
}

/// Both sides block: the consumer sleeps on an empty ring, the producer on a full one. A lost
/// wake-up leaves a thread asleep forever, which loom reports as a deadlock.
#[test]
fn sleep_wake_handshake() {
    loom::model(|| {
        let (mut p, mut c) = model_pair(&config());
        let t = thread::spawn(move || {
            for i in 0..3u8 {
                p.send([i; 24]).unwrap();
            }
        });
        let mut buf = Vec::new();
        for i in 0..3u8 {
            c.recv(&mut buf).unwrap();
            assert_eq!(buf, [i; 24]);
        }
        t.join().unwrap();
    });
}

/// The producer closes while the consumer sleeps: the consumer wakes, drains, and gets
/// Disconnected.
#[test]
fn close_while_consumer_sleeps() {
    loom::model(|| {
        let (mut p, mut c) = model_pair(&config());
        let t = thread::spawn(move || {
            p.try_send(b"last").unwrap();
            drop(p);
        });
        let mut buf = Vec::new();
        let mut got = Vec::new();
        loop {
            match c.recv(&mut buf) {
                Ok(_) => got.push(buf.clone()),
                Err(RecvError::Disconnected) => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got, vec![b"last".to_vec()]);
        t.join().unwrap();
    });
}

/// The consumer closes while the producer sleeps on a full ring: the producer wakes with its
/// message handed back.
#[test]
fn close_while_producer_sleeps() {
    loom::model(|| {
        let (mut p, c) = model_pair(&config());
        p.try_send([1u8; 24]).unwrap();
        p.try_send([2u8; 24]).unwrap();
        let t = thread::spawn(move || drop(c));
        match p.send([3u8; 24]) {
            Err(SendError::Disconnected(m)) => assert_eq!(m, [3u8; 24]),
            other => panic!("{other:?}"),
        }
        t.join().unwrap();
    });
}

/// A producer that attaches after the ring filled, while the consumer drains it: the consumer
/// position it reads at attach (Acquire, pairing with the consumer's Release store of head)
/// is the room it writes into without reading head again, so the consumer must be done
/// reading that space (loom's race detector checks the payload cells).
#[test]
fn late_producer_writes_into_released_space() {
    use shm_ring::model::ModelMemory;
    use shm_ring::AttachError;
    loom::model(|| {
        let mem = ModelMemory::zeroed(&config());
        mem.init().unwrap();
        let mut c = mem.spsc_consumer().unwrap();
        let mut first = mem.spsc_producer().unwrap();
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
                match mem.spsc_producer() {
                    Ok(p) => break p,
                    Err(AttachError::AlreadyAttached { .. }) => thread::yield_now(),
                    Err(e) => panic!("{e}"),
                }
            };
            p.try_send([3u8; 24]).is_ok()
        });
        let mut c = consumer.join().unwrap();
        if late.join().unwrap() {
            assert_eq!(c.try_recv(&mut Vec::new()).map(|_| ()), Ok(()));
        }
    });
}

/// A producer killed between its publishing store and its store of `tail`: the stored tail is
/// behind a published record. Its successor, attaching while the consumer reads, walks the
/// record words to the real end and writes after it: the consumer gets all three messages,
/// whole and in order (writing at the stale tail would tear the second, which loom's race
/// detector and the content check both see).
#[test]
fn successor_of_a_producer_killed_before_its_tail_store() {
    use shm_ring::model::ModelMemory;
    loom::model(|| {
        let mem = ModelMemory::zeroed(&config());
        mem.init().unwrap();
        let mut c = mem.spsc_consumer().unwrap();
        let mut dead = mem.spsc_producer().unwrap();
        dead.try_send([1u8; 8]).unwrap();
        dead.try_send_leaving_tail_behind(&[2u8; 16]).unwrap();
        std::mem::forget(dead);
        let successor = {
            let mem = mem.clone();
            thread::spawn(move || {
                mem.free_producer_slot(0); // its death is noticed: the slot is free to take
                let mut p = mem.spsc_producer().expect("the slot is taken over");
                send_spin(&mut p, &[3u8; 8]);
                p
            })
        };
        assert_eq!(recv_spin(&mut c), [1u8; 8]);
        assert_eq!(recv_spin(&mut c), [2u8; 16]);
        assert_eq!(recv_spin(&mut c), [3u8; 8]);
        drop(successor.join().unwrap());
    });
}

/// A batch written and dropped uncommitted while the consumer waits: none of it is delivered,
/// and the message sent after it is read whole (the consumer never reads past the terminator
/// the batch left in place).
#[test]
fn a_dropped_batch_is_never_read() {
    loom::model(|| {
        let (mut p, mut c) = model_pair(&config());
        let t = thread::spawn(move || {
            let mut batch = p.write_batch();
            batch.push(16, |b| b.fill(7)).unwrap();
            batch.push(8, |b| b.fill(8)).unwrap();
            drop(batch);
            send_spin(&mut p, &[9u8; 8]);
            p
        });
        assert_eq!(recv_spin(&mut c), [9u8; 8]);
        let _p = t.join().unwrap();
        assert_eq!(c.try_recv(&mut Vec::new()), Err(TryRecvError::Empty));
    });
}

/// The model above spawns the successor after the dead producer's stores, so the spawn orders
/// them before its walk. Here the dead producer runs in a thread of its own, stops right after
/// its publishing store (no tail store, no wake-up), and its death is learnt only as
/// `free_producer_slot` models it (a Relaxed store: no synchronisation of the ring). The
/// successor's walk reads the record words with a read-modify-write, so it sees the published
/// word, not the old terminator, and never writes over the published record. (With a plain
/// load the walk stops at the stored tail in some interleavings: a causality violation.)
#[test]
fn successor_of_a_killed_producer_that_learns_of_the_death_without_synchronisation() {
    use shm_ring::model::ModelMemory;
    use shm_ring::AttachError;
    let mut builder = loom::model::Builder::new();
    builder.max_branches = 100_000;
    builder.check(|| {
        let mem = ModelMemory::zeroed(&config());
        mem.init().unwrap();
        let mut c = mem.spsc_consumer().unwrap();
        let mut dead = mem.spsc_producer().unwrap();
        let killed = {
            let mem = mem.clone();
            thread::spawn(move || {
                dead.try_send_leaving_tail_behind(&[2u8; 16]).unwrap();
                std::mem::forget(dead);
                mem.free_producer_slot(0); // its death is noticed
            })
        };
        let successor = {
            let mem = mem.clone();
            thread::spawn(move || {
                let mut p = loop {
                    match mem.spsc_producer() {
                        Ok(p) => break p,
                        Err(AttachError::AlreadyAttached { .. }) => thread::yield_now(),
                        Err(e) => panic!("{e}"),
                    }
                };
                p.try_send([3u8; 8]).unwrap();
                p
            })
        };
        killed.join().unwrap();
        let p = successor.join().unwrap();
        let mut buf = Vec::new();
        c.try_recv(&mut buf).unwrap();
        assert_eq!(buf, [2u8; 16], "the published message");
        c.try_recv(&mut buf).unwrap();
        assert_eq!(buf, [3u8; 8], "the successor's");
        drop(p);
    });
}

/// Exactly-full rings with no terminator, over and over: 16-byte records fill the
/// 64-byte ring exactly, the consumer takes them in batches (handing back once per batch), and
/// the producer's cached consumer position is stale when it decides whether a terminator fits.
#[test]
fn exactly_full_again_and_again_with_batched_hand_back() {
    loom::model(|| {
        let (mut p, mut c) = model_pair(&config());
        let t = thread::spawn(move || {
            for i in 0..6u8 {
                send_spin(&mut p, &[i; 8]);
            }
            p
        });
        let mut next = 0u8;
        while next < 6 {
            match c.recv_batch(3, |m| {
                assert_eq!(m, [next; 8]);
                next += 1;
            }) {
                Ok(_) => {}
                Err(TryRecvError::Empty) => thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        let _p = t.join().unwrap();
        assert_eq!(c.try_recv(&mut Vec::new()), Err(TryRecvError::Empty));
    });
}

/// The consumer's plain stores of `head` between two looks for a waiting producer: on a
/// 128-byte ring with messages up to 56 bytes the consumer hands back after every message (a
/// producer facing an otherwise empty ring needs room for a largest one) but looks only every
/// 32 bytes, so after a 16-byte record it stores `head` without a fence. The producer sends
/// nine 8-byte messages into room for eight and sleeps for the ninth; the consumer checks each
/// payload (the plain store is Release: the producer may write over a record only once it is
/// read) and sleeps too. A wake-up lost for good leaves a thread asleep, which loom reports.
#[test]
fn plain_hand_backs_between_looks() {
    loom::model(|| {
        let (mut p, mut c) = model_pair(&RingConfig::spsc(128).max_message(56));
        let t = thread::spawn(move || {
            for i in 0..9u8 {
                p.send([i; 8]).unwrap();
            }
        });
        let mut buf = Vec::new();
        for i in 0..9u8 {
            c.recv(&mut buf).unwrap();
            assert_eq!(buf, [i; 8]);
        }
        t.join().unwrap();
    });
}
