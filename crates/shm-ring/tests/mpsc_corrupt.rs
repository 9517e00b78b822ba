//! A hostile or buggy peer of an MPSC ring writes garbage into the header and the records: the
//! consumer (hostile producers) and the producers (a hostile consumer) must return errors —
//! never panic, never read or write out of bounds, and every call returns: `try_*` at once,
//! timed calls within their timeout. Every call runs under a watchdog.

use std::sync::Arc;
use std::time::{Duration, Instant};

use shm_core::Region;
use shm_ring::mpsc::{Consumer, Producer};
use shm_ring::{spsc, RecvTimeoutError, RingConfig, SendTimeoutError, TryRecvError};
use shm_testkit::{fork, pattern, Rng, Watchdog};

const CAP: u64 = 1024;
/// Data area offset for 4 producer slots (see `shm_ring::layout`).
const HEADER: usize = 896;
/// Header words a peer can write: tail, head, hand_back, futex words, consumer slot, producer
/// slots (owner and generation).
const HOT_WORDS: [usize; 16] =
    [128, 256, 264, 384, 388, 512, 516, 640, 648, 768, 776, 784, 792, 800, 808, 824];
const LIMIT: Duration = Duration::from_secs(20);
/// How much longer than its timeout a timed call may take (scheduling on a loaded 2-core CI).
const SLACK: Duration = Duration::from_millis(500);

fn evil_value(rng: &mut Rng) -> u64 {
    rng.evil_value(CAP)
}

fn write_u64(region: &Region, off: usize, v: u64) {
    region.write_at(off, &v.to_le_bytes()).unwrap();
}

fn read_u64(region: &Region, off: usize) -> u64 {
    let mut b = [0u8; 8];
    region.read_at(off, &mut b).unwrap();
    u64::from_le_bytes(b)
}

fn corrupt_once(region: &Region, rng: &mut Rng) {
    match rng.below(5) {
        0 => {
            let off = HOT_WORDS[rng.below(HOT_WORDS.len() as u64) as usize];
            let v = evil_value(rng);
            if off % 8 == 0 {
                write_u64(region, off, v);
            } else {
                region.write_at(off, &(v as u32).to_le_bytes()).unwrap();
            }
        }
        // A record word: any type, any slot and generation, any length.
        1 | 2 => {
            let idx = rng.below(CAP / 8) as usize * 8;
            let len = evil_value(rng) as u32 as u64;
            let kind = [0u64, 1, 2, 3, 4, 0xff][rng.below(6) as usize];
            let slot = rng.below(8);
            let word = len | kind << 56 | slot << 48 | (rng.next() & 0xffff) << 32;
            write_u64(region, HEADER + idx, word);
        }
        // A position moved by a small step, forwards or backwards.
        3 => {
            let off = [128usize, 256, 264][rng.below(3) as usize];
            let v = read_u64(region, off);
            let step = rng.below(4 * CAP) & !7;
            write_u64(
                region,
                off,
                if rng.below(2) == 0 { v.wrapping_add(step) } else { v.wrapping_sub(step) },
            );
        }
        _ => {
            let idx = rng.below(CAP) as usize;
            region.write_at(HEADER + idx, &[rng.next() as u8]).unwrap();
        }
    }
}

/// Every receive path once or more; returns how many calls ended in a Corrupt error.
fn read_everything(c: &mut Consumer, rng: &mut Rng, dog: &Watchdog, seed: u64) -> usize {
    let mut corrupt = 0;
    let mut buf = Vec::new();
    let mut small = [0u8; 32];
    for step in 0..50 {
        let which = rng.below(6);
        dog.feed(|| format!("seed {seed} step {step}: receive call {which}"));
        let start = Instant::now();
        let r = match which {
            0 => c.try_recv(&mut buf).map(|_| ()).map_err(RecvTimeoutError::from),
            1 => c.try_recv_into(&mut small).map(|_| ()).map_err(RecvTimeoutError::from),
            2 => c.try_read().map(|g| assert!(g.len() <= max())).map_err(RecvTimeoutError::from),
            3 => c.recv_batch(8, |m| assert!(m.len() <= max())).map(|_| ()).map_err(RecvTimeoutError::from),
            4 => c.try_recv_pod::<u64>().map(|_| ()).map_err(RecvTimeoutError::from),
            _ => c.recv_timeout(&mut buf, Duration::from_millis(1)).map(|_| ()),
        };
        assert!(
            start.elapsed() < Duration::from_millis(1) + SLACK,
            "seed {seed}: call {which} took {:?}",
            start.elapsed()
        );
        match r {
            Err(RecvTimeoutError::Corrupt(_)) => corrupt += 1,
            Err(RecvTimeoutError::Timeout) => break,
            _ => {}
        }
    }
    corrupt
}

