//! The SPSC API on one region shared by both ends in one process: exact behaviour at the edges
//! (wrap, full, empty, sizes, close, attach errors). Cross-process behaviour is in
//! `spsc_processes.rs`.

use std::sync::Arc;
use std::time::Duration;

use shm_core::{OpenOptions, Region};
use shm_ring::spsc::{Consumer, Producer};
use shm_ring::{
    AttachError, AttachOptions, InitError, Kind, RecvTimeoutError, RingConfig, SendTimeoutError,
    TryRecvError, TrySendError,
};

fn pair(capacity: u64) -> (Producer, Consumer) {
    let config = RingConfig::spsc(capacity);
    let region = Arc::new(Region::anonymous(config.region_len()).unwrap());
    let p = Producer::create(region.clone(), &config).unwrap();
    let c = Consumer::open(region).unwrap();
    (p, c)
}

#[test]
fn send_and_receive_across_many_wraps() {
    let (mut p, mut c) = pair(256);
    assert_eq!((p.capacity(), p.max_message()), (256, 120));
    let mut buf = Vec::new();
    for i in 0..10_000u32 {
        let len = (i as usize * 7) % 121;
        let msg: Vec<u8> = (0..len).map(|j| (i as usize + j) as u8).collect();
        p.try_send(&msg).unwrap();
        assert_eq!(c.try_recv(&mut buf).unwrap(), len);
        assert_eq!(buf, msg, "message {i}");
    }
    assert_eq!(c.try_recv(&mut buf), Err(TryRecvError::Empty));
    assert!(c.is_empty() && p.is_empty());
}

#[test]
fn full_hands_the_message_back_and_frees_on_receive() {
    let (mut p, mut c) = pair(128);
    // 40-byte payloads take 48-byte records: two fit in 128 bytes, a third does not.
    p.try_send([1u8; 40]).unwrap();
    p.try_send([2u8; 40]).unwrap();
    assert_eq!(p.len_bytes(), 96);
    match p.try_send(vec![3u8; 40]) {
        Err(TrySendError::Full(v)) => assert_eq!(v, vec![3u8; 40]),
        other => panic!("expected Full, got {other:?}"),
    }
    let mut buf = Vec::new();
    c.try_recv(&mut buf).unwrap();
    assert_eq!(buf, [1u8; 40]);
    // 80 bytes free: the next record needs a 32-byte padding record at the wrap, then 48.
    p.try_send([3u8; 40]).unwrap();
    assert_eq!(p.len_bytes(), 128);
    assert!(matches!(p.try_send([4u8; 0]), Err(TrySendError::Full(_))));
    c.try_recv(&mut buf).unwrap();
    assert_eq!(buf, [2u8; 40]);
    c.try_recv(&mut buf).unwrap();
    assert_eq!(buf, [3u8; 40], "the padding record was skipped");
    assert_eq!(p.len_bytes(), 0);
}

#[test]
fn too_large_and_empty_messages() {
    let (mut p, mut c) = pair(256);
    match p.try_send(vec![0u8; 121]) {
        Err(e @ TrySendError::TooLarge { len: 121, max: 120, .. }) => {
            assert_eq!(e.to_string(), "message of 121 bytes exceeds the ring's max message size 120");
            assert_eq!(e.into_inner().len(), 121);
        }
        other => panic!("{other:?}"),
    }
    p.try_send(b"").unwrap();
    let mut buf = vec![9];
    assert_eq!(c.try_recv(&mut buf), Ok(0));
    assert!(buf.is_empty());
}

#[test]
fn zero_copy_reserve_commit_abort_and_guards() {
    let (mut p, mut c) = pair(1024);
    {
        let mut g = p.try_reserve(5).unwrap();
        g.copy_from_slice(b"abort");
        // dropped: nothing sent
    }
    assert!(c.try_read().is_err());
    let mut g = p.try_reserve(10).unwrap();
    g.write_at(0, b"hello");
    g.commit_len(5);
    let mut g = p.try_reserve(3).unwrap();
    g.copy_from_slice(b"abc");
    g.commit();
    {
        let guard = c.try_read().unwrap();
        assert_eq!(guard.to_vec(), b"hello");
    }
    assert_eq!(c.try_read().unwrap().to_vec(), b"abc");
    assert_eq!(c.try_read().unwrap_err(), TryRecvError::Empty);
}

