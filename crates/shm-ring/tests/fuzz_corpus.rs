//! Replays the fuzz corpora (`fuzz/corpus/consumer` and `fuzz/corpus/producer`, inputs kept from
//! `cargo +nightly fuzz run consumer|producer`) through the same harnesses as the fuzzers: no
//! input may panic, hang or access out of bounds. `write_seeds` (ignored) made the seed inputs:
//! real rings holding messages (and, for the producer, a script of hostile consumer writes).

use std::path::PathBuf;
use std::sync::Arc;

use shm_core::Region;
use shm_ring::fuzzing::{consume_bytes, produce_bytes, PRODUCER_IMAGE, REGION};
use shm_ring::RingConfig;

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/consumer")
}

fn producer_corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/producer")
}

/// Run `harness` on every input of `dir` under a watchdog: a hang fails the test.
fn replay(dir: PathBuf, harness: fn(&[u8]) -> usize) -> usize {
    let dog = shm_testkit::Watchdog::start(std::time::Duration::from_secs(20));
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("fuzz corpus directory") {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        dog.feed(|| format!("replaying {}", path.display()));
        harness(&bytes);
        n += 1;
    }
    n
}

#[test]
fn replay_the_fuzz_corpus() {
    let n = replay(corpus(), consume_bytes);
    assert!(n >= 4, "the corpus holds only {n} inputs");
}

#[test]
fn replay_the_producer_fuzz_corpus() {
    let n = replay(producer_corpus(), produce_bytes);
    assert!(n >= 2, "the corpus holds only {n} inputs");
}

#[test]
fn seeds_are_read_as_rings() {
    // The seeds are valid rings: the harness reads their messages.
    let spsc = std::fs::read(corpus().join("seed-spsc")).unwrap();
    assert!(consume_bytes(&spsc) >= 3);
    let mpsc = std::fs::read(corpus().join("seed-mpsc")).unwrap();
    assert!(consume_bytes(&mpsc) >= 1, "the message before the claim in progress");
    for name in ["seed-broadcast", "seed-broadcast-overwrite"] {
        let bytes = std::fs::read(corpus().join(name)).unwrap();
        assert!(consume_bytes(&bytes) >= 3, "{name}: a subscriber with history reads the messages kept");
    }
}

#[test]
fn producer_seeds_attach() {
    // The producer seeds are rings a producer attaches to and sends into.
    for name in ["seed-spsc", "seed-mpsc", "seed-broadcast"] {
        let bytes = std::fs::read(producer_corpus().join(name)).unwrap();
        assert!(produce_bytes(&bytes) >= 1, "{name}");
    }
}

fn image(region: &Region, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    region.read_at(0, &mut v).unwrap();
    v
}

#[test]
#[ignore = "writes the seed inputs of the fuzz corpus"]
fn write_seeds() {
    let dir = corpus();
    std::fs::create_dir_all(&dir).unwrap();
    let config = RingConfig::spsc(1024);
    let region = Arc::new(Region::anonymous(REGION).unwrap());
    let mut p = shm_ring::spsc::Producer::create(region.clone(), &config).unwrap();
    let mut c = shm_ring::spsc::Consumer::open(region.clone()).unwrap();
    for i in 0..12u8 {
        p.try_send(vec![i; 60 + i as usize]).unwrap();
        if i < 8 {
            c.try_recv(&mut Vec::new()).unwrap(); // move around the ring so records wrap
        }
    }
    drop(c);
    std::fs::write(dir.join("seed-spsc"), image(&region, config.region_len())).unwrap();

    let config = RingConfig::mpsc(1024, 4);
    let region = Arc::new(Region::anonymous(REGION).unwrap());
    let c = shm_ring::mpsc::Consumer::create(region.clone(), &config).unwrap();
    let mut a = shm_ring::mpsc::Producer::open(region.clone()).unwrap();
    let mut b = shm_ring::mpsc::Producer::open(region.clone()).unwrap();
    a.try_send(b"first").unwrap();
    let g = b.try_reserve(20).unwrap(); // a claim in progress
    a.try_send(b"after the claim").unwrap();
    std::mem::forget(g);
    drop(c);
    std::fs::write(dir.join("seed-mpsc"), image(&region, config.region_len())).unwrap();

    // Broadcast: messages wrapped around the ring, a subscriber that read some and one that
    // read none; the last byte of the input is the harness's history (the image's last byte
    // is data, set here to 255 messages).
    for (name, policy) in [
        ("seed-broadcast", shm_ring::Policy::Block),
        ("seed-broadcast-overwrite", shm_ring::Policy::Overwrite),
    ] {
        let config = RingConfig::broadcast(1024, 4).policy(policy);
        let region = Arc::new(Region::anonymous(REGION).unwrap());
        let mut p = shm_ring::broadcast::Producer::create(region.clone(), &config).unwrap();
        let mut a = shm_ring::broadcast::Subscriber::open(region.clone()).unwrap();
        for i in 0..30u8 {
            while p.try_send(vec![i; 20 + i as usize]).is_err() {
                a.try_recv(&mut Vec::new()).unwrap(); // Block: room once the subscriber reads
            }
        }
        let _b = shm_ring::broadcast::Subscriber::open(region.clone()).unwrap();
        drop(p);
        let mut bytes = image(&region, config.region_len());
        *bytes.last_mut().unwrap() = 255;
        std::fs::write(dir.join(name), bytes).unwrap();
    }

    // Producer seeds: a ring image padded to PRODUCER_IMAGE, then hostile writes (offset u16,
    // value u64): the consumer position pushed ahead, and a free word of the wrong lap.
    let pdir = producer_corpus();
    std::fs::create_dir_all(&pdir).unwrap();
    for (name, config) in [
        ("seed-spsc", RingConfig::spsc(1024)),
        ("seed-mpsc", RingConfig::mpsc(1024, 4)),
        ("seed-broadcast", RingConfig::broadcast(1024, 4)),
    ] {
        let region = Arc::new(Region::anonymous(REGION).unwrap());
        shm_ring::init(&region, &config).unwrap();
        let mut bytes = image(&region, PRODUCER_IMAGE);
        for (off, v) in [(256u16, 4096u64), (256, 0), (config.header_len() as u16, 7)] {
            bytes.extend_from_slice(&off.to_le_bytes());
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        std::fs::write(pdir.join(name), bytes).unwrap();
    }
}
