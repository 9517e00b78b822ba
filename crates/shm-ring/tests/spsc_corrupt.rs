//! A hostile or buggy peer writes garbage into the header and the records. The other end must
//! return errors: never panic, never read out of bounds, never hang.

use std::sync::Arc;
use std::time::Duration;

use shm_core::Region;
use shm_ring::spsc::{Consumer, Producer};
use shm_ring::{AttachError, RecvTimeoutError, RingConfig, TrySendError};
use shm_testkit::{fork, pattern, Rng};

const CAP: u64 = 1024;
const HEADER: usize = 896;
/// Header words a peer can write: tail, head, futex words, slots (see `shm_ring::layout`).
const HOT_WORDS: [usize; 7] = [128, 256, 384, 388, 512, 516, 640];

fn evil_value(rng: &mut Rng) -> u64 {
    rng.evil_value(CAP)
}

fn corrupt_once(region: &Region, rng: &mut Rng) {
    match rng.below(4) {
        // A header position or word.
        0 => {
            let off = HOT_WORDS[rng.below(HOT_WORDS.len() as u64) as usize];
            let v = evil_value(rng);
            let bytes =
                if off % 8 == 0 { v.to_le_bytes().to_vec() } else { (v as u32).to_le_bytes().to_vec() };
            region.write_at(off, &bytes).unwrap();
        }
        // A record word (length and type) somewhere in the data area.
        1 => {
            let idx = rng.below(CAP / 8) as usize * 8;
            let len = evil_value(rng) as u32;
            let kind = [0u32, 1, 2, 3, 0xff][rng.below(5) as usize];
            let word = len as u64 | (kind as u64) << 56;
            region.write_at(HEADER + idx, &word.to_le_bytes()).unwrap();
        }
        // Random bytes anywhere in the data area.
        2 => {
            let idx = rng.below(CAP) as usize;
            region.write_at(HEADER + idx, &[rng.next() as u8]).unwrap();
        }
        // A padding record that does not reach the end.
        _ => {
            let idx = rng.below(CAP / 8) as usize * 8;
            let word = rng.below(CAP) | 2u64 << 56;
            region.write_at(HEADER + idx, &word.to_le_bytes()).unwrap();
        }
    }
}

/// Exercise every receive path; returns how many calls ended in a Corrupt error.
fn read_everything(c: &mut Consumer, rng: &mut Rng) -> usize {
    let mut corrupt = 0;
    let mut buf = Vec::new();
    let mut small = [0u8; 32];
    for _ in 0..50 {
        let r = match rng.below(6) {
            0 => c.try_recv(&mut buf).map(|_| ()).map_err(RecvTimeoutError::from),
            1 => c.try_recv_into(&mut small).map(|_| ()).map_err(RecvTimeoutError::from),
            2 => c
                .try_read()
                .map(|g| assert!(g.len() <= c_max() && g.to_vec().len() == g.len()))
                .map_err(RecvTimeoutError::from),
            3 => c.recv_batch(8, |m| assert!(m.len() <= c_max())).map(|_| ()).map_err(RecvTimeoutError::from),
            4 => c.try_recv_pod::<[u64; 4]>().map(|_| ()).map_err(RecvTimeoutError::from),
            _ => c.recv_timeout(&mut buf, Duration::from_millis(1)).map(|_| ()),
        };
        match r {
            Err(RecvTimeoutError::Corrupt(_)) => corrupt += 1,
            Err(RecvTimeoutError::SizeMismatch { .. }) => {}
            Err(RecvTimeoutError::Timeout) => break,
            _ => {}
        }
    }
    corrupt
}

fn c_max() -> usize {
    (CAP / 2 - 8) as usize
}

