//! SPSC across real processes: fork on an anonymous region, spawned processes on a file region,
//! SIGKILL of either side while the other is blocked, and a consumer restarting on a file.

use std::io::BufReader;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use shm_core::Region;
use shm_ring::spsc::{Consumer, Producer};
use shm_ring::{RecvError, RingConfig, TryRecvError, TrySendError};
use shm_testkit::{expect_line, fork, load_u32, pattern, role, spawn_peer, wait_until};

/// The heavy streams run one at a time: the machine has two cores and each stream wants both.
static HEAVY: Mutex<()> = Mutex::new(());

const MIN: usize = 1;
const MAX: usize = 256;
/// Header offsets watched by the tests (see `shm_ring::layout`).
const DATA_WAITERS: usize = 384 + 4;
const SPACE_WAITERS: usize = 512 + 4;
const CONSUMER_OWNER: usize = 640;

fn config() -> RingConfig {
    RingConfig::spsc(16 * 1024).max_message(MAX as u64)
}

fn count() -> u64 {
    std::env::var("SHM_TEST_MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000_000)
}

/// Send messages `from..to` of the pattern stream, spinning (non-blocking API) or blocking.
fn produce(p: &mut Producer, from: u64, to: u64, blocking: bool) {
    let mut buf = vec![0u8; MAX];
    for seq in from..to {
        let len = pattern::len(0, seq, MIN, MAX);
        pattern::fill(0, seq, &mut buf[..len]);
        if blocking {
            p.send(&buf[..len]).unwrap();
        } else {
            loop {
                match p.try_send(&buf[..len]) {
                    Ok(()) => break,
                    Err(TrySendError::Full(_)) => std::thread::yield_now(),
                    Err(e) => panic!("send {seq}: {e}"),
                }
            }
        }
    }
}

/// Receive and verify messages `from..` until the producer closes; returns the next expected seq.
fn consume(c: &mut Consumer, from: u64, blocking: bool, slow: bool) -> u64 {
    let mut buf = Vec::new();
    let mut seq = from;
    loop {
        let r = if blocking { c.recv(&mut buf).map_err(TryRecvError::from) } else { c.try_recv(&mut buf) };
        match r {
            Ok(_) => {
                if let Err(e) = pattern::check(0, seq, MIN, MAX, &buf) {
                    panic!("{e}");
                }
                seq += 1;
                if slow && seq % 50_000 == 0 {
                    // Fall behind so the producer fills the ring and sleeps on the futex.
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            Err(TryRecvError::Empty) => std::thread::yield_now(),
            Err(TryRecvError::Disconnected) => return seq,
            Err(e) => panic!("recv at {seq}: {e}"),
        }
    }
}

/// A header word of a ring whose region stays mapped while the test runs.
fn watch(base: usize, offset: usize) -> u32 {
    // SAFETY: every caller passes the base of a ring region it keeps alive (moved into a ring
    // end that is joined later) and a 4-aligned header offset below 896.
    unsafe { load_u32(base as *const u8, offset) }
}

fn anon_ring() -> Arc<Region> {
    let region = Region::anonymous(config().region_len()).unwrap();
    shm_ring::init(&region, &config()).unwrap();
    Arc::new(region)
}

#[test]
fn fork_stream_spinning() {
    let _heavy = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let n = count();
    let region = anon_ring();
    let child = fork(|| {
        let mut p = Producer::open(region.clone()).unwrap();
        produce(&mut p, 0, n, false);
        0
    });
    let mut c = Consumer::open(region).unwrap();
    assert_eq!(consume(&mut c, 0, false, false), n, "every message, once, in order");
    child.join();
}

#[test]
fn fork_stream_blocking_slow_consumer() {
    let _heavy = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let n = count() / 5;
    let region = anon_ring();
    let child = fork(|| {
        let mut p = Producer::open(region.clone()).unwrap();
        produce(&mut p, 0, n, true);
        0
    });
    let mut c = Consumer::open(region).unwrap();
    assert_eq!(consume(&mut c, 0, true, true), n);
    child.join();
}

#[test]
fn file_stream_between_spawned_processes() {
    let _heavy = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let n = count();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ring");
    let region = Region::create_file(&path, config().region_len()).unwrap();
    let mut c = Consumer::create(region, &config()).unwrap();
    let mut child = spawn_peer(
        "peer",
        "produce",
        &[("SHM_PATH", path.display().to_string()), ("SHM_COUNT", n.to_string())],
    );
    assert_eq!(consume(&mut c, 0, true, false), n);
    assert!(child.wait().unwrap().success());
}

/// Kill the producer with SIGKILL while the consumer sleeps in `recv_blocking`.
#[test]
fn consumer_blocked_sees_killed_producer() {
    let region = anon_ring();
    let base = region.as_ptr() as usize;
    let child = fork(|| {
        let mut p = Producer::open(region.clone()).unwrap();
        p.try_send(b"ready").unwrap();
        loop {
            nix::unistd::pause();
        }
    });
    let mut c = Consumer::open(region).unwrap();
    let mut buf = Vec::new();
    c.recv_timeout(&mut buf, Duration::from_secs(20)).unwrap();
    assert_eq!(buf, b"ready");
    let waiter = std::thread::spawn(move || {
        let r = c.recv(&mut buf);
        (r, Instant::now())
    });
    // Handshake: the consumer has announced itself asleep on the futex word.
    assert!(wait_until(Duration::from_secs(20), || watch(base, DATA_WAITERS) != 0));
    let pid = child.pid() as u32;
    let killed = Instant::now();
    child.kill(Signal::SIGKILL);
    let (r, at) = waiter.join().unwrap();
    let _ = child.wait();
    assert_eq!(r, Err(RecvError::PeerDead { pid }));
    let took = at.duration_since(killed);
    eprintln!("consumer noticed the killed producer after {took:?}");
    assert!(took < Duration::from_secs(2), "death noticed only after {took:?}");
}

/// Kill the consumer with SIGKILL while the producer sleeps in `send` on a full ring.
#[test]
fn producer_blocked_sees_killed_consumer() {
    let region = anon_ring();
    let base = region.as_ptr() as usize;
    let child = fork(|| {
        let _c = Consumer::open(region.clone()).unwrap();
        loop {
            nix::unistd::pause();
        }
    });
    let mut p = Producer::open(region).unwrap();
    // Handshake: the consumer slot holds the child's identity.
    assert!(wait_until(Duration::from_secs(20), || watch(base, CONSUMER_OWNER + 4) != 0));
    while p.try_send([0u8; 200]).is_ok() {}
    let sender = std::thread::spawn(move || {
        let r = p.send([1u8; 200]).map_err(|e| e.to_string());
        (r, Instant::now())
    });
    assert!(wait_until(Duration::from_secs(20), || watch(base, SPACE_WAITERS) != 0));
    let pid = child.pid();
    let killed = Instant::now();
    child.kill(Signal::SIGKILL);
    let (r, at) = sender.join().unwrap();
    let _ = child.wait();
    assert_eq!(r, Err(format!("consumer process {pid} died")));
    let took = at.duration_since(killed);
    eprintln!("producer noticed the killed consumer after {took:?}");
    assert!(took < Duration::from_secs(2), "death noticed only after {took:?}");
}

/// A consumer that exits, and one killed while holding a message, are followed by new consumer
/// processes that resume at the first unconsumed message; a producer that reopens appends.
#[test]
fn consumer_restart_on_a_file_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ring");
    let config = RingConfig::spsc(1 << 20).max_message(MAX as u64);
    let env = |count: u64| vec![("SHM_PATH", path.display().to_string()), ("SHM_COUNT", count.to_string())];
    {
        let mut p =
            Producer::create(Region::create_file(&path, config.region_len()).unwrap(), &config).unwrap();
        produce(&mut p, 0, 1000, false);
        p.region().flush().unwrap();
    } // producer closed
      // Consumer A takes 400 messages and exits cleanly.
    let mut a = spawn_peer("peer", "take", &env(400));
    let mut out = BufReader::new(a.stdout.take().unwrap());
    assert_eq!(expect_line(&mut out, "next: "), "400");
    assert!(a.wait().unwrap().success());
    // Consumer B consumes 400..410 (flushing after 405) and is killed while holding 410.
    let mut b = spawn_peer("peer", "hold", &env(0));
    let mut out = BufReader::new(b.stdout.take().unwrap());
    assert_eq!(expect_line(&mut out, "holding: "), "410");
    b.kill().unwrap();
    b.wait().unwrap();
    // The producer reopens and appends after the last message.
    {
        let mut p = Producer::open(Region::open_file(&path).unwrap()).unwrap();
        produce(&mut p, 1000, 1500, false);
    }
    // Consumer C resumes at 405, B's last flushed position: what B consumed after its flush,
    // and the message it held, are delivered again (at-least-once). It reads to the end.
    let mut c = spawn_peer("peer", "drain", &env(405));
    let mut out = BufReader::new(c.stdout.take().unwrap());
    assert_eq!(expect_line(&mut out, "next: "), "1500");
    assert!(c.wait().unwrap().success());
}

/// A producer process killed between its publishing store and its store of `tail` (the test
/// hook publishes a message and leaves the stored tail behind it, then the process exits
/// without closing): the consumer reads everything it published, and a successor producer
/// process, which takes the dead one's slot, appends after the last published message instead
/// of writing over it. Both when the consumer has already read past the stored tail, and when
/// it has not yet.
#[test]
fn a_producer_killed_before_its_tail_store_loses_nothing() {
    // Room for all 2000 messages: the dead producer sends before anyone reads.
    let config = RingConfig::spsc(1 << 20).max_message(MAX as u64);
    for read_before in [1001u64, 500] {
        let region = Arc::new(Region::anonymous(config.region_len()).unwrap());
        shm_ring::init(&region, &config).unwrap();
        let mut c = Consumer::open(region.clone()).unwrap();
        let tail_word = |r: &Region| {
            let mut b = [0u8; 8];
            r.read_at(128, &mut b).unwrap();
            u64::from_le_bytes(b)
        };
        let dead = fork(|| {
            let mut p = Producer::open(region.clone()).unwrap();
            produce(&mut p, 0, 1000, false);
            let before = tail_word(&region);
            let mut buf = vec![0u8; MAX];
            let len = pattern::len(0, 1000, MIN, MAX);
            pattern::fill(0, 1000, &mut buf[..len]);
            p.try_send_leaving_tail_behind(&buf[..len]).unwrap();
            let left_behind = tail_word(&region) == before;
            std::mem::forget(p); // killed: never closes
            if left_behind {
                0
            } else {
                3
            }
        });
        dead.join(); // exit code 0: the stored tail was left behind the published message
        let mut buf = Vec::new();
        for seq in 0..read_before {
            c.try_recv(&mut buf).unwrap_or_else(|e| panic!("message {seq}: {e}"));
            pattern::check(0, seq, MIN, MAX, &buf).unwrap();
        }
        let successor = fork(|| {
            let mut p = Producer::open(region.clone()).expect("the dead producer's slot is taken over");
            produce(&mut p, 1001, 2000, false);
            0
        });
        // The successor sends everything and closes before we read on (the ring has room), so
        // the ring is never seen empty with only the dead producer there.
        successor.join();
        let next = consume(&mut c, read_before, false, false);
        assert_eq!(next, 2000, "every message once, in order (read {read_before} before the successor came)");
    }
}

/// The peer processes of the tests above.
#[test]
#[ignore = "started by the other tests as a separate process"]
fn peer() {
    let Some(role) = role() else { return };
    let path = std::env::var("SHM_PATH").unwrap();
    let count: u64 = std::env::var("SHM_COUNT").unwrap().parse().unwrap();
    let region = Region::open_file(&path).unwrap();
    match role.as_str() {
        "produce" => {
            let mut p = Producer::open(region).unwrap();
            produce(&mut p, 0, count, false);
        }
        "take" => {
            let mut c = Consumer::open(region).unwrap();
            let mut buf = Vec::new();
            for seq in 0..count {
                c.try_recv(&mut buf).unwrap();
                pattern::check(0, seq, MIN, MAX, &buf).unwrap();
            }
            println!("next: {count}");
        }
        "hold" => {
            // Five messages consumed and flushed, five consumed without a flush, one held.
            let mut c = Consumer::open(region).unwrap();
            let mut buf = Vec::new();
            for _ in 0..5 {
                c.try_recv(&mut buf).unwrap();
            }
            c.flush();
            for _ in 0..5 {
                c.try_recv(&mut buf).unwrap();
            }
            let g = c.try_read().unwrap();
            let mut seq = [0u8; 8];
            g.read_at(0, &mut seq);
            println!("holding: {}", u64::from_le_bytes(seq));
            loop {
                nix::unistd::pause();
            }
        }
        "drain" => {
            let mut c = Consumer::open(region).unwrap();
            let next = consume(&mut c, count, false, false);
            println!("next: {next}");
        }
        other => panic!("unknown role {other}"),
    }
}
