//! The MPSC API in one process: several producers (clones and separately attached ends),
//! wrap and padding, full, aborted grants, closed and abandoned claims, attach errors.

use std::sync::Arc;
use std::time::Duration;

use shm_core::Region;
use shm_ring::mpsc::{Consumer, Producer};
use shm_ring::{AttachError, RecvTimeoutError, RingConfig, TryRecvError, TrySendError};
use shm_testkit::pattern;

fn ring(capacity: u64, producers: u32) -> (Arc<Region>, Consumer) {
    let config = RingConfig::mpsc(capacity, producers);
    let region = Arc::new(Region::anonymous(config.region_len()).unwrap());
    let c = Consumer::create(region.clone(), &config).unwrap();
    (region, c)
}

#[test]
fn messages_from_several_producers_across_many_wraps() {
    let (region, mut c) = ring(512, 3);
    let mut ps: Vec<Producer> = (0..3).map(|_| Producer::open(region.clone()).unwrap()).collect();
    assert_eq!(ps.iter().map(|p| p.slot()).collect::<Vec<_>>(), vec![0, 1, 2]);
    let mut buf = Vec::new();
    for seq in 0..20_000u64 {
        let who = (seq % 3) as usize;
        let msg = pattern::message(who as u64, seq, 0, 200);
        ps[who].try_send(&msg).unwrap();
        c.try_recv(&mut buf).unwrap();
        pattern::check(who as u64, seq, 0, 200, &buf).unwrap();
    }
    assert_eq!(c.try_recv(&mut buf), Err(TryRecvError::Empty));
}

#[test]
fn full_then_room_again() {
    let (region, mut c) = ring(256, 2);
    let mut p = Producer::open(region).unwrap();
    let mut n = 0;
    while p.try_send([7u8; 24]).is_ok() {
        n += 1;
    }
    assert_eq!(n, 8, "eight 32-byte records fill 256 bytes");
    assert!(matches!(p.try_send(vec![1u8; 24]), Err(TrySendError::Full(v)) if v == vec![1u8; 24]));
    let mut buf = Vec::new();
    for _ in 0..8 {
        c.try_recv(&mut buf).unwrap();
    }
    c.flush();
    p.try_send([8u8; 24]).unwrap();
    c.try_recv(&mut buf).unwrap();
    assert_eq!(buf, [8u8; 24]);
}

#[test]
fn aborted_grant_is_skipped_and_commit_order_may_differ_from_claim_order() {
    let (region, mut c) = ring(1024, 2);
    let mut a = Producer::open(region.clone()).unwrap();
    let mut b = Producer::open(region).unwrap();
    let mut ga = a.try_reserve(5).unwrap();
    let mut gb = b.try_reserve(5).unwrap();
    gb.copy_from_slice(b"bbbbb");
    gb.commit(); // claimed second, committed first
    assert_eq!(c.try_read().unwrap_err(), TryRecvError::Empty, "the consumer waits for the first claim");
    ga.copy_from_slice(b"aaaaa");
    ga.commit();
    assert_eq!(c.try_read().unwrap().to_vec(), b"aaaaa");
    assert_eq!(c.try_read().unwrap().to_vec(), b"bbbbb");
    {
        let mut g = a.try_reserve(3).unwrap();
        g.copy_from_slice(b"xxx");
    } // dropped: skipped
    a.try_send(b"after").unwrap();
    assert_eq!(c.try_read().unwrap().to_vec(), b"after");
}

