//! The attach handshake under loom: a creator initialising while an opener polls, and two
//! openers racing for one end.
#![cfg(loom)]

use loom::thread;
use shm_ring::model::ModelMemory;
use shm_ring::{AttachError, RingConfig, TryRecvError};

/// An opener that sees READY sees the whole descriptor (the creator's Release store of the
/// state, the opener's Acquire load): it never attaches with a half-written geometry, and a
/// message sent after the init arrives.
///
/// The opener runs in a thread of its own, not in the thread that made the zeroed memory: loom
/// never lets a thread that yielded read again a store it saw before its yield (to make spin
/// loops progress), and the thread that made the memory has "seen" every zero in it, so an
/// opener polling there could never read a stale zero field after READY, whatever the
/// orderings.
#[test]
fn opener_sees_the_whole_header_once_ready() {
    loom::model(|| {
        let config = RingConfig::spsc(64);
        let mem = ModelMemory::zeroed(&config);
        let creator = {
            let mem = mem.clone();
            thread::spawn(move || {
                mem.init().unwrap();
                let mut p = mem.spsc_producer().unwrap();
                p.try_send(b"hello").unwrap();
                p
            })
        };
        let opener = thread::spawn(move || match mem.spsc_consumer() {
            Ok(mut c) => {
                assert_eq!(c.capacity(), 64, "the geometry the creator wrote");
                let mut buf = Vec::new();
                loop {
                    match c.try_recv(&mut buf) {
                        Ok(_) => break,
                        Err(TryRecvError::Empty) => thread::yield_now(),
                        Err(e) => panic!("{e}"),
                    }
                }
                assert_eq!(buf, b"hello");
            }
            Err(AttachError::NotInitialized { .. }) => {} // polled before the creator finished
            Err(e) => panic!("attached to a half-initialised ring: {e}"),
        });
        opener.join().unwrap();
        drop(creator.join().unwrap());
    });
}

/// Two openers race for the one consumer end: exactly one gets it.
#[test]
fn two_openers_one_end() {
    loom::model(|| {
        let config = RingConfig::mpsc(64, 1);
        let mem = ModelMemory::zeroed(&config);
        mem.init().unwrap();
        let other = {
            let mem = mem.clone();
            thread::spawn(move || mem.mpsc_consumer().map(std::mem::forget).is_ok())
        };
        let mine = mem.mpsc_consumer().map(std::mem::forget).is_ok();
        let theirs = other.join().unwrap();
        assert!(mine ^ theirs, "exactly one opener attaches (mine {mine}, theirs {theirs})");
    });
}
