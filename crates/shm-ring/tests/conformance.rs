//! The same ring tests on every region kind — anonymous (shared across `fork`), file, POSIX shm,
//! memfd — and every ring kind: written once as functions generic over the ring kind and the
//! region maker, instantiated for the whole matrix at the bottom.
//!
//! Each test: delivery across the wrap, full and empty, close of either end, death of the
//! producer's process (a forked child, SIGKILLed while the consumer waits), and corrupt
//! positions.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use shm_core::Region;
use shm_ring::{
    Consumer, Producer, RecvError, RecvTimeoutError, RingConfig, RingKind, SendError, TryRecvError,
    TrySendError,
};
use shm_testkit::{fork, pattern, Gate};

const CAP: u64 = 4096;

/// Makes the region of one test; removes what it created when dropped.
trait Maker {
    fn make(&mut self, len: usize) -> Region;
}

struct Anonymous;
impl Maker for Anonymous {
    fn make(&mut self, len: usize) -> Region {
        Region::anonymous(len).unwrap()
    }
}

struct File(tempfile::TempDir, Option<PathBuf>);
impl File {
    fn new() -> File {
        File(tempfile::tempdir().unwrap(), None)
    }
}
impl Maker for File {
    fn make(&mut self, len: usize) -> Region {
        let path = self.0.path().join("ring");
        self.1 = Some(path.clone());
        Region::create_file(path, len).unwrap()
    }
}

struct Shm(String);
impl Shm {
    fn new() -> Shm {
        Shm(shm_testkit::unique_name("conformance"))
    }
}
impl Maker for Shm {
    fn make(&mut self, len: usize) -> Region {
        Region::create_shm(&self.0, len).unwrap()
    }
}
impl Drop for Shm {
    fn drop(&mut self) {
        let _ = Region::unlink_shm(&self.0);
    }
}

struct Memfd;
impl Maker for Memfd {
    fn make(&mut self, len: usize) -> Region {
        Region::create_memfd("conformance", len).unwrap()
    }
}

fn config<K: RingKind>() -> RingConfig {
    match K::KIND {
        shm_ring::Kind::Spsc => RingConfig::spsc(CAP),
        shm_ring::Kind::Mpsc => RingConfig::mpsc(CAP, 4),
        shm_ring::Kind::Broadcast => RingConfig::broadcast(CAP, 4),
    }
}

/// A fresh ring of kind `K` in a region from `maker`, with both ends attached.
fn ring<K: RingKind>(maker: &mut impl Maker) -> (Arc<Region>, Producer<K>, Consumer<K>) {
    let config = config::<K>();
    let region = Arc::new(maker.make(config.region_len()));
    let c = Consumer::<K>::create(region.clone(), &config).unwrap();
    let p = Producer::<K>::open(region.clone()).unwrap();
    (region, p, c)
}

/// 3000 messages of 1 to 300 bytes through a 4 KiB ring (many wraps, padding), each checked
/// byte for byte, in order, none twice.
fn delivery<K: RingKind>(mut maker: impl Maker) {
    let (_region, mut p, mut c) = ring::<K>(&mut maker);
    let mut buf = Vec::new();
    let (mut sent, mut got) = (0u64, 0u64);
    while got < 3000 {
        while sent < 3000 && p.try_send(pattern::message(7, sent, 1, 300)).is_ok() {
            sent += 1;
        }
        match c.try_recv(&mut buf) {
            Ok(_) => {
                pattern::check(7, got, 1, 300, &buf).unwrap();
                got += 1;
            }
            Err(TryRecvError::Empty) => assert!(sent > got, "empty with {sent} sent, {got} received"),
            Err(e) => panic!("message {got}: {e}"),
        }
    }
    assert_eq!(c.try_recv(&mut buf), Err(TryRecvError::Empty));
}