/// Every send path; returns how many calls ended in a Corrupt error.
fn send_everything(p: &mut Producer, rng: &mut Rng, dog: &Watchdog, seed: u64) -> usize {
    let mut corrupt = 0;
    for step in 0..20 {
        let which = rng.below(5);
        let msg = pattern::message(1, step, 0, 100);
        dog.feed(|| format!("seed {seed} step {step}: send call {which}"));
        let start = Instant::now();
        let r = match which {
            0 => p.try_send(&msg).map_err(|e| SendTimeoutError::from(e.map(|_| ()))),
            1 => p.send_timeout(&msg, Duration::from_millis(1)).map_err(|e| e.map(|_| ())),
            2 => p.try_reserve(msg.len()).map(|g| g.commit()).map_err(SendTimeoutError::from),
            3 => p.reserve_timeout(msg.len(), Duration::from_millis(1)).map(drop),
            _ => p.try_send_pod(step).map_err(|e| SendTimeoutError::from(e.map(|_| ()))),
        };
        assert!(
            start.elapsed() < Duration::from_millis(1) + SLACK,
            "seed {seed}: send {which} took {:?}",
            start.elapsed()
        );
        if let Err(SendTimeoutError::Corrupt { .. }) = r {
            corrupt += 1;
        }
        let _ = p.len_bytes();
    }
    corrupt
}

fn max() -> usize {
    (CAP / 2 - 8) as usize
}

fn fresh(rng: &mut Rng) -> (Arc<Region>, Consumer, Producer, Producer) {
    let config = RingConfig::mpsc(CAP, 4);
    let region = Arc::new(Region::anonymous(config.region_len()).unwrap());
    let mut c = Consumer::create(region.clone(), &config).unwrap();
    let mut a = Producer::open(region.clone()).unwrap();
    let b = Producer::open(region.clone()).unwrap();
    for i in 0..rng.below(40) {
        let _ = a.try_send(pattern::message(1, i, 0, 100));
    }
    for _ in 0..rng.below(8) {
        let _ = c.try_recv(&mut Vec::new());
    }
    (region, c, a, b)
}

/// The two inputs reported to hang on an earlier version.
#[test]
fn reported_hangs_return() {
    let dog = Watchdog::start(LIMIT);
    let config = RingConfig::mpsc(CAP, 4);
    // One 8-byte write: a padding record at index 0 as long as the whole data area.
    let region = Arc::new(Region::anonymous(config.region_len()).unwrap());
    let mut c = Consumer::create(region.clone(), &config).unwrap();
    write_u64(&region, HEADER, (CAP - 8) | 2 << 56);
    dog.feed(|| "try_recv over a padding record of the whole data area".into());
    assert!(matches!(c.try_recv(&mut Vec::new()), Err(TryRecvError::Corrupt(_))));
    dog.feed(|| "recv_timeout over it".into());
    let start = Instant::now();
    assert!(matches!(
        c.recv_timeout(&mut Vec::new(), Duration::from_millis(10)),
        Err(RecvTimeoutError::Corrupt(_))
    ));
    assert!(start.elapsed() < Duration::from_millis(10) + SLACK);
    dog.feed(|| "the fuzz harness on that image".into());
    let mut image = vec![0u8; config.region_len()];
    region.read_at(0, &mut image).unwrap();
    shm_ring::fuzzing::consume_bytes(&image);

    // A consumer that writes head = tail + 8: the producer's timed send returns in time.
    let region = Arc::new(Region::anonymous(config.region_len()).unwrap());
    let _c = Consumer::create(region.clone(), &config).unwrap();
    let mut p = Producer::open(region.clone()).unwrap();
    while p.try_send([1u8; 100]).is_ok() {}
    let tail = read_u64(&region, 128);
    write_u64(&region, 256, tail + 8);
    dog.feed(|| "send_timeout with head = tail + 8".into());
    let start = Instant::now();
    let r = p.send_timeout([2u8; 100], Duration::from_millis(10));
    assert!(start.elapsed() < Duration::from_millis(10) + SLACK, "took {:?}", start.elapsed());
    assert!(matches!(r, Err(SendTimeoutError::Corrupt { .. } | SendTimeoutError::Timeout(_))), "{r:?}");
    dog.feed(|| "try_send with head = tail + 8".into());
    let _ = p.try_send([2u8; 100]);

    // The same hostile consumer against an SPSC producer.
    let config = RingConfig::spsc(CAP);
    let region = Arc::new(Region::anonymous(config.region_len()).unwrap());
    let mut p = spsc::Producer::create(region.clone(), &config).unwrap();
    let _c = spsc::Consumer::open(region.clone()).unwrap();
    while p.try_send([1u8; 100]).is_ok() {}
    write_u64(&region, 256, read_u64(&region, 128) + 8);
    dog.feed(|| "SPSC send_timeout with head = tail + 8".into());
    let start = Instant::now();
    let r = p.send_timeout([2u8; 100], Duration::from_millis(10));
    assert!(start.elapsed() < Duration::from_millis(10) + SLACK);
    assert!(r.is_err(), "{r:?}");
}