#[test]
fn guard_and_grant_copies_at_any_offset() {
    let (mut p, mut c) = pair(1024);
    let msg: Vec<u8> = (0..37u8).collect();
    let mut g = p.try_reserve(msg.len()).unwrap();
    assert_eq!((g.len(), g.is_empty()), (37, false));
    g.write_at(30, &msg[30..]); // unaligned start, partial last word
    g.write_at(0, &msg[..5]);
    g.write_at(5, &msg[5..30]);
    g.commit();
    let guard = c.try_read().unwrap();
    assert_eq!((guard.len(), guard.is_empty()), (37, false));
    assert_eq!(guard.to_vec(), msg);
    let mut part = [0u8; 11];
    guard.read_at(3, &mut part);
    assert_eq!(part[..], msg[3..14]);
    let mut short = [0u8; 10];
    assert_eq!(guard.copy_to(&mut short), 10, "copy_to stops at the end of dst");
    assert_eq!(short[..], msg[..10]);
    let mut long = [0u8; 64];
    assert_eq!(guard.copy_to(&mut long), 37);
    assert_eq!(long[..37], msg[..]);
    assert!(!guard.as_ptr().is_null());
}

#[test]
#[should_panic(expected = "beyond the 4-byte payload")]
fn guard_read_beyond_the_payload_panics() {
    let (mut p, mut c) = pair(1024);
    p.try_send(b"four").unwrap();
    c.try_read().unwrap().read_at(2, &mut [0u8; 3]);
}

#[test]
#[should_panic(expected = "beyond the 4 reserved")]
fn grant_write_beyond_the_reservation_panics() {
    let (mut p, _c) = pair(1024);
    p.try_reserve(4).unwrap().write_at(usize::MAX, b"x");
}

#[test]
#[should_panic(expected = "lengths differ")]
fn grant_copy_from_slice_of_another_length_panics() {
    let (mut p, _c) = pair(1024);
    p.try_reserve(4).unwrap().copy_from_slice(b"five!");
}

/// The zero-copy calls for a trusted peer still lend the bytes in place.
#[test]
fn trusted_calls_borrow_in_place() {
    let (mut p, mut c) = pair(1024);
    let mut g = p.try_reserve(5).unwrap();
    // SAFETY: both ends are in this test, which follows the protocol (as for the others below).
    unsafe { g.as_mut_slice_unchecked() }.copy_from_slice(b"hello");
    let at = g.as_mut_ptr();
    g.commit();
    let guard = c.try_read().unwrap();
    // SAFETY: as above.
    let bytes = unsafe { guard.as_slice_unchecked() };
    assert_eq!(bytes, b"hello");
    assert_eq!(bytes.as_ptr(), at as *const u8, "the same bytes in the ring, not a copy");
    drop(guard);
    let mut b = p.write_batch();
    for i in 0..3u8 {
        // SAFETY: as above.
        unsafe { b.push_unchecked(8, |m| m.fill(i)) }.unwrap();
    }
    assert_eq!(b.commit(), 3);
    let mut got = Vec::new();
    // SAFETY: as above.
    let n = unsafe { c.recv_batch_unchecked(usize::MAX, |m| got.push(m.to_vec())) }.unwrap();
    assert_eq!(n, 3);
    assert_eq!(got, vec![vec![0u8; 8], vec![1; 8], vec![2; 8]]);
}

#[test]
fn guard_not_dropped_keeps_the_message() {
    let (mut p, mut c) = pair(1024);
    p.try_send(b"keep").unwrap();
    let guard = c.try_read().unwrap();
    assert_eq!(guard.to_vec(), b"keep");
    std::mem::forget(guard); // as if the reader crashed while holding it
                             // Nothing was released: the same message is read again.
    assert_eq!(c.try_read().unwrap().to_vec(), b"keep");
}

