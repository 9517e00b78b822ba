//! Layout version 3 of the SPSC ring (terminators, lap tags, the successor's walk to the real
//! end): the cases an adversarial review found or checked. Leaked and dropped batches, a
//! producer killed before its tail store seen by `status`/`cleanup` and by `len`, hostile
//! positions for `status`, the lap tag wrapping at 2^24 laps, and a randomised stress of every
//! call with restarts and kills.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use shm_core::Region;
use shm_ring::spsc::{Consumer, Producer};
use shm_ring::{CleanupOptions, EndState, RingConfig, TryRecvError, TrySendError};
use shm_testkit::fork;

fn pair(capacity: u64) -> (Producer, Consumer, Arc<Region>) {
    let config = RingConfig::spsc(capacity);
    let region = Arc::new(Region::anonymous(config.region_len()).unwrap());
    let p = Producer::create(region.clone(), &config).unwrap();
    let c = Consumer::open(region.clone()).unwrap();
    (p, c, region)
}

fn drain(c: &mut Consumer) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    loop {
        match c.try_recv(&mut buf) {
            Ok(_) => out.push(buf.clone()),
            Err(TryRecvError::Empty | TryRecvError::Disconnected | TryRecvError::PeerDead { .. }) => {
                return out
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// Drop a batch uncommitted, then send 10 messages: all of them arrive (with whatever was
/// written, unpublished, before the batch).
fn sends_after_a_dropped_batch_are_delivered(p: &mut Producer, c: &mut Consumer) {
    drop(p.write_batch());
    for i in 0..10u8 {
        p.try_send([i; 8]).unwrap();
    }
    let got = drain(c);
    assert!(got.len() >= 10, "10 messages sent with Ok(()), {} delivered: {got:?}", got.len());
}

fn word(r: &Region, offset: usize) -> u64 {
    let mut b = [0u8; 8];
    r.read_at(offset, &mut b).unwrap();
    u64::from_le_bytes(b)
}

/// A `BatchWriter` leaked with `mem::forget` (safe code) leaves written, unpublished records
/// and the publishing word held back; a later batch dropped uncommitted must restore that state,
/// not clear it, or every later `try_send` returns Ok and publishes nothing (it did, once).
#[test]
fn a_dropped_batch_after_a_leaked_one_does_not_silence_the_producer() {
    let (mut p, mut c, _r) = pair(4096);
    let mut b = p.write_batch();
    b.push(8, |m| m.fill(1)).unwrap();
    std::mem::forget(b);
    sends_after_a_dropped_batch_are_delivered(&mut p, &mut c);
}

/// The same state through a panic (caught) of the caller's iterator inside `send_batch`, after
/// it wrote one message.
#[test]
fn a_dropped_batch_after_a_panic_in_send_batch_does_not_silence_the_producer() {
    let (mut p, mut c, _r) = pair(4096);
    let mut n = 0;
    let mut it = std::iter::from_fn(|| {
        n += 1;
        if n == 2 {
            panic!("the caller's iterator fails");
        }
        Some([9u8; 8])
    })
    .peekable();
    let r = std::panic::catch_unwind(AssertUnwindSafe(|| p.send_batch(&mut it)));
    assert!(r.is_err());
    sends_after_a_dropped_batch_are_delivered(&mut p, &mut c);
}

/// A producer process killed between its publishing store and its store of `tail`, with no
/// consumer attached: the message waits for the next consumer (shown on a copy of the file),
/// so `status` counts it in flight and `cleanup` (not forced) keeps the ring (it once removed it).
#[test]
fn cleanup_keeps_a_ring_whose_dead_producer_left_tail_behind_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pending");
    let config = RingConfig::spsc(4096);
    let region = Arc::new(Region::create_file(&path, config.region_len()).unwrap());
    shm_ring::init(&region, &config).unwrap();
    fork({
        let region = region.clone();
        move || {
            let mut p = Producer::open(region).unwrap();
            p.try_send_leaving_tail_behind(&[7u8; 100]).unwrap();
            std::mem::forget(p); // killed: never closes
            0
        }
    })
    .join();
    drop(region);

    // The next consumer would get the message: read it from a copy in another directory.
    let elsewhere = tempfile::tempdir().unwrap();
    let copy = elsewhere.path().join("copy");
    std::fs::copy(&path, &copy).unwrap();
    {
        let r = Region::open_file(&copy).unwrap();
        let data = shm_ring::layout::header_size(1);
        println!(
            "copy: head {} tail {} word[0] {:#018x} word[112] {:#018x}",
            word(&r, 256),
            word(&r, 128),
            word(&r, data),
            word(&r, data + 112)
        );
    }
    let mut c = Consumer::open(Region::open_file(&copy).unwrap()).unwrap();
    assert_eq!(drain(&mut c), vec![vec![7u8; 100]]);
    drop(c);

    let s = shm_ring::status(&Region::open_file(&path).unwrap()).unwrap();
    assert_eq!(s.producers[0].state, EndState::Dead);
    println!(
        "status: head {} tail {} bytes_in_flight {} records {}",
        s.head, s.tail, s.bytes_in_flight, s.records_in_flight
    );
    let report = shm_ring::cleanup(dir.path(), &CleanupOptions::new()).unwrap();
    print!("{report}");
    assert!(path.exists(), "cleanup (not forced) removed a ring holding an undelivered message: {report}");
}

/// `status` of a ring whose header a peer wrote: `head` near 2^64 and the data area full of
/// zero-length message headers. It returns (it once added past u64::MAX: a panic with overflow
/// checks, and 2^61 steps without).
#[test]
fn status_with_a_hostile_head_returns() {
    let config = RingConfig::spsc(4096);
    let region = Region::anonymous(config.region_len()).unwrap();
    shm_ring::init(&region, &config).unwrap();
    region.write_at(256, &(u64::MAX - 7).to_le_bytes()).unwrap(); // head
    region.write_at(128, &u64::MAX.to_le_bytes()).unwrap(); // tail
    let data = shm_ring::layout::header_size(1);
    for i in (0..4096).step_by(8) {
        region.write_at(data + i, &(1u64 << 56).to_le_bytes()).unwrap(); // type 1, len 0
    }
    let r = std::panic::catch_unwind(|| shm_ring::status(&region).map(|_| ()));
    assert!(r.is_ok(), "status panicked on peer-written header bytes");
}

/// Lap tags wrap at 2^24 laps: a ring set up a few laps before lap 2^24 (positions and the
/// terminator written as a ring there would hold them) streams across the wrap, with full and
/// exactly-full rings, padding, max-size messages, and both ends reattaching on the way.
#[test]
fn lap_tags_wrap_at_two_to_the_24_laps() {
    const CAP: u64 = 64;
    let config = RingConfig::spsc(CAP);
    let region = Arc::new(Region::anonymous(config.region_len()).unwrap());
    shm_ring::init(&region, &config).unwrap();
    let key = word(&region, 48);
    let data = shm_ring::layout::header_size(1);
    let start = ((1u64 << 24) - 3) * CAP + 40;
    region.write_at(128, &start.to_le_bytes()).unwrap();
    region.write_at(256, &start.to_le_bytes()).unwrap();
    let term = shm_ring::layout::free_word(key, start / CAP);
    region.write_at(data + (start % CAP) as usize, &term.to_le_bytes()).unwrap();

    let mut p = Producer::open(region.clone()).unwrap();
    let mut c = Consumer::open(region.clone()).unwrap();
    let (mut sent, mut got) = (0u64, 0u64);
    let msg = |i: u64| vec![i as u8; ((i * 7) % 25) as usize];
    let mut buf = Vec::new();
    for round in 0..2000u64 {
        // Fill until full.
        loop {
            match p.try_send(msg(sent)) {
                Ok(()) => sent += 1,
                Err(TrySendError::Full(_)) => break,
                Err(e) => panic!("{e}"),
            }
        }
        // Take some (all, every third round).
        let take = if round % 3 == 0 { u64::MAX } else { 1 + round % 2 };
        for _ in 0..take {
            match c.try_recv(&mut buf) {
                Ok(_) => {
                    assert_eq!(buf, msg(got), "message {got} (round {round})");
                    got += 1;
                }
                Err(TryRecvError::Empty) => break,
                Err(e) => panic!("round {round}: {e}"),
            }
        }
        if round % 97 == 0 {
            drop(p);
            p = Producer::open(region.clone()).unwrap();
        }
        if round % 89 == 0 {
            drop(c);
            c = Consumer::open(region.clone()).unwrap();
        }
    }
    while c.try_recv(&mut buf).is_ok() {
        assert_eq!(buf, msg(got));
        got += 1;
    }
    assert_eq!(got, sent);
    let end = word(&region, 256);
    assert!(end / CAP > (1 << 24) + 3, "crossed lap 2^24: at lap {}", end / CAP);
}

/// Randomised stress of one SPSC ring in one process: every send form (try_send, send_batch,
/// write_batch committed or dropped, reserve with commit / commit_len / abort), every receive
/// form (try_recv, recv_batch, try_read), flushes, clean restarts of either end, a producer
/// "killed" before its tail store (the test hook, then its slot freed as a takeover would find
/// it), and a consumer "killed" without handing back (its slot freed). Checked: no corrupt
/// error, every published message delivered whole and in order; after a consumer kill the
/// successor resumes at or before where the dead one was (at-least-once), never before the
/// last explicit hand-back.
#[test]
fn randomised_stress_with_restarts_and_kills() {
    const PRODUCER_OWNER: usize = 768;
    const CONSUMER_OWNER: usize = 640;
    let seeds: u64 = std::env::var("SHM_TEST_SEEDS").ok().and_then(|v| v.parse().ok()).unwrap_or(7);
    for (cap, seed) in (0..seeds).map(|s| ([64u64, 64, 128, 256, 1024][s as usize % 5], s + 1)) {
        let mut rng = fastrand::Rng::with_seed(seed);
        let config = RingConfig::spsc(cap);
        let region = Arc::new(Region::anonymous(config.region_len()).unwrap());
        shm_ring::init(&region, &config).unwrap();
        let mut p = Producer::open(region.clone()).unwrap();
        let mut c = Consumer::open(region.clone()).unwrap();
        let max = p.max_message();
        let mut history: Vec<Vec<u8>> = Vec::new();
        let mut next = 0usize; // index in history of the next message the consumer must deliver
        let mut flushed = 0usize; // everything before this was surely handed back
        let mut rewound = false; // a consumer was killed: the next delivery may go back
        let mut id = 0u32;
        let mut make = |rng: &mut fastrand::Rng| -> Vec<u8> {
            id += 1;
            let len = rng.usize(4..=max);
            let b = id.to_le_bytes();
            (0..len).map(|i| if i < 4 { b[i] } else { (id as usize * 31 + i) as u8 }).collect()
        };
        let check = |got: &[u8],
                     history: &[Vec<u8>],
                     next: &mut usize,
                     flushed: usize,
                     rewound: &mut bool,
                     what: &str| {
            let k = if *rewound {
                let k = history
                    .iter()
                    .position(|m| m == got)
                    .unwrap_or_else(|| panic!("{what}: garbage {got:?}"));
                assert!(k <= *next && k >= flushed, "{what}: resumed at {k}, next {next}, flushed {flushed}");
                *rewound = false;
                k
            } else {
                assert!(*next < history.len(), "{what}: delivered {got:?} beyond what was sent");
                assert_eq!(got, &history[*next][..], "{what}: message {next} (cap {cap})");
                *next
            };
            *next = k + 1;
        };
        let trace = std::env::var("SHM_TEST_TRACE").is_ok();
        for step in 0..20_000 {
            let op = rng.u32(0..100);
            if trace {
                println!(
                    "step {step} op {op} next {next} flushed {flushed} sent {} head {} tail {}",
                    history.len(),
                    word(&region, 256),
                    word(&region, 128)
                );
            }
            match op {
                0..=19 => {
                    let m = make(&mut rng);
                    if p.try_send(&m).is_ok() {
                        history.push(m);
                    }
                }
                20..=27 => {
                    let msgs: Vec<Vec<u8>> = (0..rng.usize(1..5)).map(|_| make(&mut rng)).collect();
                    let mut it = msgs.clone().into_iter().peekable();
                    if let Ok(n) = p.send_batch(&mut it) {
                        history.extend(msgs.into_iter().take(n));
                    }
                }
                28..=35 => {
                    let commit = rng.bool();
                    let mut b = p.write_batch();
                    let mut pushed = Vec::new();
                    for _ in 0..rng.usize(1..4) {
                        let m = make(&mut rng);
                        if b.push(m.len(), |d| d.copy_from_slice(&m)).is_ok() {
                            pushed.push(m);
                        }
                    }
                    if commit {
                        b.commit();
                        history.extend(pushed);
                    } else {
                        drop(b);
                    }
                }
                36..=45 => {
                    let m = make(&mut rng);
                    if let Ok(mut g) = p.try_reserve(m.len()) {
                        g.copy_from_slice(&m);
                        match rng.u32(0..3) {
                            0 => {
                                g.commit();
                                history.push(m);
                            }
                            1 => {
                                let l = rng.usize(4..=m.len());
                                g.commit_len(l);
                                history.push(m[..l].to_vec());
                            }
                            _ => drop(g),
                        }
                    }
                }
                46..=65 => {
                    let mut buf = Vec::new();
                    match c.try_recv(&mut buf) {
                        Ok(_) => check(&buf, &history, &mut next, flushed, &mut rewound, "try_recv"),
                        Err(TryRecvError::Empty) => assert!(
                            next >= history.len() || rewound,
                            "Empty with {} waiting",
                            history.len() - next
                        ),
                        Err(e) => panic!("step {step}: {e}"),
                    }
                }
                66..=73 => {
                    let mut got = Vec::new();
                    match c.recv_batch(rng.usize(1..6), |m| got.push(m.to_vec())) {
                        Ok(_) => {
                            for m in got {
                                check(&m, &history, &mut next, flushed, &mut rewound, "recv_batch");
                            }
                            flushed = next;
                        }
                        Err(TryRecvError::Empty) => {}
                        Err(e) => panic!("step {step}: {e}"),
                    }
                }
                74..=81 => match c.try_read() {
                    Ok(g) => {
                        let v = g.to_vec();
                        drop(g);
                        check(&v, &history, &mut next, flushed, &mut rewound, "try_read");
                    }
                    Err(TryRecvError::Empty) => {}
                    Err(e) => panic!("step {step}: {e}"),
                },
                82..=85 => {
                    c.flush();
                    if !rewound {
                        flushed = next; // (after a kill, the successor has handed back nothing yet)
                    }
                }
                86..=88 => {
                    drop(p);
                    p = Producer::open(region.clone()).unwrap();
                }
                89..=92 => {
                    let m = make(&mut rng);
                    if p.try_send_leaving_tail_behind(&m).is_ok() {
                        history.push(m);
                    }
                    std::mem::forget(p);
                    region.write_at(PRODUCER_OWNER, &0u64.to_le_bytes()).unwrap();
                    p = Producer::open(region.clone()).unwrap_or_else(|e| panic!("step {step}: {e}"));
                }
                93..=95 => {
                    drop(c);
                    if !rewound {
                        flushed = next;
                    }
                    c = Consumer::open(region.clone()).unwrap();
                }
                _ => {
                    std::mem::forget(c);
                    region.write_at(CONSUMER_OWNER, &0u64.to_le_bytes()).unwrap();
                    c = Consumer::open(region.clone()).unwrap_or_else(|e| panic!("step {step}: {e}"));
                    rewound = true;
                }
            }
        }
        let mut buf = Vec::new();
        loop {
            match c.try_recv(&mut buf) {
                Ok(_) => check(&buf, &history, &mut next, flushed, &mut rewound, "drain"),
                Err(TryRecvError::Empty) => break,
                Err(e) => panic!("drain: {e}"),
            }
        }
        assert_eq!(next, history.len(), "cap {cap} seed {seed}: all delivered");
    }
}

/// `Consumer::is_empty` / `len_bytes` when the stored `tail` trails a published message (the
/// producer stores it after publishing; one killed in between never does): not empty.
#[test]
fn the_consumer_is_not_empty_while_a_published_message_waits() {
    let (mut p, mut c, _r) = pair(4096);
    p.try_send_leaving_tail_behind(b"published").unwrap();
    std::mem::forget(p); // killed before its tail store
    let empty = c.is_empty();
    let mut buf = Vec::new();
    assert_eq!(c.try_recv(&mut buf).unwrap(), 9);
    assert!(!empty, "is_empty() was true with a message waiting");
}