/// Fill the ring: the next send is `Full` with the message handed back; after one receive it
/// fits again. Empty: `Empty` at once, `Timeout` after the timeout.
fn full_and_empty<K: RingKind>(mut maker: impl Maker) {
    let (_region, mut p, mut c) = ring::<K>(&mut maker);
    let mut buf = Vec::new();
    assert_eq!(c.try_recv(&mut buf), Err(TryRecvError::Empty));
    assert_eq!(c.recv_timeout(&mut buf, Duration::from_millis(5)), Err(RecvTimeoutError::Timeout));
    let mut n = 0;
    while p.try_send([n as u8; 100]).is_ok() {
        n += 1;
    }
    assert!(n >= 30, "only {n} messages of 100 bytes fit in {CAP}");
    match p.try_send([0xee; 100]) {
        Err(TrySendError::Full(m)) => assert_eq!(m, [0xee; 100], "the message is handed back"),
        other => panic!("expected Full, got {other:?}"),
    }
    assert!(p.send_timeout([0xee; 100], Duration::from_millis(5)).unwrap_err().is_timeout());
    // One message read makes room for one more; on a broadcast ring (a 16-byte record header
    // and the terminator) the padding the next one needs takes a second.
    let read = if K::KIND == shm_ring::Kind::Broadcast { 2 } else { 1 };
    for i in 0..read {
        assert_eq!(c.try_recv(&mut buf), Ok(100));
        assert_eq!(buf, [i as u8; 100]);
    }
    c.flush();
    p.try_send([0xee; 100]).unwrap();
    for i in read..n {
        c.recv(&mut buf).unwrap();
        assert_eq!(buf, [i as u8; 100]);
    }
    assert_eq!(c.try_recv(&mut buf), Ok(100));
    assert_eq!(buf, [0xee; 100]);
}

/// A message longer than the max message size is refused by every send form at once, handed
/// back with both lengths named, and nothing reaches the consumer.
fn too_large<K: RingKind>(mut maker: impl Maker) {
    let (_region, mut p, mut c) = ring::<K>(&mut maker);
    let max = p.max_message();
    let big = vec![7u8; max + 1];
    assert!(
        matches!(p.try_send(&big), Err(TrySendError::TooLarge { len, max: m, .. }) if len == max + 1 && m == max)
    );
    assert!(matches!(p.send(&big), Err(SendError::TooLarge { len, .. }) if len == max + 1));
    let e = p.send_timeout(&big, Duration::from_secs(5)).unwrap_err();
    assert!(matches!(e, shm_ring::SendTimeoutError::TooLarge { .. }), "{e:?}");
    assert_eq!(e.into_inner(), &big);
    assert!(matches!(p.try_reserve(max + 1), Err(TrySendError::TooLarge { .. })));
    assert!(matches!(p.reserve(max + 1), Err(SendError::TooLarge { .. })));
    assert!(matches!(
        p.reserve_timeout(max + 1, Duration::from_secs(5)),
        Err(shm_ring::SendTimeoutError::TooLarge { .. })
    ));
    p.try_send(vec![1u8; max]).unwrap();
    let mut buf = Vec::new();
    assert_eq!(c.try_recv(&mut buf), Ok(max), "the largest message fits, and comes first");
    assert_eq!(c.try_recv(&mut buf), Err(TryRecvError::Empty));
}

/// A producer that closes: the consumer drains what was sent, then gets `Disconnected`. A
/// consumer that closes: the producer gets `Disconnected` with its message back.
fn close<K: RingKind>(mut maker: impl Maker) {
    let (region, mut p, mut c) = ring::<K>(&mut maker);
    p.send(b"last words").unwrap();
    drop(p);
    let mut buf = Vec::new();
    assert_eq!(c.recv(&mut buf), Ok(10));
    assert_eq!(c.recv(&mut buf), Err(RecvError::Disconnected));
    assert_eq!(c.try_recv(&mut buf), Err(TryRecvError::Disconnected));
    // A timed call that runs out of time still reports the closed peer, even with no time at
    // all (it used to say `Timeout` when the deadline passed in the spin phase).
    assert_eq!(c.recv_timeout(&mut buf, Duration::ZERO), Err(RecvTimeoutError::Disconnected));

    let mut p = Producer::<K>::open(region).unwrap();
    drop(c);
    if K::KIND == shm_ring::Kind::Broadcast {
        // A broadcast producer goes on whoever listens: with no subscriber it writes over the
        // oldest messages.
        for _ in 0..1000 {
            p.send_timeout(b"nobody", Duration::ZERO).unwrap();
        }
        return;
    }
    assert!(matches!(
        p.send_timeout(b"nobody", Duration::ZERO),
        Err(shm_ring::SendTimeoutError::Disconnected(_))
    ));
    match p.send(b"nobody") {
        Err(SendError::Disconnected(m)) => assert_eq!(m, b"nobody"),
        other => panic!("expected Disconnected, got {other:?}"),
    }
}