#[test]
fn batch_receive_releases_once() {
    let (mut p, mut c) = pair(4096);
    for i in 0..50u8 {
        p.try_send([i; 17]).unwrap();
    }
    let mut seen = Vec::new();
    assert_eq!(c.recv_batch(30, |m| seen.push(m[0])).unwrap(), 30);
    assert_eq!(c.recv_batch(usize::MAX, |m| seen.push(m[0])).unwrap(), 20);
    assert_eq!(seen, (0..50).collect::<Vec<u8>>());
    assert_eq!(c.recv_batch(10, |_| ()), Err(TryRecvError::Empty));
    assert_eq!(p.len_bytes(), 0, "the batch released everything");
}

#[test]
fn pod_messages_and_size_mismatch() {
    #[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
    #[repr(C)]
    struct Tick {
        seq: u64,
        price: f64,
        qty: u32,
        side: u32,
    }
    let (mut p, mut c) = pair(1024);
    let t = Tick { seq: 7, price: 101.25, qty: 3, side: 1 };
    p.try_send_pod(t).unwrap();
    assert_eq!(c.try_recv_pod::<Tick>().unwrap(), t);
    p.try_send(b"short").unwrap();
    assert_eq!(c.try_recv_pod::<Tick>(), Err(TryRecvError::SizeMismatch { found: 5, expected: 24 }));
    // The mismatched message stayed and can be read raw.
    let mut buf = Vec::new();
    c.try_recv(&mut buf).unwrap();
    assert_eq!(buf, b"short");
}

#[test]
fn recv_into_a_small_buffer_keeps_the_message() {
    let (mut p, mut c) = pair(1024);
    p.try_send(b"0123456789").unwrap();
    let mut small = [0u8; 4];
    assert_eq!(c.try_recv_into(&mut small), Err(TryRecvError::BufferTooSmall { need: 10, have: 4 }));
    let mut big = [0u8; 16];
    assert_eq!(c.try_recv_into(&mut big), Ok(10));
    assert_eq!(&big[..10], b"0123456789");
}

#[test]
fn close_producer_consumer_drains_then_disconnected() {
    let (mut p, mut c) = pair(1024);
    p.try_send(b"one").unwrap();
    p.try_send(b"two").unwrap();
    drop(p);
    let mut buf = Vec::new();
    c.try_recv(&mut buf).unwrap();
    assert_eq!(buf, b"one");
    assert_eq!(c.recv_timeout(&mut buf, Duration::from_secs(5)), Ok(3));
    assert_eq!(buf, b"two");
    assert_eq!(c.try_recv(&mut buf), Err(TryRecvError::Disconnected));
    assert_eq!(c.recv_timeout(&mut buf, Duration::from_secs(5)), Err(RecvTimeoutError::Disconnected));
}

#[test]
fn close_consumer_producer_gets_message_back() {
    let (mut p, c) = pair(1024);
    drop(c);
    match p.try_send(b"lost?".to_vec()) {
        Err(TrySendError::Disconnected(m)) => assert_eq!(m, b"lost?"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(p.send_timeout(b"x", Duration::from_secs(5)), Err(SendTimeoutError::Disconnected(_))));
}

#[test]
fn timeouts() {
    let (mut p, mut c) = pair(128);
    let mut buf = Vec::new();
    assert_eq!(c.recv_timeout(&mut buf, Duration::from_millis(20)), Err(RecvTimeoutError::Timeout));
    p.try_send([0u8; 56]).unwrap();
    p.try_send([0u8; 56]).unwrap();
    assert!(matches!(
        p.send_timeout([0u8; 56], Duration::from_millis(20)),
        Err(SendTimeoutError::Timeout(_))
    ));
}

#[test]
fn blocking_send_and_receive_between_threads() {
    let (mut p, mut c) = pair(256);
    let t = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let mut sum = 0u64;
        for _ in 0..100_000 {
            c.recv(&mut buf).unwrap();
            sum += u64::from_le_bytes(buf[..8].try_into().unwrap());
        }
        sum
    });
    for i in 0..100_000u64 {
        p.send(i.to_le_bytes()).unwrap();
    }
    assert_eq!(t.join().unwrap(), (0..100_000u64).sum());
}