/// The zero-copy calls for a trusted peer still lend the bytes in place.
#[test]
fn trusted_calls_borrow_in_place() {
    let (region, mut c) = ring(1024, 2);
    let mut p = Producer::open(region).unwrap();
    let mut g = p.try_reserve(5).unwrap();
    // SAFETY: every end is in this test, which follows the protocol (as for the others below).
    unsafe { g.as_mut_slice_unchecked() }.copy_from_slice(b"hello");
    g.commit();
    {
        let guard = c.try_read().unwrap();
        // SAFETY: as above.
        assert_eq!(unsafe { guard.as_slice_unchecked() }, b"hello");
        let mut part = [0u8; 3];
        guard.read_at(1, &mut part);
        assert_eq!(&part, b"ell");
    }
    for i in 0..3u8 {
        p.try_send([i; 9]).unwrap();
    }
    let mut got = Vec::new();
    // SAFETY: as above.
    assert_eq!(unsafe { c.recv_batch_unchecked(2, |m| got.push(m.to_vec())) }.unwrap(), 2);
    assert_eq!(c.recv_batch(8, |m| got.push(m.to_vec())).unwrap(), 1);
    assert_eq!(got, vec![vec![0u8; 9], vec![1; 9], vec![2; 9]]);
}

#[test]
fn clones_share_a_slot_and_threads_send_concurrently() {
    let (region, mut c) = ring(4096, 2);
    let p = Producer::open(region).unwrap();
    let handles: Vec<_> = (0..4u64)
        .map(|t| {
            let mut p = p.clone();
            std::thread::spawn(move || {
                for seq in 0..20_000u64 {
                    // 16 bytes at least, so each message carries its stream id (bytes 8..16).
                    p.send_timeout(pattern::message(t, seq, 16, 64), Duration::from_secs(20)).unwrap();
                }
            })
        })
        .collect();
    drop(p);
    let mut next = [0u64; 4];
    let mut buf = Vec::new();
    while next.iter().sum::<u64>() < 80_000 {
        c.recv_timeout(&mut buf, Duration::from_secs(20)).unwrap();
        let t = u64::from_le_bytes(buf[8..16].try_into().unwrap());
        assert!(t < 4, "unknown stream {t}");
        pattern::check(t, next[t as usize], 16, 64, &buf).unwrap();
        next[t as usize] += 1;
    }
    for h in handles {
        h.join().unwrap();
    }
    // Every clone dropped: the slot is closed and the consumer is disconnected.
    assert_eq!(c.recv_timeout(&mut buf, Duration::from_secs(5)), Err(RecvTimeoutError::Disconnected));
}

#[test]
fn no_free_slot() {
    let (region, _c) = ring(1024, 2);
    let _a = Producer::open(region.clone()).unwrap();
    let _b = Producer::open(region.clone()).unwrap();
    let e = Producer::open(region.clone()).unwrap_err();
    assert!(matches!(e, AttachError::NoFreeSlot { slots: 2 }), "{e:?}");
    drop(_a);
    assert_eq!(Producer::open(region).unwrap().slot(), 0, "a closed slot is reused");
}

#[test]
fn claim_of_a_closed_producer_is_skipped_even_without_tail_advance() {
    let (region, mut c) = ring(1024, 2);
    let mut a = Producer::open(region.clone()).unwrap();
    let mut b = Producer::open(region).unwrap();
    a.try_send(b"one").unwrap();
    // `b` claims by the record word only, as if killed before advancing the tail, then closes.
    assert!(b.claim_without_advancing(40));
    drop(b);
    a.try_send(b"two").unwrap(); // `a` helps the tail past b's claim first
    let mut buf = Vec::new();
    c.try_recv(&mut buf).unwrap();
    assert_eq!(buf, b"one");
    c.try_recv(&mut buf).unwrap();
    assert_eq!(buf, b"two", "b's abandoned claim was skipped");
}

/// The consumer leaves the tail alone after messages (their producers moved it before they
/// committed), but moves it past a claim it skips: nobody else may ever do so.
#[test]
fn the_consumer_moves_the_tail_past_an_abandoned_claim_it_skips() {
    let (region, mut c) = ring(1024, 2);
    let mut a = Producer::open(region.clone()).unwrap();
    let mut b = Producer::open(region).unwrap();
    let mut buf = Vec::new();
    a.try_send(b"one").unwrap();
    c.try_recv(&mut buf).unwrap(); // a hand-back before the claim
    assert!(b.claim_without_advancing(40));
    drop(b);
    assert_eq!(c.try_recv(&mut buf), Err(TryRecvError::Empty), "b's claim skipped; a is still there");
    a.try_send(b"two").expect("a claims after the skipped claim, not behind the consumer");
    c.try_recv(&mut buf).unwrap();
    assert_eq!(buf, b"two");
}

