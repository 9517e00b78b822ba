//! A hostile or buggy peer writes garbage into a broadcast ring's header, subscriber table and
//! records while a producer sends and subscribers read (both policies). Every call must
//! return (under a watchdog, timed calls within a bound), never panic or read out of bounds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use shm_core::Region;
use shm_ring::broadcast::{Producer, Subscriber};
use shm_ring::layout::{broadcast_header_size, subscriber_slot};
use shm_ring::{AttachOptions, Policy, RecvTimeoutError, RingConfig};
use shm_testkit::{Rng, Watchdog};

const CAP: u64 = 1024;
const SUBS: u32 = 3;

/// Header words a peer can write: tail, next_seq, head, reserved, futex words, the producer
/// slot, and each subscriber's owner word and cursor.
fn hot_words() -> Vec<usize> {
    let mut w = vec![128, 136, 256, 272, 384, 388, 512, 516, 768];
    for i in 0..SUBS as usize {
        w.extend([subscriber_slot(i), subscriber_slot(i) + 16]);
    }
    w
}

fn corrupt_once(region: &Region, rng: &mut Rng, hot: &[usize]) {
    let data = broadcast_header_size(SUBS);
    match rng.below(4) {
        0 => {
            let off = hot[rng.below(hot.len() as u64) as usize];
            let v = rng.evil_value(CAP);
            let bytes =
                if off % 8 == 0 { v.to_le_bytes().to_vec() } else { (v as u32).to_le_bytes().to_vec() };
            region.write_at(off, &bytes).unwrap();
        }
        // A record word: evil length, any type, any lap tag.
        1 => {
            let idx = rng.below(CAP / 8) as usize * 8;
            let len = rng.evil_value(CAP) as u32;
            let kind = [0u64, 1, 2, 3, 4, 0xff][rng.below(6) as usize];
            let tag = rng.below(4);
            let word = len as u64 | tag << 32 | kind << 56;
            region.write_at(data + idx, &word.to_le_bytes()).unwrap();
        }
        // A sequence number word.
        2 => {
            let idx = rng.below(CAP / 8) as usize * 8;
            let v = if rng.below(2) == 0 { rng.next() } else { rng.evil_value(CAP) };
            region.write_at(data + idx, &v.to_le_bytes()).unwrap();
        }
        _ => {
            let idx = rng.below(CAP) as usize;
            region.write_at(data + idx, &[rng.next() as u8]).unwrap();
        }
    }
}

fn read_some(s: &mut Subscriber, rng: &mut Rng) {
    let mut buf = Vec::new();
    let mut small = [0u8; 16];
    for _ in 0..20 {
        let r = match rng.below(5) {
            0 => s.try_recv(&mut buf).map(|_| ()).map_err(RecvTimeoutError::from),
            1 => s.try_recv_into(&mut small).map(|_| ()).map_err(RecvTimeoutError::from),
            2 => s.try_read().map(|g| assert_eq!(g.to_vec().len(), g.len())).map_err(RecvTimeoutError::from),
            3 => s.recv_batch(4, |m| assert!(m.len() <= 1024)).map(|_| ()).map_err(RecvTimeoutError::from),
            _ => {
                let t = Instant::now();
                let r = s.recv_timeout(&mut buf, Duration::from_millis(1)).map(|_| ());
                assert!(t.elapsed() < Duration::from_secs(2), "a 1 ms receive took {:?}", t.elapsed());
                r
            }
        };
        if let Err(RecvTimeoutError::Timeout) = r {
            break;
        }
    }
    let _ = s.len_bytes();
}

fn send_some(p: &mut Producer, rng: &mut Rng) {
    for _ in 0..20 {
        let len = rng.below(p.max_message() as u64 + 1) as usize;
        match rng.below(3) {
            0 => {
                let _ = p.try_send(vec![7u8; len]);
            }
            1 => {
                let t = Instant::now();
                let _ = p.send_timeout(vec![7u8; len], Duration::from_millis(1));
                assert!(t.elapsed() < Duration::from_secs(2), "a 1 ms send took {:?}", t.elapsed());
            }
            _ => {
                if let Ok(mut g) = p.try_reserve(len) {
                    g.write_at(0, &vec![1u8; len]);
                    g.commit();
                }
            }
        }
    }
    let _ = p.len_bytes();
}

/// Thousands of random hostile writes against a producer and three subscribers of both
/// policies; ends that fail to attach after the damage are skipped. Nothing panics or hangs.
#[test]
fn random_hostile_writes_never_panic_or_hang() {
    let dog = Watchdog::start(Duration::from_secs(30));
    let hot = hot_words();
    let mut rng = Rng(0xB0AD_CA57);
    for round in 0..150u64 {
        let policy = if round % 2 == 0 { Policy::Block } else { Policy::Overwrite };
        let config = RingConfig::broadcast(CAP, SUBS).policy(policy);
        let region = Arc::new(Region::anonymous(config.region_len()).unwrap());
        let mut p = Producer::create(region.clone(), &config).unwrap();
        let mut subs: Vec<Subscriber> =
            (0..SUBS).map(|_| Subscriber::open(region.clone()).unwrap()).collect();
        for step in 0..20 {
            dog.feed(|| format!("round {round} ({policy}) step {step}"));
            send_some(&mut p, &mut rng);
            for s in &mut subs {
                read_some(s, &mut rng);
            }
            for _ in 0..1 + rng.below(3) {
                corrupt_once(&region, &mut rng, &hot);
            }
        }
        // Fresh ends on the damaged ring: attach is refused or works; either way it returns.
        drop(subs);
        dog.feed(|| format!("round {round}: attaching to the damaged ring"));
        let opts = AttachOptions::new().history(rng.below(100)).init_timeout(Duration::ZERO);
        if let Ok(mut s) = Subscriber::open_with(region.clone(), &opts) {
            read_some(&mut s, &mut rng);
        }
        drop(p);
        if let Ok(mut p) = Producer::open_with(region.clone(), &opts) {
            send_some(&mut p, &mut rng);
        }
    }
}

/// A subscriber cursor (or head, or reserved) at u64::MAX and other extremes: the producer
/// neither panics on the arithmetic nor waits forever for a subscriber that claims to be ahead.
#[test]
fn extreme_positions_in_the_header_are_survived() {
    let dog = Watchdog::start(Duration::from_secs(30));
    for policy in [Policy::Block, Policy::Overwrite] {
        for off in [subscriber_slot(0) + 16, 256, 272, 128, 136] {
            for v in [u64::MAX, u64::MAX - 7, 1 << 62, (1 << 62) - 8, 8, 0] {
                dog.feed(|| format!("{policy}: {v:#x} at {off}"));
                let config = RingConfig::broadcast(CAP, SUBS).policy(policy);
                let region = Arc::new(Region::anonymous(config.region_len()).unwrap());
                let mut p = Producer::create(region.clone(), &config).unwrap();
                let mut s = Subscriber::open(region.clone()).unwrap();
                let mut rng = Rng(v ^ off as u64);
                send_some(&mut p, &mut rng);
                region.write_at(off, &v.to_le_bytes()).unwrap();
                send_some(&mut p, &mut rng);
                read_some(&mut s, &mut rng);
                send_some(&mut p, &mut rng);
            }
        }
    }
}