#[test]
fn second_end_of_the_same_kind_is_refused() {
    let config = RingConfig::spsc(1024);
    let region = Arc::new(Region::anonymous(config.region_len()).unwrap());
    let _p = Producer::create(region.clone(), &config).unwrap();
    let e = Producer::open(region.clone()).unwrap_err();
    assert!(matches!(e, AttachError::AlreadyAttached { pid, .. } if pid == std::process::id()), "{e:?}");
    assert!(e.to_string().starts_with("producer end is already attached by process"), "{e}");
    let c = Consumer::open(region.clone()).unwrap();
    assert!(matches!(Consumer::open(region.clone()), Err(AttachError::AlreadyAttached { .. })));
    drop(c);
    // A closed end can be attached again.
    Consumer::open(region).unwrap();
}

#[test]
fn init_errors_name_the_values() {
    let region = Region::anonymous(4096).unwrap();
    let e = shm_ring::init(&region, &RingConfig::spsc(1000)).unwrap_err();
    assert!(matches!(e, InitError::BadCapacity { found: 1000 }), "{e:?}");
    let e = shm_ring::init(&region, &RingConfig::spsc(1024).max_message(600)).unwrap_err();
    assert!(matches!(e, InitError::BadMaxMessage { found: 600, limit: 504 }), "{e:?}");
    let e = shm_ring::init(&region, &RingConfig::spsc(1 << 20)).unwrap_err();
    assert!(matches!(e, InitError::RegionTooSmall { need, have: 4096 } if need == 896 + (1 << 20)), "{e:?}");
    assert!(e.to_string().contains("need 1049472"), "{e}");
    shm_ring::init(&region, &RingConfig::spsc(1024)).unwrap();
    let e = shm_ring::init(&region, &RingConfig::spsc(1024)).unwrap_err();
    assert!(matches!(e, InitError::AlreadyInitialized { state: 2, .. }), "{e:?}");
}

#[test]
fn attach_errors_name_found_and_expected() {
    let config = RingConfig::spsc(1024);
    let fresh = || Arc::new(Region::anonymous(config.region_len()).unwrap());

    // Nobody initialised it: NotInitialized after the bounded wait.
    let opts = AttachOptions::new().init_timeout(Duration::from_millis(30));
    let e = Consumer::open_with(fresh(), &opts).unwrap_err();
    assert!(matches!(e, AttachError::NotInitialized { state: 0, waited_ms } if waited_ms >= 30), "{e:?}");

    // Wrong magic, version, kind.
    let r = fresh();
    shm_ring::init(&r, &config).unwrap();
    r.write_at(0, b"NOTARING").unwrap();
    let e = Consumer::open(r).unwrap_err();
    assert!(matches!(e, AttachError::BadMagic { .. }), "{e:?}");
    assert!(e.to_string().contains("not a shm-ring region"));

    let r = fresh();
    shm_ring::init(&r, &config).unwrap();
    r.write_at(8, &99u32.to_le_bytes()).unwrap();
    let e = Consumer::open(r).unwrap_err();
    assert!(matches!(e, AttachError::VersionMismatch { found: 99, expected: 3 }), "{e:?}");

    // Rings of layout versions 1 (before the keyed free words and the hand-back intent) and 2
    // (before the SPSC consumer waited on record words), for both ends.
    for old in [1u32, 2] {
        let r = fresh();
        shm_ring::init(&r, &config).unwrap();
        r.write_at(8, &old.to_le_bytes()).unwrap();
        let e = Consumer::open(r.clone()).unwrap_err();
        assert!(matches!(e, AttachError::VersionMismatch { found, expected: 3 } if found == old), "{e:?}");
        let text = e.to_string();
        assert!(text.contains(&old.to_string()) && text.contains('3'), "{text}");
        let e = Producer::open(r).unwrap_err();
        assert!(matches!(e, AttachError::VersionMismatch { found, expected: 3 } if found == old), "{e:?}");
    }

    let r = fresh();
    shm_ring::init(&r, &config).unwrap();
    r.write_at(16, &2u32.to_le_bytes()).unwrap();
    let e = Consumer::open(r).unwrap_err();
    assert!(matches!(e, AttachError::WrongKind { found: 2, expected: Kind::Spsc }), "{e:?}");

    // Capacity claiming more than the region holds.
    let r = fresh();
    shm_ring::init(&r, &config).unwrap();
    r.write_at(24, &(1u64 << 30).to_le_bytes()).unwrap();
    let e = Consumer::open(r).unwrap_err();
    assert!(matches!(e, AttachError::RegionTooSmall { .. }), "{e:?}");

    // Region smaller than a header.
    let e = Consumer::open(Region::anonymous(100).unwrap()).unwrap_err();
    assert!(matches!(e, AttachError::RegionTooSmall { need: 768, have: 100 }), "{e:?}");
}

