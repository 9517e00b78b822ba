//! Slot takeover under loom: a producer dies holding a claim, its slot is taken over by a new
//! producer (the next generation) while the consumer reads; the consumer skips the dead claim
//! (its generation is gone) and receives the new producer's messages, none lost, none torn.
#![cfg(loom)]

use loom::thread;
use shm_ring::model::ModelMemory;
use shm_ring::{mpsc, RingConfig, TrySendError};

fn recv_spin(c: &mut mpsc::Consumer) -> Vec<u8> {
    loom_tests::spin::recv(c, false)
}

#[test]
fn a_dead_producers_slot_taken_over_while_the_consumer_reads() {
    loom::model(|| {
        let config = RingConfig::mpsc(64, 1).max_message(24);
        let mem = ModelMemory::zeroed(&config);
        mem.init().unwrap();
        let mut c = mem.mpsc_consumer().unwrap();
        let mut dead = mem.mpsc_producer().unwrap();
        dead.try_send([1u8; 8]).unwrap();
        // It claims and dies before committing: the claim stays, its slot stays attached.
        std::mem::forget(dead.try_reserve(8).unwrap());
        std::mem::forget(dead);
        let successor = {
            let mem = mem.clone();
            thread::spawn(move || {
                mem.free_producer_slot(0); // its death is noticed: the slot is free to take
                let mut p = mem.mpsc_producer().expect("the slot is taken over");
                loop {
                    match p.try_send([2u8; 16]) {
                        Ok(()) => break,
                        Err(TrySendError::Full(_)) => thread::yield_now(),
                        Err(e) => panic!("{e}"),
                    }
                }
                p
            })
        };
        assert_eq!(recv_spin(&mut c), [1u8; 8]);
        assert_eq!(recv_spin(&mut c), [2u8; 16], "the dead claim is skipped, nothing torn");
        drop(successor.join().unwrap());
    });
}