#[test]
fn random_corruption_of_producers_memory_gives_errors_not_hangs() {
    let dog = Watchdog::start(LIMIT);
    let mut corrupt_seen = 0;
    for seed in 0..3000u64 {
        let mut rng = Rng(seed);
        let (region, mut c, mut a, _b) = fresh(&mut rng);
        for _ in 0..1 + rng.below(3) {
            corrupt_once(&region, &mut rng);
        }
        corrupt_seen += read_everything(&mut c, &mut rng, &dog, seed);
        corrupt_seen += send_everything(&mut a, &mut rng, &dog, seed);
        dog.feed(|| format!("seed {seed}: drop"));
    }
    assert!(corrupt_seen > 300, "the corruption was detected only {corrupt_seen} times");
}

/// A hostile consumer: only the words a consumer writes (head, hand_back, its slot, the free
/// words of the data area) are garbage; the producers' calls all return.
#[test]
fn hostile_consumer_words_never_hang_a_producer() {
    let dog = Watchdog::start(LIMIT);
    let mut corrupt_seen = 0;
    for seed in 0..1000u64 {
        let mut rng = Rng(seed ^ 0xabcdef);
        let (region, _c, mut a, mut b) = fresh(&mut rng);
        for _ in 0..1 + rng.below(4) {
            match rng.below(4) {
                0 => write_u64(&region, 256, evil_value(&mut rng)),
                1 => write_u64(&region, 264, evil_value(&mut rng)),
                2 => write_u64(&region, 640, evil_value(&mut rng)),
                _ => {
                    // Free words of the wrong lap, or garbage, where producers claim.
                    let tail = read_u64(&region, 128);
                    let idx = (tail.wrapping_add(rng.below(4) * 8) % CAP) as usize;
                    write_u64(&region, HEADER + idx, evil_value(&mut rng) & !(0xff << 56));
                }
            }
        }
        corrupt_seen += send_everything(&mut a, &mut rng, &dog, seed);
        corrupt_seen += send_everything(&mut b, &mut rng, &dog, seed);
    }
    assert!(corrupt_seen > 100, "the corruption was detected only {corrupt_seen} times");
}