/// The producer is a forked child that sends, reports through a pipe, and waits to be killed;
/// a consumer blocked on the empty ring gets the message, then `PeerDead` once it is killed.
fn producer_death<K: RingKind>(mut maker: impl Maker) {
    let config = config::<K>();
    let region = Arc::new(maker.make(config.region_len()));
    let mut c = Consumer::<K>::create(region.clone(), &config).unwrap();
    let gate = Gate::new();
    let child = {
        let region = region.clone();
        let gate = &gate;
        fork(move || {
            let mut p = Producer::<K>::open(region).unwrap();
            p.send(b"from the child").unwrap();
            gate.open();
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };
    assert!(gate.wait(1, Duration::from_secs(20)), "the child attached and sent");
    let mut buf = Vec::new();
    assert_eq!(c.recv(&mut buf), Ok(14));
    let pid = child.pid() as u32;
    child.kill(Signal::SIGKILL);
    let r = c.recv_timeout(&mut buf, Duration::from_secs(20));
    assert!(matches!(r, Err(RecvTimeoutError::PeerDead { pid: p }) if p == pid), "{r:?}");
    drop(child);
}

/// A producer position far ahead of the consumer's: the consumer reports `Corrupt` and returns;
/// a fresh attach is refused with the same reason.
fn corrupt_positions<K: RingKind>(mut maker: impl Maker) {
    let (region, mut p, mut c) = ring::<K>(&mut maker);
    p.send(b"fine").unwrap();
    let mut buf = Vec::new();
    assert_eq!(c.recv(&mut buf), Ok(4));
    // The producer position (`tail`, header offset 128) 3 capacities ahead.
    region.write_at(128, &(CAP * 3).to_le_bytes()).unwrap();
    match K::KIND {
        // The SPSC consumer waits on record words and the producer owns the tail: neither reads
        // it while attached. A garbage record word at the consumer position (the data area
        // starts at the header size; both ends are at 16, past the first record) is reported.
        // So does a broadcast subscriber (there, the first record takes 24 bytes).
        shm_ring::Kind::Spsc | shm_ring::Kind::Broadcast => {
            assert_eq!(c.try_recv(&mut buf), Err(TryRecvError::Empty));
            let (data, first) = match K::KIND {
                shm_ring::Kind::Spsc => (shm_ring::layout::header_size(1), 16),
                _ => (shm_ring::layout::broadcast_header_size(4), 24),
            };
            region.write_at(data + first, &u64::MAX.to_le_bytes()).unwrap();
            match c.try_recv(&mut buf) {
                Err(TryRecvError::Corrupt(e)) => assert!(e.to_string().contains("record"), "{e}"),
                other => panic!("expected Corrupt, got {other:?}"),
            }
        }
        // The MPSC consumer reads record words, not the tail; producers do.
        shm_ring::Kind::Mpsc => {
            assert!(matches!(p.try_send(b"x"), Err(TrySendError::Corrupt { .. } | TrySendError::Full(_))))
        }
    }
    drop((p, c));
    let e = Consumer::<K>::open(region).unwrap_err();
    assert!(matches!(e, shm_ring::AttachError::Corrupt(_)), "{e:?}");
}

macro_rules! matrix {
    ($($test:ident),*) => {
        mod spsc_anonymous { use super::*; $(#[test] fn $test() { super::$test::<shm_ring::Spsc>(Anonymous) })* }
        mod spsc_file { use super::*; $(#[test] fn $test() { super::$test::<shm_ring::Spsc>(File::new()) })* }
        mod spsc_shm { use super::*; $(#[test] fn $test() { super::$test::<shm_ring::Spsc>(Shm::new()) })* }
        mod spsc_memfd { use super::*; $(#[test] fn $test() { super::$test::<shm_ring::Spsc>(Memfd) })* }
        mod mpsc_anonymous { use super::*; $(#[test] fn $test() { super::$test::<shm_ring::Mpsc>(Anonymous) })* }
        mod mpsc_file { use super::*; $(#[test] fn $test() { super::$test::<shm_ring::Mpsc>(File::new()) })* }
        mod mpsc_shm { use super::*; $(#[test] fn $test() { super::$test::<shm_ring::Mpsc>(Shm::new()) })* }
        mod mpsc_memfd { use super::*; $(#[test] fn $test() { super::$test::<shm_ring::Mpsc>(Memfd) })* }
        mod broadcast_anonymous { use super::*; $(#[test] fn $test() { super::$test::<shm_ring::Broadcast>(Anonymous) })* }
        mod broadcast_file { use super::*; $(#[test] fn $test() { super::$test::<shm_ring::Broadcast>(File::new()) })* }
        mod broadcast_shm { use super::*; $(#[test] fn $test() { super::$test::<shm_ring::Broadcast>(Shm::new()) })* }
        mod broadcast_memfd { use super::*; $(#[test] fn $test() { super::$test::<shm_ring::Broadcast>(Memfd) })* }
    };
}

matrix!(delivery, full_and_empty, too_large, close, producer_death, corrupt_positions);
