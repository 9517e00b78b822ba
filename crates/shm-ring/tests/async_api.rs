//! The async ends' contracts that are not about speed or other processes' timing: what a
//! dropped `next()` leaves behind, futures polled after they were ready, an end whose inner
//! end is swapped between polls, and a forked child dropping an end registered before the fork
//! while a parent's thread keeps the waker threads busy.
#![cfg(feature = "async")]

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use shm_core::Region;
use shm_ring::aio::{registered_waits, AsyncConsumer};
use shm_ring::{spsc, RingConfig};
use shm_testkit::fork;

/// Every test here counts the process's registrations: one at a time.
static ONE: Mutex<()> = Mutex::new(());

fn one() -> std::sync::MutexGuard<'static, ()> {
    ONE.lock().unwrap_or_else(|e| e.into_inner())
}

fn ring() -> Arc<Region> {
    let config = RingConfig::spsc(4096);
    let region = Region::anonymous(config.region_len()).unwrap();
    shm_ring::init(&region, &config).unwrap();
    Arc::new(region)
}

/// Poll `rx`'s stream with a waker that does nothing until it is past its spin and registered.
fn park_stream(rx: &mut AsyncConsumer<shm_ring::Spsc>) {
    park_stream_for(rx, Duration::from_millis(20));
}

fn park_stream_for(rx: &mut AsyncConsumer<shm_ring::Spsc>, spin: Duration) {
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    let start = Instant::now();
    while start.elapsed() < spin.max(Duration::from_micros(100)) {
        assert!(Pin::new(&mut *rx).poll_next(&mut cx).is_pending());
    }
    // Past the spin (at most 50 µs): this poll registers.
    assert!(Pin::new(&mut *rx).poll_next(&mut cx).is_pending());
}

#[test]
fn a_dropped_next_leaves_its_registration_only_until_the_next_call() {
    let _g = one();
    let base = registered_waits();
    let region = ring();
    let mut tx = spsc::Producer::open(region.clone()).unwrap();
    let mut rx = AsyncConsumer::new(spsc::Consumer::open(region).unwrap());
    park_stream(&mut rx);
    assert_eq!(registered_waits(), base + 1, "a pending stream holds its registration");
    // Any call on the end ends the stream's wait.
    let mut buf = Vec::new();
    assert!(rx.try_recv(&mut buf).is_err());
    assert_eq!(registered_waits(), base);
    // Nothing was lost meanwhile.
    tx.send(b"one").unwrap();
    assert_eq!(futures::executor::block_on(rx.next()).unwrap().unwrap(), b"one");
    park_stream(&mut rx);
    drop(rx);
    assert_eq!(registered_waits(), base, "dropping the end drops its registration");
}

#[test]
#[should_panic(expected = "RecvFuture polled after it was ready")]
fn a_recv_future_polled_after_it_was_ready_panics_rather_than_take_another_message() {
    let region = ring();
    let mut tx = spsc::Producer::open(region.clone()).unwrap();
    let mut rx = AsyncConsumer::new(spsc::Consumer::open(region).unwrap());
    tx.send(b"one").unwrap();
    tx.send(b"two").unwrap();
    let mut buf = Vec::new();
    let mut f = rx.recv(&mut buf);
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    assert_eq!(Pin::new(&mut f).poll(&mut cx), Poll::Ready(Ok(3)));
    let _ = Pin::new(&mut f).poll(&mut cx);
}

use std::future::Future;

/// The stream's wait was registered for one ring's memory; the inner end is swapped for
/// another ring's, whose memory the registration does not hold: the next wait registers for
/// the new memory, and is woken by it.
#[test]
fn swapping_the_inner_end_between_polls_waits_on_the_new_ring() {
    let _g = one();
    let (r1, r2) = (ring(), ring());
    let mut rx = AsyncConsumer::new(spsc::Consumer::open(r1.clone()).unwrap());
    park_stream(&mut rx);
    let old = std::mem::replace(rx.get_mut(), spsc::Consumer::open(r2.clone()).unwrap());
    drop(old);
    drop(r1);
    let mut tx = spsc::Producer::open(r2).unwrap();
    let woken = Arc::new(AtomicBool::new(false));
    let w = woken.clone();
    let waker = futures::task::waker(Arc::new(Flag(w)));
    let mut cx = Context::from_waker(&waker);
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(20) {
        woken.store(false, Ordering::SeqCst);
        assert!(Pin::new(&mut rx).poll_next(&mut cx).is_pending());
    }
    woken.store(false, Ordering::SeqCst);
    assert!(Pin::new(&mut rx).poll_next(&mut cx).is_pending(), "registered, past the spin");
    tx.send(b"two").unwrap();
    let end = Instant::now() + Duration::from_secs(20);
    while !woken.load(Ordering::SeqCst) {
        assert!(Instant::now() < end, "the send on the new ring never woke the stream");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(Pin::new(&mut rx).poll_next(&mut cx), Poll::Ready(Some(Ok(b"two".to_vec()))));
}

struct Flag(Arc<AtomicBool>);

impl futures::task::ArcWake for Flag {
    fn wake_by_ref(arc_self: &Arc<Self>) {
        arc_self.0.store(true, Ordering::SeqCst);
    }
}

/// A forked child drops an end that was registered before the fork, the fork taken while the
/// waker threads' locks were held (as a busy waker thread holds them): the child must not wait
/// on a lock that nobody in it will release.
#[test]
fn a_forked_child_drops_an_end_registered_before_the_fork_without_hanging() {
    let _g = one();
    for i in 0..3 {
        let region = ring();
        let mut end = AsyncConsumer::new(spsc::Consumer::open(region).unwrap());
        park_stream(&mut end);
        // The end is dropped in both processes, but outside the held locks in this one: its
        // address crosses the fork (each process frees its own copy).
        let end = Box::into_raw(Box::new(end)) as usize;
        let child = shm_ring::aio::holding_waker_locks(|| {
            fork(move || {
                // SAFETY: the Box made above, in this process's copy of the memory, freed once.
                drop(unsafe { Box::from_raw(end as *mut AsyncConsumer<shm_ring::Spsc>) });
                0
            })
        });
        // SAFETY: as in the child, for this process's copy.
        drop(unsafe { Box::from_raw(end as *mut AsyncConsumer<shm_ring::Spsc>) });
        // Reaped here with WNOHANG: a child still there after 20 s is hung (dropping `child`
        // then kills and reaps it).
        let pid = nix::unistd::Pid::from_raw(child.pid());
        let limit = Instant::now() + Duration::from_secs(20);
        loop {
            match nix::sys::wait::waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG)).unwrap() {
                nix::sys::wait::WaitStatus::StillAlive => {
                    assert!(Instant::now() < limit, "child {i} hung dropping its end");
                    std::thread::sleep(Duration::from_millis(1));
                }
                nix::sys::wait::WaitStatus::Exited(_, 0) => break,
                other => panic!("child {i} failed dropping its end: {other:?}"),
            }
        }
        std::mem::forget(child); // reaped above
    }
}
