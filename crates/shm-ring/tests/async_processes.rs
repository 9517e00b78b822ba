//! Async ends on a real tokio multi-thread runtime, against peers in other processes (forked
//! sync ends): a million messages in order, ten thousand cancelled receives, SIGKILL of the
//! peer while a task awaits, the CPU an idle await takes, one task awaiting many rings, the
//! `Stream` / `Sink` forms, zero-copy `reserve` / `read`, every ring kind, and the fallback of
//! one waker thread per wait.
#![cfg(feature = "async")]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{SinkExt, Stream, StreamExt};
use nix::sys::signal::Signal;
use shm_core::Region;
use shm_ring::aio::{AsyncConsumer, AsyncProducer};
use shm_ring::{broadcast, mpsc, spsc, RecvError, RingConfig, SendError};
use shm_testkit::{expect_line, fork, pattern, role, spawn_peer, Gate};

/// The heavy streams run one at a time: the machine has two cores and each stream wants both.
static HEAVY: Mutex<()> = Mutex::new(());

const MIN: usize = 8;
const MAX: usize = 256;

fn heavy() -> std::sync::MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn ring(config: &RingConfig) -> Arc<Region> {
    let region = Region::anonymous(config.region_len()).unwrap();
    shm_ring::init(&region, config).unwrap();
    Arc::new(region)
}

/// Message `seq` of stream 0: its sequence number in the first 8 bytes, the pattern after.
fn message(seq: u64, buf: &mut [u8]) -> usize {
    let len = pattern::len(0, seq, MIN, MAX);
    pattern::fill(0, seq, &mut buf[..len]);
    buf[..8].copy_from_slice(&seq.to_le_bytes());
    len
}

fn check(seq: u64, got: &[u8]) {
    assert!(got.len() >= 8, "message {seq}: {} bytes", got.len());
    let found = u64::from_le_bytes(got[..8].try_into().unwrap());
    assert_eq!(found, seq, "message {found} where {seq} was due");
    let mut want = vec![0u8; MAX];
    let len = message(seq, &mut want);
    assert_eq!(got, &want[..len], "message {seq} byte for byte");
}

/// A forked sync producer of kind `K` sending messages `0..count` (blocking sends), then
/// closing.
fn producer_process<K: shm_ring::RingKind>(region: &Arc<Region>, count: u64) -> shm_testkit::Forked {
    let region = region.clone();
    fork(move || {
        let mut p = shm_ring::Producer::<K>::open(region).unwrap();
        let mut buf = vec![0u8; MAX];
        for seq in 0..count {
            let len = message(seq, &mut buf);
            p.send(&buf[..len]).unwrap();
        }
        0
    })
}

/// [`producer_process`] with an async producer (`send().await`), on a runtime of the child's
/// own, made after the fork.
fn async_producer_process<K: shm_ring::RingKind>(region: &Arc<Region>, count: u64) -> shm_testkit::Forked {
    let region = region.clone();
    fork(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let mut p = AsyncProducer::new(shm_ring::Producer::<K>::open(region).unwrap());
            let mut buf = vec![0u8; MAX];
            for seq in 0..count {
                let len = message(seq, &mut buf);
                p.send(&buf[..len]).await.unwrap();
            }
        });
        0
    })
}

/// Receive `count` messages in order with `recv().await`, then `Disconnected`.
async fn receive_all<K: shm_ring::RingKind>(rx: &mut AsyncConsumer<K>, count: u64) {
    let mut buf = Vec::new();
    for seq in 0..count {
        rx.recv(&mut buf).await.unwrap_or_else(|e| panic!("recv of message {seq}: {e}"));
        check(seq, &buf);
    }
    assert_eq!(rx.recv(&mut buf).await, Err(RecvError::Disconnected));
}

#[test]
fn a_million_messages_in_order_from_a_producer_process() {
    let _g = heavy();
    let config = RingConfig::spsc(64 * 1024).max_message(MAX as u64);
    let region = ring(&config);
    let mut rx = AsyncConsumer::new(spsc::Consumer::open(region.clone()).unwrap());
    let child = producer_process::<shm_ring::Spsc>(&region, 1_000_000);
    runtime().block_on(async move {
        tokio::spawn(async move { receive_all(&mut rx, 1_000_000).await }).await.unwrap();
    });
    child.join();
}