#[test]
fn read_only_region_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ring");
    let config = RingConfig::spsc(1024);
    shm_ring::init(&Region::create_file(&path, config.region_len()).unwrap(), &config).unwrap();
    let ro = OpenOptions::new().read_only().open_file(&path).unwrap();
    assert!(matches!(Consumer::open(ro), Err(AttachError::NotWritable)));
}

#[test]
fn send_batch_publishes_what_fits() {
    let (mut p, mut c) = pair(256);
    let msgs: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 24]).collect();
    let mut it = msgs.iter().peekable();
    // 32-byte records: 8 fit in 256 bytes.
    assert_eq!(p.send_batch(&mut it).unwrap(), 8);
    assert!(matches!(p.send_batch(&mut it), Err(TrySendError::Full(()))));
    let mut got = Vec::new();
    c.recv_batch(usize::MAX, |m| got.push(m[0])).unwrap();
    assert_eq!(p.send_batch(&mut it).unwrap(), 2);
    assert!(it.peek().is_none());
    c.recv_batch(usize::MAX, |m| got.push(m[0])).unwrap();
    assert_eq!(got, (0..10).collect::<Vec<u8>>());
    let big = [vec![0u8; 200]];
    assert!(matches!(p.send_batch(&mut big.iter().peekable()), Err(TrySendError::TooLarge { .. })));
}

#[test]
fn producer_arriving_after_a_consumer_left_can_send_for_the_next_one() {
    let config = RingConfig::spsc(1024);
    let region = Arc::new(Region::anonymous(config.region_len()).unwrap());
    shm_ring::init(&region, &config).unwrap();
    drop(Consumer::open(region.clone()).unwrap()); // a consumer came and went
    let mut p = Producer::open(region.clone()).unwrap();
    p.try_send(b"for whoever comes next").unwrap();
    let mut c = Consumer::open(region).unwrap();
    let mut buf = Vec::new();
    c.try_recv(&mut buf).unwrap();
    assert_eq!(buf, b"for whoever comes next");
    drop(c); // this one closes while the producer is attached: now it is disconnected
    assert!(matches!(p.try_send(b"x"), Err(TrySendError::Disconnected(_))));
}

#[test]
fn write_batch_publishes_on_commit_only() {
    let (mut p, mut c) = pair(256);
    {
        let mut b = p.write_batch();
        b.push(3, |m| m.copy_from_slice(b"abc")).unwrap();
        assert_eq!(b.len(), 1);
        // dropped: nothing published
    }
    assert_eq!(c.try_read().unwrap_err(), TryRecvError::Empty);
    let mut b = p.write_batch();
    for i in 0..8u8 {
        b.push(24, |m| m.fill(i)).unwrap();
    }
    assert!(matches!(b.push(24, |_| ()), Err(TrySendError::Full(()))));
    assert_eq!(c.try_read().unwrap_err(), TryRecvError::Empty, "not visible before commit");
    assert_eq!(b.commit(), 8);
    let mut got = Vec::new();
    assert_eq!(c.recv_batch(usize::MAX, |m| got.push(m[0])).unwrap(), 8);
    assert_eq!(got, (0..8).collect::<Vec<u8>>());
}