#[test]
fn random_corruption_gives_errors_not_crashes() {
    let config = RingConfig::spsc(CAP);
    let mut corrupt_seen = 0;
    for seed in 0..3000u64 {
        let mut rng = Rng(seed);
        let region = Arc::new(Region::anonymous(config.region_len()).unwrap());
        let mut p = Producer::create(region.clone(), &config).unwrap();
        let mut c = Consumer::open(region.clone()).unwrap();
        for i in 0..rng.below(40) {
            let _ = p.try_send(pattern::message(1, i, 0, 100));
        }
        for _ in 0..rng.below(8) {
            let _ = c.try_recv(&mut Vec::new());
        }
        for _ in 0..1 + rng.below(3) {
            corrupt_once(&region, &mut rng);
        }
        corrupt_seen += read_everything(&mut c, &mut rng);
        // The producer side reads the consumer position: it must not panic either.
        for i in 0..10 {
            match p.try_send(pattern::message(1, i, 0, 100)) {
                Ok(())
                | Err(TrySendError::Full(_) | TrySendError::Corrupt { .. } | TrySendError::Disconnected(_)) =>
                    {}
                Err(e) => panic!("seed {seed}: unexpected {e}"),
            }
        }
        let _ = p.len_bytes() + c.len_bytes();
    }
    assert!(corrupt_seen > 100, "the corruption was detected only {corrupt_seen} times");
}

#[test]
fn corrupt_positions_at_attach_are_refused() {
    let config = RingConfig::spsc(CAP);
    let region = Arc::new(Region::anonymous(config.region_len()).unwrap());
    shm_ring::init(&region, &config).unwrap();
    region.write_at(128, &(CAP * 3).to_le_bytes()).unwrap(); // tail far ahead of head
    let e = Consumer::open(region.clone()).unwrap_err();
    assert!(matches!(e, AttachError::Corrupt(ref c) if c.what == "producer position"), "{e:?}");
    assert!(e.to_string().starts_with("ring corrupt: producer position is 3072"), "{e}");
    assert!(matches!(Producer::open(region), Err(AttachError::Corrupt(_))));
}

#[test]
fn random_headers_never_attach_or_crash() {
    for seed in 0..2000u64 {
        let mut rng = Rng(seed);
        let region = Arc::new(Region::anonymous(4096).unwrap());
        let mut bytes = vec![0u8; 4096];
        for b in bytes.iter_mut().take(896) {
            *b = rng.next() as u8;
        }
        if seed % 2 == 0 {
            // Mostly valid: right magic, version, state; random geometry.
            bytes[..8].copy_from_slice(b"SHMRING1");
            bytes[8..12].copy_from_slice(&shm_ring::layout::LAYOUT_VERSION.to_le_bytes());
            bytes[16..20].copy_from_slice(&1u32.to_le_bytes());
            bytes[20..24].copy_from_slice(&2u32.to_le_bytes());
        }
        region.write_at(0, &bytes).unwrap();
        let opts = shm_ring::AttachOptions::new().init_timeout(Duration::ZERO);
        if let Ok(mut c) = Consumer::open_with(region, &opts) {
            read_everything(&mut c, &mut rng);
        }
    }
}

/// A hostile producer process scribbles over the ring while this process reads.
#[test]
fn hostile_process_writing_garbage_concurrently() {
    let config = RingConfig::spsc(CAP);
    let region = Arc::new(Region::anonymous(config.region_len()).unwrap());
    shm_ring::init(&region, &config).unwrap();
    // Attach before the scribbler starts: an attach that meets a corrupt header is refused
    // (tested above), which would race with the child here.
    let mut c = Consumer::open(region.clone()).unwrap();
    let stop = Arc::new(Region::anonymous(4096).unwrap());
    let child = fork(|| {
        let mut rng = Rng(42);
        let mut p = Producer::open(region.clone()).unwrap();
        let mut i = 0u64;
        let mut flag = [0u8];
        loop {
            stop.read_at(0, &mut flag).unwrap();
            if flag[0] != 0 {
                return 0;
            }
            let _ = p.try_send(pattern::message(2, i, 0, 200));
            i += 1;
            corrupt_once(&region, &mut rng);
        }
    });
    let mut rng = Rng(7);
    let mut corrupt = 0;
    for _ in 0..20_000 {
        corrupt += read_everything(&mut c, &mut rng);
    }
    stop.write_at(0, &[1]).unwrap();
    child.join();
    assert!(corrupt > 0, "garbage was never noticed");
}