/// The same for padding: it is placed by its claim and the tail moved after, so a producer
/// killed in between leaves the tail before it.
#[test]
fn the_consumer_moves_the_tail_past_padding_left_behind_it() {
    let (region, mut c) = ring(256, 1);
    let mut p = Producer::open(region).unwrap();
    let mut buf = Vec::new();
    for _ in 0..5 {
        p.try_send([7u8; 40]).unwrap(); // 5 records of 48 bytes: 16 bytes left before the end
        c.try_recv(&mut buf).unwrap();
    }
    assert!(p.pad_without_advancing(40), "a 48-byte record needs padding at 240");
    assert_eq!(c.try_recv(&mut buf), Err(TryRecvError::Empty), "the padding is stepped over");
    p.try_send([8u8; 40]).expect("the producer claims after the padding, not behind the consumer");
    c.try_recv(&mut buf).unwrap();
    assert_eq!(buf, [8u8; 40]);
}

/// A hostile peer's message word at the tail, which no producer claimed: the consumer takes
/// it and hands it back with the tail left behind. Producers then refuse the ring as corrupt
/// instead of failing every claim (and a blocking send waiting) for ever.
#[test]
fn a_message_written_past_the_tail_makes_producers_report_corruption() {
    use shm_ring::SendTimeoutError;
    let (region, mut c) = ring(1024, 1);
    let mut p = Producer::open(region.clone()).unwrap();
    let mut buf = Vec::new();
    p.try_send(b"one").unwrap();
    c.try_recv(&mut buf).unwrap();
    // At the tail (16), a message word nobody claimed: type 1 (message) in the top byte,
    // length 8 in the low 32 bits.
    let data = shm_ring::layout::header_size(1);
    region.write_at(data + 16, &(8u64 | 1 << 56).to_le_bytes()).unwrap();
    assert_eq!(c.try_recv(&mut buf), Ok(8));
    match p.send_timeout(b"two", std::time::Duration::from_secs(5)) {
        Err(SendTimeoutError::Corrupt { error, .. }) => {
            assert_eq!(error.what, "producer position", "{error}")
        }
        other => panic!("expected a corrupt ring, got {other:?}"),
    }
}

#[test]
fn consumer_helps_a_lone_abandoned_claim() {
    let (region, mut c) = ring(1024, 1);
    let mut b = Producer::open(region).unwrap();
    assert!(b.claim_without_advancing(8));
    drop(b);
    assert_eq!(c.try_recv(&mut Vec::new()), Err(TryRecvError::Disconnected));
}

#[test]
fn batch_and_pod() {
    let (region, mut c) = ring(4096, 1);
    let mut p = Producer::open(region).unwrap();
    for i in 0..10u64 {
        p.try_send_pod(i).unwrap();
    }
    assert_eq!(c.try_recv_pod::<u64>().unwrap(), 0);
    let mut sum = 0;
    assert_eq!(c.recv_batch(100, |m| sum += u64::from_le_bytes(m.try_into().unwrap())).unwrap(), 9);
    assert_eq!(sum, 45);
    p.try_send(b"odd").unwrap();
    assert_eq!(c.try_recv_pod::<u64>(), Err(TryRecvError::SizeMismatch { found: 3, expected: 8 }));
}

#[test]
fn spsc_and_mpsc_refuse_each_other() {
    let (region, _c) = ring(1024, 2);
    let e = shm_ring::spsc::Producer::open(region).unwrap_err();
    assert!(matches!(e, AttachError::WrongKind { found: 2, .. }), "{e:?}");
}