#[test]
fn every_kind_through_recv_stream_and_read() {
    let _g = heavy();
    const N: u64 = 100_000;
    // MPSC: two producer processes, each its own stream of sequence numbers; stream 1's
    // producer is async too (a runtime of its own in the child, made after the fork).
    let config = RingConfig::mpsc(64 * 1024, 4).max_message(MAX as u64);
    let region = ring(&config);
    let mut rx = AsyncConsumer::new(mpsc::Consumer::open(region.clone()).unwrap());
    let children: Vec<_> = (0..2u64)
        .map(|stream| {
            let region = region.clone();
            fork(move || {
                let mut p = mpsc::Producer::open(region).unwrap();
                if stream == 0 {
                    for seq in 0..N {
                        p.send(pattern::message(stream, seq, 16, MAX)).unwrap();
                    }
                } else {
                    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                    rt.block_on(async {
                        let mut p = AsyncProducer::new(p);
                        for seq in 0..N {
                            let m = pattern::message(stream, seq, 16, MAX);
                            let mut grant = p.reserve(m.len()).await.unwrap();
                            grant.copy_from_slice(&m);
                            grant.commit();
                        }
                    });
                }
                0
            })
        })
        .collect();
    runtime().block_on(async {
        // As a Stream: ends with the producers.
        let mut next = [0u64; 2];
        let mut got = 0;
        while let Some(m) = rx.next().await {
            let m = m.unwrap();
            let stream = if pattern::check(0, next[0], 16, MAX, &m).is_ok() { 0 } else { 1 };
            pattern::check(stream as u64, next[stream], 16, MAX, &m).unwrap_or_else(|e| panic!("{e}"));
            next[stream] += 1;
            got += 1;
        }
        assert_eq!(next, [N, N]);
        assert_eq!(got, 2 * N);
    });
    for c in children {
        c.join();
    }

    // Broadcast: two async subscribers (one with read().await guards) of one async producer
    // process.
    let config = RingConfig::broadcast(64 * 1024, 4).max_message(MAX as u64);
    let region = ring(&config);
    let mut a = AsyncConsumer::new(broadcast::Subscriber::open(region.clone()).unwrap());
    let mut b = AsyncConsumer::new(broadcast::Subscriber::open(region.clone()).unwrap());
    let child = async_producer_process::<shm_ring::Broadcast>(&region, N);
    runtime().block_on(async move {
        let ta = tokio::spawn(async move { receive_all(&mut a, N).await });
        let tb = tokio::spawn(async move {
            for seq in 0..N {
                let guard = b.read().await.unwrap();
                check(seq, &guard.to_vec());
            }
            assert!(matches!(b.read().await, Err(RecvError::Disconnected)));
        });
        ta.await.unwrap();
        tb.await.unwrap();
    });
    child.join();
}

#[test]
fn an_async_producer_feeds_a_sync_consumer_process_through_send_sink_and_reserve() {
    let _g = heavy();
    const N: u64 = 300_000;
    let config = RingConfig::spsc(16 * 1024).max_message(MAX as u64);
    let region = ring(&config);
    let tx = AsyncProducer::new(spsc::Producer::open(region.clone()).unwrap());
    let r = region.clone();
    let child = fork(move || {
        let mut c = spsc::Consumer::open(r).unwrap();
        let mut buf = Vec::new();
        for seq in 0..N {
            c.recv(&mut buf).unwrap();
            check(seq, &buf);
        }
        assert_eq!(c.recv(&mut buf), Err(RecvError::Disconnected));
        0
    });
    runtime().block_on(async move {
        tokio::spawn(async move {
            let mut tx = tx;
            let mut buf = vec![0u8; MAX];
            // A third each: send().await, reserve().await, and the Sink.
            for seq in 0..N / 3 {
                let len = message(seq, &mut buf);
                tx.send(&buf[..len]).await.unwrap();
            }
            for seq in N / 3..2 * N / 3 {
                let len = message(seq, &mut buf);
                let mut grant = tx.reserve(len).await.unwrap();
                grant.copy_from_slice(&buf[..len]);
                grant.commit();
            }
            let mut sink = tx.into_sink::<Vec<u8>>();
            let rest = futures::stream::iter(2 * N / 3..N).map(|seq| {
                let mut b = vec![0u8; MAX];
                let len = message(seq, &mut b);
                b.truncate(len);
                Ok::<_, SendError<Vec<u8>>>(b)
            });
            sink.send_all(&mut Box::pin(rest)).await.unwrap();
            sink.close().await.unwrap();
        })
        .await
        .unwrap();
    });
    child.join();
}

