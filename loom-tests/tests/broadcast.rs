//! The broadcast protocol under loom: a subscriber joining while the producer works out the
//! slowest cursor (Block), a lapped subscriber detecting the overwrite (Overwrite), and the
//! sleep/wake of a producer and subscribers that block.
#![cfg(loom)]

use loom::thread;
use shm_ring::broadcast::{Producer, Subscriber};
use shm_ring::model::ModelMemory;
use shm_ring::{Broadcast, Policy, RecvError, RingConfig, TryRecvError, TrySendError};

/// 64 data bytes, messages up to 8 bytes: a record takes 24, two fit with the terminator, so
/// every third message writes over the first one's space.
fn config(subscribers: u32) -> RingConfig {
    RingConfig::broadcast(64, subscribers).max_message(8)
}

fn msg(i: u8) -> Vec<u8> {
    vec![i; 1 + i as usize % 8]
}

fn ring(config: &RingConfig) -> ModelMemory {
    let mem = ModelMemory::zeroed(config);
    mem.init().expect("init");
    mem
}

fn send_spin(p: &mut Producer, m: &[u8]) {
    loom_tests::spin::send(p, m)
}

/// Receive until the producer closes (blocking receives: a subscriber that spins multiplies
/// the interleavings); every message whole (its bytes all equal its number and its length
/// matches), in order, consecutive from the first.
fn drain(s: &mut Subscriber) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = Vec::new();
    loop {
        match s.recv(&mut buf) {
            Ok(_) => {
                let i = buf[0];
                assert_eq!(buf, msg(i), "a whole message");
                if let Some(&last) = got.last() {
                    assert_eq!(i, last + 1, "in order, none missing");
                }
                got.push(i);
            }
            Err(RecvError::Disconnected) => return got,
            Err(e) => panic!("{e}"),
        }
    }
}

/// Block: subscriber A reads everything; B joins while the producer sends and works out the
/// slowest cursor. Whatever B sees is a whole in-order suffix ending at the last message (the
/// race detector checks that the producer never writes a record B may be reading).
#[test]
fn a_subscriber_joins_while_the_producer_computes_the_slowest_cursor() {
    let mut builder = loom::model::Builder::new();
    builder.max_branches = 100_000;
    // One preemption: three threads with the join's slot claim and walk ran past seven minutes
    // at two (CI's bound for the others); at one, the joiner is cut off from the producer at
    // every step of it all the same.
    builder.preemption_bound = Some(1);
    builder.check(|| {
        let mem = ring(&config(2));
        let mut p = mem.producer::<Broadcast>().unwrap();
        let mut a = mem.consumer::<Broadcast>().unwrap();
        let late = {
            let mem = mem.clone();
            thread::spawn(move || {
                let mut b = mem.consumer::<Broadcast>().unwrap();
                drain(&mut b)
            })
        };
        let reader = thread::spawn(move || drain(&mut a));
        // Three 24-byte records in 64 bytes: the third goes over the first one's space, which
        // neither subscriber may still be reading.
        for i in 0..3 {
            send_spin(&mut p, &msg(i));
        }
        drop(p);
        assert_eq!(reader.join().unwrap(), vec![0, 1, 2]);
        let got = late.join().unwrap();
        if let Some(&last) = got.last() {
            assert_eq!(last, 2, "the suffix runs to the end: {got:?}");
        }
    });
}

/// Overwrite: the producer never waits and laps the subscriber. Every message the subscriber
/// gets is whole, and received + reported lost == sent.
#[test]
fn a_lapped_subscriber_detects_the_overwrite() {
    loom::model(|| {
        let mem = ring(&config(1).policy(Policy::Overwrite));
        let mut p = mem.producer::<Broadcast>().unwrap();
        let mut s = mem.consumer::<Broadcast>().unwrap();
        let t = thread::spawn(move || {
            let (mut received, mut lost, mut expect) = (0u64, 0u64, 0u8);
            let mut buf = Vec::new();
            loop {
                match s.try_recv(&mut buf) {
                    Ok(_) => {
                        assert_eq!(buf, msg(expect), "whole, and the one due");
                        expect += 1;
                        received += 1;
                    }
                    Err(TryRecvError::Lagged { skipped }) => {
                        lost += skipped;
                        expect += skipped as u8;
                    }
                    Err(TryRecvError::Empty) => thread::yield_now(),
                    Err(TryRecvError::Disconnected) => return (received, lost),
                    Err(e) => panic!("{e}"),
                }
            }
        });
        for i in 0..4 {
            match p.try_send(msg(i)) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => panic!("an Overwrite producer never waits"),
                Err(e) => panic!("{e}"),
            }
        }
        drop(p);
        let (received, lost) = t.join().unwrap();
        assert_eq!(received + lost, 4);
    });
}

/// Block, blocking calls on both sides: a producer that sleeps for room and a subscriber that
/// sleeps for messages; no wake-up is lost (loom reports a deadlock otherwise).
#[test]
fn producer_and_subscriber_sleep_and_wake() {
    loom::model(|| {
        let mem = ring(&config(2));
        let mut p = mem.producer::<Broadcast>().unwrap();
        let mut s = mem.consumer::<Broadcast>().unwrap();
        let t = thread::spawn(move || {
            let mut buf = Vec::new();
            for i in 0..3 {
                s.recv(&mut buf).unwrap();
                assert_eq!(buf, msg(i));
            }
            assert_eq!(s.recv(&mut buf), Err(RecvError::Disconnected));
        });
        for i in 0..3 {
            p.send(msg(i)).unwrap();
        }
        drop(p);
        t.join().unwrap();
    });
}

/// Two subscribers asleep on the same wait point, one publish waking both (the producer
/// yields while the ring is full). Two subscribers waking one sleeping producer is the
/// store-buffering handshake with two notifiers, for which loom 0.7's SeqCst fences admit an
/// outcome the C++ fence rules forbid (the litmus test in `docs/loom-sites.md`); the
/// cross-process tests cover it (`broadcast_processes`).
#[test]
fn two_subscribers_sleep_and_wake() {
    loom::model(|| {
        let mem = ring(&config(2));
        let mut p = mem.producer::<Broadcast>().unwrap();
        let subs: Vec<_> = (0..2)
            .map(|_| {
                let mut s = mem.consumer::<Broadcast>().unwrap();
                thread::spawn(move || {
                    let mut buf = Vec::new();
                    for i in 0..2 {
                        s.recv(&mut buf).unwrap();
                        assert_eq!(buf, msg(i));
                    }
                    assert_eq!(s.recv(&mut buf), Err(RecvError::Disconnected));
                })
            })
            .collect();
        for i in 0..2 {
            send_spin(&mut p, &msg(i));
        }
        drop(p);
        for t in subs {
            t.join().unwrap();
        }
    });
}
