//! Slots and liveness under loom: each model thread acts as a process (`model::act_as`) with a
//! pid and a PID namespace, and the model says which pids are gone in a thread's namespace
//! (`model::dead_here`), so the namespace rule of pid evidence runs as it does across
//! processes. Pids repeat across namespaces: pid 5 may be alive in one and gone in another.
//! And a slot given back cleanly is taken by the next claimant with everything its holder
//! wrote visible.
#![cfg(loom)]

use loom::thread;
use shm_ring::model::{self, ModelMemory, PeerCheck};
use shm_ring::spsc::{Consumer, Producer};
use shm_ring::{AttachError, RingConfig};

fn config() -> RingConfig {
    RingConfig::spsc(64).max_message(24)
}

fn send_spin(p: &mut Producer, m: &[u8]) {
    loom_tests::spin::send(p, m)
}

/// Receive one message. `Disconnected` is a state, not the end: a producer may attach later.
fn recv_spin(c: &mut Consumer) -> Vec<u8> {
    loom_tests::spin::recv(c, true)
}

/// Attach with `open` until the slot's holder lets go.
fn attach_spin<T>(open: impl Fn() -> Result<T, AttachError>) -> T {
    loop {
        match open() {
            Ok(end) => return end,
            Err(AttachError::AlreadyAttached { .. }) => thread::yield_now(),
            Err(e) => panic!("{e}"),
        }
    }
}

/// The consumer slot was last held by pid 5 of namespace 1, which is gone. Pid 5 of namespace 2
/// (alive) claims it while pid 8 of namespace 1 tries to: the checker in namespace 1 must never
/// apply the old holder's namespace to the new holder's word (it would find pid 5 gone and take
/// a live holder's slot). Exactly one attaches.
#[test]
fn a_claimant_from_another_namespace_is_not_taken_for_dead() {
    loom::model(|| {
        let mem = ModelMemory::zeroed(&config());
        mem.init().unwrap();
        model::act_as(5, 1);
        drop(mem.spsc_consumer().unwrap()); // the slot's namespace field now says 1
        let other_ns = {
            let mem = mem.clone();
            thread::spawn(move || {
                model::act_as(5, 2);
                mem.spsc_consumer().ok()
            })
        };
        model::act_as(8, 1);
        model::dead_here(&[5]);
        let here = mem.spsc_consumer().ok();
        let there = other_ns.join().unwrap();
        assert!(
            here.is_some() ^ there.is_some(),
            "exactly one consumer attaches (namespace 1: {}, namespace 2: {})",
            here.is_some(),
            there.is_some()
        );
    });
}

/// A producer in namespace 1 checks its consumer, pid 5 of namespace 2 (alive), while that
/// consumer closes and pid 9 of namespace 1 attaches. Pid 5 is gone in namespace 1, so reading
/// the new holder's namespace (1) and applying it to the old word would report a live consumer
/// dead. No one dies here: the check never says dead.
#[test]
fn a_namespace_stored_later_is_not_applied_to_an_earlier_word() {
    loom::model(|| {
        let mem = ModelMemory::zeroed(&config());
        mem.init().unwrap();
        let _producer = mem.spsc_producer().unwrap();
        model::act_as(5, 2);
        let first = mem.spsc_consumer().unwrap();
        let successor = {
            let mem = mem.clone();
            thread::spawn(move || {
                drop(first);
                model::act_as(9, 1);
                mem.spsc_consumer().unwrap()
            })
        };
        model::act_as(1, 1);
        model::dead_here(&[5]);
        let check = mem.check_consumer();
        assert!(!matches!(check, PeerCheck::Dead(_)), "no consumer died, the check says {check:?}");
        drop(successor.join().unwrap());
    });
}

/// A consumer receives one of two messages and closes; another thread's consumer takes the slot
/// (it is refused while the first holds it) and must start after the message the first
/// consumed: the claim sees the position the first stored before it gave the slot back.
#[test]
fn a_consumer_takes_over_where_a_closed_one_stopped() {
    loom::model(|| {
        let mem = ModelMemory::zeroed(&config());
        mem.init().unwrap();
        let mut p = mem.spsc_producer().unwrap();
        p.try_send([1u8; 8]).unwrap();
        p.try_send([2u8; 8]).unwrap();
        let mut first = mem.spsc_consumer().unwrap();
        let t = thread::spawn(move || {
            assert_eq!(recv_spin(&mut first), [1u8; 8]);
        });
        let mut next = attach_spin(|| mem.spsc_consumer());
        assert_eq!(recv_spin(&mut next), [2u8; 8], "the first consumer's message is not delivered again");
        t.join().unwrap();
    });
}

/// A producer sends one message and closes; another thread's producer takes the slot and sends
/// a second: the consumer receives both, in order (the second producer starts at the first's
/// last position, not over its record).
#[test]
fn a_producer_takes_over_where_a_closed_one_stopped() {
    loom::model(|| {
        let mem = ModelMemory::zeroed(&config());
        mem.init().unwrap();
        let mut c = mem.spsc_consumer().unwrap();
        let mut first = mem.spsc_producer().unwrap();
        let t = {
            let mem = mem.clone();
            thread::spawn(move || {
                let mut next = attach_spin(|| mem.spsc_producer());
                send_spin(&mut next, &[2u8; 8]);
            })
        };
        send_spin(&mut first, &[1u8; 8]);
        drop(first);
        assert_eq!(recv_spin(&mut c), [1u8; 8]);
        assert_eq!(recv_spin(&mut c), [2u8; 8]);
        t.join().unwrap();
    });
}

/// The same word twice: the consumer pid 5 of namespace 2 closes, pid 9 of namespace 1 attaches
/// and closes, and pid 5 of namespace 2 attaches again, writing exactly the word it wrote the
/// first time, while a checker in namespace 1 (where pid 5 is gone) checks the consumer.
/// Reading "word, namespace, word" alone would pair the first word with pid 9's namespace and
/// report pid 5 dead; the slot's generation, read around the namespace, tells the tenures
/// apart. No one dies here: the check never says dead. (Three preemptions: the checker must be
/// interrupted after each of its reads.)
#[test]
fn the_same_word_of_a_later_tenure_is_not_paired_with_another_namespace() {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(|| {
        let mem = ModelMemory::zeroed(&config());
        mem.init().unwrap();
        model::act_as(5, 2);
        let first = mem.spsc_consumer().unwrap();
        let others = {
            let mem = mem.clone();
            thread::spawn(move || {
                drop(first);
                model::act_as(9, 1);
                drop(mem.spsc_consumer().unwrap());
                model::act_as(5, 2);
                mem.spsc_consumer().unwrap()
            })
        };
        model::act_as(1, 1);
        model::dead_here(&[5]);
        let check = mem.check_consumer();
        assert!(!matches!(check, PeerCheck::Dead(_)), "no consumer died, the check says {check:?}");
        drop(others.join().unwrap());
    });
}