/// Cancel `recv` ten thousand times with `tokio::time::timeout`, on four rings at once, each
/// fed by a producer thread of another process that pauses at random before each message and
/// then waits for the consumer's answer. A timeout is 1 ms (the call is asleep, registered
/// with the waker thread, when it is dropped) or zero (dropped in its spin). After two
/// cancellations for one message the consumer awaits it with no timeout: the consumers are
/// woken by their wait words only (no 40 ms liveness polls), so if a cancellation had lost a
/// wake-up, that await would never end (a 60 s guard says so). Every message arrives, in
/// order, and no registration is left behind.
#[test]
fn ten_thousand_cancelled_receives_lose_no_message_and_no_wake_up() {
    let _g = heavy();
    let base = shm_ring::aio::registered_waits();
    const PAIRS: usize = 4;
    const PER_PAIR: u32 = 10_000 / PAIRS as u32;
    let config = RingConfig::spsc(4096).max_message(MAX as u64);
    let data: Vec<_> = (0..PAIRS).map(|_| ring(&config)).collect();
    let back: Vec<_> = (0..PAIRS).map(|_| ring(&RingConfig::spsc(4096))).collect();
    let (d, b) = (data.clone(), back.clone());
    let child = fork(move || {
        let threads: Vec<_> = d
            .into_iter()
            .zip(b)
            .enumerate()
            .map(|(i, (d, b))| {
                std::thread::spawn(move || {
                    let mut p = spsc::Producer::open(d).unwrap();
                    let mut answers = spsc::Consumer::open(b).unwrap();
                    let mut rng = shm_testkit::Rng(7 + i as u64);
                    let (mut buf, mut answer) = (vec![0u8; MAX], Vec::new());
                    for seq in 0.. {
                        match rng.below(3) {
                            0 => {}
                            1 => std::thread::sleep(Duration::from_micros(rng.below(300))),
                            _ => std::thread::sleep(Duration::from_micros(1500 + rng.below(1500))),
                        }
                        let len = message(seq, &mut buf);
                        p.send(&buf[..len]).unwrap();
                        answers.recv(&mut answer).unwrap();
                        if answer == b"stop" {
                            break;
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        0
    });
    let ends: Vec<_> = data
        .iter()
        .zip(&back)
        .map(|(d, b)| {
            let rx = AsyncConsumer::new(spsc::Consumer::open(d.clone()).unwrap()).without_liveness_polls();
            (rx, spsc::Producer::open(b.clone()).unwrap())
        })
        .collect();
    let results = runtime().block_on(async move {
        let tasks: Vec<_> = ends
            .into_iter()
            .map(|(mut rx, mut answers)| {
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let (mut received, mut cancelled) = (0u64, 0u32);
                    while cancelled < PER_PAIR {
                        let mut tries = 0;
                        loop {
                            if tries == 2 {
                                let r =
                                    tokio::time::timeout(Duration::from_secs(60), rx.recv(&mut buf)).await;
                                r.expect("a wake-up was lost: the message never woke the await").unwrap();
                                break;
                            }
                            let limit =
                                if cancelled % 2 == 0 { Duration::from_millis(1) } else { Duration::ZERO };
                            match tokio::time::timeout(limit, rx.recv(&mut buf)).await {
                                Err(_elapsed) => {
                                    tries += 1;
                                    cancelled += 1;
                                }
                                Ok(r) => {
                                    r.unwrap();
                                    break;
                                }
                            }
                        }
                        check(received, &buf);
                        received += 1;
                        answers.send(if cancelled < PER_PAIR { &b"next"[..] } else { &b"stop"[..] }).unwrap();
                    }
                    let end = woken(rx.recv(&mut buf), "the close").await;
                    assert_eq!(end, Err(RecvError::Disconnected));
                    (received, cancelled)
                })
            })
            .collect();
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.unwrap());
        }
        results
    });
    child.join();
    assert_eq!(shm_ring::aio::registered_waits(), base, "a registration was left behind");
    let cancelled: u32 = results.iter().map(|r| r.1).sum();
    assert!(cancelled >= 10_000, "{results:?}");
    eprintln!("(received, cancelled) per ring: {results:?}");
}

/// `f`'s output, which must come from a wake of the task: the guard (60 s) is checked first and
/// never polls `f` again. (`tokio::time::timeout` would: when it fires it polls the future once
/// more, which finds a message that never woke the task.)
async fn woken<F: std::future::Future>(f: F, what: &str) -> F::Output {
    tokio::select! {
        biased;
        _ = tokio::time::sleep(Duration::from_secs(60)) => panic!("a wake-up was lost: {what} never woke the await"),
        out = f => out,
    }
}

/// A peer killed with SIGKILL while a task awaits it: the consumer's `recv` and the producer's
/// `send` (ring full) end with `PeerDead`, not a hang.
#[test]
fn sigkill_of_the_peer_ends_an_await_with_peer_dead() {
    // (Heavy or not, every test that awaits in this process runs alone: some count the
    // process's registrations.)
    let _g = heavy();
    let rt = runtime();
    // An awaiting consumer, its producer killed.
    let config = RingConfig::spsc(4096).max_message(MAX as u64);
    let region = ring(&config);
    let mut rx = AsyncConsumer::new(spsc::Consumer::open(region.clone()).unwrap());
    let r = region.clone();
    let child = fork(move || {
        let mut p = spsc::Producer::open(r).unwrap();
        p.send(b"attached").unwrap();
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    let pid = child.pid() as u32;
    let rx_end = rt.block_on(async {
        let mut buf = Vec::new();
        rx.recv(&mut buf).await.unwrap();
        let waiting = tokio::spawn(async move {
            let r = rx.recv(&mut buf).await;
            (r, Instant::now())
        });
        // The task is asleep in its wait (the message came; nothing else will).
        tokio::time::sleep(Duration::from_millis(100)).await;
        child.kill(Signal::SIGKILL);
        let killed = Instant::now();
        let (r, at) =
            tokio::time::timeout(Duration::from_secs(20), waiting).await.expect("the await ended").unwrap();
        assert_eq!(r, Err(RecvError::PeerDead { pid }));
        at.duration_since(killed)
    });
    // An awaiting producer (the ring full), its consumer killed.
    let region = ring(&config);
    let mut tx = AsyncProducer::new(spsc::Producer::open(region.clone()).unwrap());
    let attached = Gate::new();
    let r = region.clone();
    let fd = attached.write_fd();
    let child = fork(move || {
        let _c = spsc::Consumer::open(r).unwrap();
        Gate::open_fd(fd);
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    assert!(attached.wait(1, Duration::from_secs(30)));
    let pid = child.pid() as u32;
    let tx_end = rt.block_on(async {
        while tx.try_send([0u8; 64]).is_ok() {}
        let waiting = tokio::spawn(async move {
            let r = tx.send(vec![1u8; 64]).await;
            (r, Instant::now())
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        child.kill(Signal::SIGKILL);
        let killed = Instant::now();
        let (r, at) =
            tokio::time::timeout(Duration::from_secs(20), waiting).await.expect("the await ended").unwrap();
        assert!(matches!(r, Err(SendError::PeerDead { pid: p, .. }) if p == pid), "{r:?}");
        at.duration_since(killed)
    });
    eprintln!("PeerDead after SIGKILL: consumer {rx_end:?}, producer {tx_end:?}");
}

/// Role of [`an_idle_await_uses_under_one_percent_of_a_core`]: await an empty ring for 3 s and
/// print the CPU time this process used meanwhile.
#[test]
#[ignore = "run by an_idle_await_uses_under_one_percent_of_a_core"]
fn idle_peer() {
    if role().as_deref() != Some("idle") {
        return;
    }
    let config = RingConfig::spsc(4096);
    let region = ring(&config);
    let _tx = spsc::Producer::open(region.clone()).unwrap();
    let mut rx = AsyncConsumer::new(spsc::Consumer::open(region).unwrap());
    let rt = runtime();
    let (cpu, wall) = rt.block_on(async {
        let mut buf = Vec::new();
        // Once to start the waker thread and warm up.
        assert!(tokio::time::timeout(Duration::from_millis(200), rx.recv(&mut buf)).await.is_err());
        let (cpu0, t0) = (cpu_time(), Instant::now());
        assert!(tokio::time::timeout(Duration::from_secs(3), rx.recv(&mut buf)).await.is_err());
        (cpu_time() - cpu0, t0.elapsed())
    });
    println!("idle: cpu_us={} wall_us={}", cpu.as_micros(), wall.as_micros());
}

fn cpu_time() -> Duration {
    let u = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).unwrap();
    let us = |t: nix::sys::time::TimeVal| Duration::new(t.tv_sec() as u64, t.tv_usec() as u32 * 1000);
    us(u.user_time()) + us(u.system_time())
}

/// An awaited empty ring costs at most 1 % of a core (its own process, all threads counted:
/// the runtime's and the waker thread).
#[test]
fn an_idle_await_uses_under_one_percent_of_a_core() {
    // Alone: the heavy streams of this binary would share the cores with the measured process.
    let _g = heavy();
    let mut peer = spawn_peer("idle_peer", "idle", &[]);
    let mut out = std::io::BufReader::new(peer.stdout.take().unwrap());
    let line = expect_line(&mut out, "idle: ");
    assert!(peer.wait().unwrap().success());
    let field = |name: &str| -> f64 {
        let at = line.find(name).unwrap() + name.len();
        line[at..].split_whitespace().next().unwrap().parse().unwrap()
    };
    let share = field("cpu_us=") / field("wall_us=");
    eprintln!("idle await: {:.3} % of a core ({line})", share * 100.0);
    assert!(share <= 0.01, "an idle await took {:.2} % of a core", share * 100.0);
}

/// Role: one task awaiting many rings (`select_all` of their streams), each fed by a forked
/// producer process in random order; every ring delivers all its messages in order.
fn many_rings(rings: usize) {
    const PER_RING: u64 = 30;
    let base = shm_ring::aio::registered_waits();
    let config = RingConfig::spsc(4096).max_message(64);
    let regions: Vec<_> = (0..rings).map(|_| ring(&config)).collect();
    let consumers: Vec<_> =
        regions.iter().map(|r| AsyncConsumer::new(spsc::Consumer::open(r.clone()).unwrap())).collect();
    let rs = regions.clone();
    let child = fork(move || {
        let mut ps: Vec<_> = rs.into_iter().map(|r| spsc::Producer::open(r).unwrap()).collect();
        let mut rng = shm_testkit::Rng(11);
        let mut sent = vec![0u64; ps.len()];
        let mut left = ps.len() as u64 * PER_RING;
        while left > 0 {
            let i = rng.below(ps.len() as u64) as usize;
            if sent[i] == PER_RING {
                continue;
            }
            ps[i].send(sent[i].to_le_bytes()).unwrap();
            sent[i] += 1;
            left -= 1;
            if rng.below(8) == 0 {
                std::thread::sleep(Duration::from_micros(rng.below(2000)));
            }
        }
        0
    });
    let counts = runtime().block_on(async move {
        tokio::spawn(async move {
            let streams = consumers.into_iter().enumerate().map(|(i, c)| c.map(move |m| (i, m)));
            let mut all = futures::stream::select_all(streams);
            let mut next = vec![0u64; rings];
            while let Some((i, m)) = all.next().await {
                let seq = u64::from_le_bytes(m.unwrap()[..8].try_into().unwrap());
                assert_eq!(seq, next[i], "ring {i}: message {seq} where {} was due", next[i]);
                next[i] += 1;
            }
            next
        })
        .await
        .unwrap()
    });
    child.join();
    assert_eq!(counts, vec![PER_RING; rings]);
    assert_eq!(shm_ring::aio::registered_waits(), base, "a registration was left behind");
}

/// 150 rings: more pending calls than one `futex_waitv` takes (127), so two waker threads.
#[test]
fn one_task_awaits_a_hundred_and_fifty_rings() {
    let _g = heavy();
    many_rings(150);
    let (threads, waitv) = shm_ring::aio::waker_threads();
    if waitv {
        assert!(threads >= 2, "{threads} waker threads for 150 pending calls");
    }
}

#[test]
#[ignore = "run by the fallback test"]
fn threads_peer() {
    if role().as_deref() != Some("threads") {
        return;
    }
    many_rings(100);
    let (threads, waitv) = shm_ring::aio::waker_threads();
    assert!(!waitv, "SHM_RING_ASYNC_WAITER=threads was not taken");
    println!("threads: {threads}");
}

/// `SHM_RING_ASYNC_WAITER=threads`: one waker thread per pending call, the same results.
#[test]
fn the_fallback_of_one_thread_per_wait_delivers_the_same() {
    let _g = heavy();
    let mut peer = spawn_peer("threads_peer", "threads", &[("SHM_RING_ASYNC_WAITER", "threads".into())]);
    let mut out = std::io::BufReader::new(peer.stdout.take().unwrap());
    let threads: usize = expect_line(&mut out, "threads: ").parse().unwrap();
    assert!(peer.wait().unwrap().success());
    assert!(threads >= 2, "{threads} waker threads");
}

/// An async end whose wait was registered before a fork goes on waiting in the child: the
/// child has none of the parent's waker threads, and gets its own.
#[test]
fn an_end_registered_before_a_fork_waits_in_the_child() {
    let _g = heavy();
    let config = RingConfig::spsc(4096);
    let region = ring(&config);
    let mut rx = AsyncConsumer::new(spsc::Consumer::open(region.clone()).unwrap());
    let mut tx = spsc::Producer::open(region.clone()).unwrap();
    // Poll the stream with a waker that does nothing until it is past its spin and registered.
    // (The end is leaked below, its registration with it: the tests that count registrations
    // count from what they find.)
    let waker = futures::task::noop_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(20) {
        assert!(std::pin::Pin::new(&mut rx).poll_next(&mut cx).is_pending());
    }
    let base = shm_ring::aio::registered_waits();
    assert!(base >= 1);
    // Leaked: the parent must not drop (and so close) the end the child goes on using.
    let rx: &'static mut AsyncConsumer<shm_ring::Spsc> = Box::leak(Box::new(rx));
    let asleep = Gate::new();
    let fd = asleep.write_fd();
    let child = fork(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let first = rx.next();
            tokio::pin!(first);
            // Poll it once past its spin, then tell the parent to send.
            let polled = tokio::time::timeout(Duration::from_millis(50), &mut first).await;
            assert!(polled.is_err(), "nothing was sent yet");
            Gate::open_fd(fd);
            // (Not `timeout`: it polls the future once more when it fires, which would find
            // the message even if nothing had woken the task.)
            let m = tokio::select! {
                biased;
                _ = tokio::time::sleep(Duration::from_secs(20)) => panic!("the child's await was never woken"),
                m = first => m,
            };
            assert_eq!(m.unwrap().unwrap(), b"after the fork");
        });
        0
    });
    assert!(asleep.wait(1, Duration::from_secs(30)));
    tx.send(b"after the fork").unwrap();
    child.join();
}