#[test]
fn random_headers_never_attach_or_crash() {
    let dog = Watchdog::start(LIMIT);
    for seed in 0..2000u64 {
        let mut rng = Rng(seed);
        let region = Arc::new(Region::anonymous(4096).unwrap());
        let mut bytes = vec![0u8; 4096];
        for b in bytes.iter_mut() {
            *b = rng.next() as u8;
        }
        if seed % 2 == 0 {
            // Mostly valid: right magic, version, kind, state, sizes; random rest.
            bytes[..8].copy_from_slice(b"SHMRING1");
            bytes[8..12].copy_from_slice(&shm_ring::layout::LAYOUT_VERSION.to_le_bytes());
            bytes[12..16].copy_from_slice(&(HEADER as u32).to_le_bytes());
            bytes[16..20].copy_from_slice(&2u32.to_le_bytes());
            bytes[20..24].copy_from_slice(&2u32.to_le_bytes());
            bytes[24..32].copy_from_slice(&CAP.to_le_bytes());
            bytes[32..36].copy_from_slice(&(1 + rng.below(max() as u64) as u32).to_le_bytes());
            bytes[36..40].copy_from_slice(&(1 + rng.below(8) as u32).to_le_bytes());
            for slot in 0..9 {
                let off = 640 + 16 * slot + if slot > 0 { 112 } else { 0 };
                if rng.below(2) == 0 {
                    bytes[off..off + 16].fill(0);
                }
            }
        }
        region.write_at(0, &bytes).unwrap();
        let opts = shm_ring::AttachOptions::new().init_timeout(Duration::ZERO);
        dog.feed(|| format!("seed {seed}: attach"));
        if let Ok(mut c) = Consumer::open_with(region.clone(), &opts) {
            read_everything(&mut c, &mut rng, &dog, seed);
        }
        dog.feed(|| format!("seed {seed}: producer attach"));
        if let Ok(mut p) = Producer::open_with(region, &opts) {
            send_everything(&mut p, &mut rng, &dog, seed);
        }
    }
}

/// Hostile producer processes scribble over the ring while this process reads.
#[test]
fn hostile_process_writing_garbage_concurrently() {
    let dog = Watchdog::start(LIMIT);
    let config = RingConfig::mpsc(CAP, 4);
    let region = Arc::new(Region::anonymous(config.region_len()).unwrap());
    shm_ring::init(&region, &config).unwrap();
    let stop = Arc::new(Region::anonymous(4096).unwrap());
    // Attach first: the hostile process scribbles from its first instant on.
    let mut c = Consumer::open(region.clone()).unwrap();
    let mut p = Producer::open(region.clone()).unwrap();
    let mut hostile = Producer::open(region.clone()).unwrap();
    let child = fork(|| {
        let mut rng = Rng(42);
        let mut i = 0u64;
        loop {
            if read_u64(&stop, 0) != 0 {
                return 0;
            }
            let _ = hostile.try_send(pattern::message(2, i, 0, 200));
            i += 1;
            corrupt_once(&region, &mut rng);
        }
    });
    let mut rng = Rng(7);
    let mut corrupt = 0;
    for round in 0..2000 {
        corrupt += read_everything(&mut c, &mut rng, &dog, round);
        if round % 10 == 0 {
            corrupt += send_everything(&mut p, &mut rng, &dog, round);
        }
    }
    write_u64(&stop, 0, 1);
    dog.feed(|| "joining the hostile process".into());
    child.join();
    assert!(corrupt > 0, "garbage was never noticed");
}

/// A large ring full of skipped records (aborted grants of a producer, or a hostile one):
/// `try_recv` walks it in bounded steps and a timed receive still returns within its timeout,
/// then the message behind the skips arrives.
#[test]
fn a_large_ring_of_skipped_records_does_not_overrun_a_timeout() {
    let dog = Watchdog::start(LIMIT);
    let config = RingConfig::mpsc(1 << 26, 1); // 64 MiB: 8 million 8-byte skip records
    let region = Arc::new(Region::anonymous(config.region_len()).unwrap());
    let mut c = Consumer::create(region.clone(), &config).unwrap();
    let mut p = Producer::open(region).unwrap();
    while let Ok(g) = p.try_reserve(0) {
        drop(g); // an aborted grant: an 8-byte skip record
    }
    let mut buf = Vec::new();
    dog.feed(|| "recv_timeout over 64 MiB of skip records".into());
    let start = Instant::now();
    assert_eq!(c.recv_timeout(&mut buf, Duration::from_millis(10)), Err(RecvTimeoutError::Timeout));
    assert!(start.elapsed() < Duration::from_millis(10) + SLACK, "took {:?}", start.elapsed());
    // The walk went on: once it is done, the producer has room again.
    dog.feed(|| "walking the rest with try_recv".into());
    let mut calls = 0;
    while c.try_recv(&mut buf) == Err(TryRecvError::Empty) && calls < 10_000 {
        calls += 1;
        if p.try_send(b"behind").is_ok() {
            break;
        }
    }
    dog.feed(|| "the message behind the skips".into());
    assert_eq!(c.recv_timeout(&mut buf, Duration::from_secs(10)), Ok(6));
    assert_eq!(buf, b"behind");
}
