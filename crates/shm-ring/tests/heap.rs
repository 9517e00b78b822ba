//! The ring protocol on heap memory ([`HeapRing`]), in one process: small enough for Miri,
//! which checks the ring code for undefined behaviour (`cargo +nightly miri test -p shm-ring
//! --test heap`, see the README's Development section). Each test runs on every ring kind.

use std::time::Duration;

use shm_ring::heap::HeapRing;
use shm_ring::{
    Broadcast, Mpsc, RecvError, RecvTimeoutError, RingConfig, RingKind, Spsc, TryRecvError, TrySendError,
};

fn ring<K: RingKind>() -> HeapRing {
    let config = match K::KIND {
        shm_ring::Kind::Spsc => RingConfig::spsc(256),
        shm_ring::Kind::Mpsc => RingConfig::mpsc(256, 2),
        shm_ring::Kind::Broadcast => RingConfig::broadcast(256, 2),
    };
    HeapRing::new(&config).unwrap()
}

/// Messages of 0 to 40 bytes across several wraps, every byte checked, in order.
fn wraps<K: RingKind>() {
    let ring = ring::<K>();
    let (mut p, mut c) = (ring.producer::<K>().unwrap(), ring.consumer::<K>().unwrap());
    let mut buf = Vec::new();
    for i in 0..60u8 {
        let msg: Vec<u8> = (0..i % 41).map(|b| b ^ i).collect();
        p.try_send(&msg).unwrap();
        assert_eq!(c.try_recv(&mut buf), Ok(msg.len()));
        assert_eq!(buf, msg, "message {i}");
    }
    assert_eq!(c.try_recv(&mut buf), Err(TryRecvError::Empty));
}

/// Grants committed and dropped, guards, pod values, a batch; then close.
fn every_call<K: RingKind>() {
    let ring = ring::<K>();
    let (mut p, mut c) = (ring.producer::<K>().unwrap(), ring.consumer::<K>().unwrap());
    let mut g = p.try_reserve(5).unwrap();
    g.copy_from_slice(b"grant");
    g.commit();
    drop(p.try_reserve(7).unwrap()); // aborted: nothing is delivered
    p.try_send_pod(0x1122_3344_u32).unwrap();
    p.send_timeout(b"timed", Duration::from_millis(10)).unwrap();
    let guard = c.try_read().unwrap();
    assert_eq!(guard.to_vec(), b"grant");
    drop(guard);
    assert_eq!(c.try_recv_pod::<u32>(), Ok(0x1122_3344));
    let mut got = Vec::new();
    assert_eq!(c.recv_batch(8, |m| got.push(m.to_vec())), Ok(1));
    assert_eq!(got, [b"timed".to_vec()]);
    // Full: the message comes back.
    while p.try_send([9u8; 40]).is_ok() {}
    assert!(matches!(p.try_send([1u8; 40]), Err(TrySendError::Full(m)) if m == [1u8; 40]));
    let n = c.try_iter().count();
    assert!(n >= 4, "{n} messages of 40 bytes in 256");
    drop(p);
    let mut buf = Vec::new();
    assert_eq!(c.recv(&mut buf), Err(RecvError::Disconnected));
    assert_eq!(c.recv_timeout(&mut buf, Duration::from_millis(1)), Err(RecvTimeoutError::Disconnected));
}

/// A corrupt record header: `Corrupt`, never a panic or an access out of bounds.
fn corrupt_record<K: RingKind>() {
    let ring = ring::<K>();
    let (mut p, mut c) = (ring.producer::<K>().unwrap(), ring.consumer::<K>().unwrap());
    p.try_send(b"soon overwritten").unwrap();
    // The first record word: a message type with a length beyond the ring, stored through the
    // heap memory's atomics as a hostile peer would.
    let word = u64::from(u32::MAX) | 1 << 56;
    shm_ring::Memory::record(&**ring.memory(), 0).store(word, std::sync::atomic::Ordering::Relaxed);
    assert!(matches!(c.try_recv(&mut Vec::new()), Err(TryRecvError::Corrupt(_))));
}

#[test]
fn spsc_wraps() {
    wraps::<Spsc>();
}

#[test]
fn mpsc_wraps() {
    wraps::<Mpsc>();
}

#[test]
fn spsc_every_call() {
    every_call::<Spsc>();
}

#[test]
fn mpsc_every_call() {
    every_call::<Mpsc>();
}

#[test]
fn spsc_corrupt_record() {
    corrupt_record::<Spsc>();
}

#[test]
fn mpsc_corrupt_record() {
    corrupt_record::<Mpsc>();
}

#[test]
fn broadcast_wraps() {
    wraps::<Broadcast>();
}

#[test]
fn broadcast_every_call() {
    every_call::<Broadcast>();
}

#[test]
fn broadcast_corrupt_record() {
    corrupt_record::<Broadcast>();
}
