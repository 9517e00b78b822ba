#![cfg(feature = "async")]
use std::pin::Pin;
use std::sync::Arc;
use std::task::Context;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt, FutureExt};
use shm_core::Region;
use shm_ring::aio::{registered_waits, AsyncConsumer};
use shm_ring::{spsc, RingConfig};
use shm_testkit::{fork, Exit};

fn ring(config: &RingConfig) -> Arc<Region> {
    let region = Region::anonymous(config.region_len()).unwrap();
    shm_ring::init(&region, config).unwrap();
    Arc::new(region)
}

fn poll_until_registered(a: &mut AsyncConsumer<shm_ring::Spsc>, base: usize) {
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    let start = Instant::now();
    while registered_waits() == base {
        assert!(Pin::new(&mut *a).poll_next(&mut cx).is_pending());
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}

/// Safe code only: swap the sync end under an AsyncConsumer whose stream wait is armed,
/// drop the swapped-out end (its mapping goes), and the waker thread dereferences the word.
#[test]
fn swapped_inner_end_unmapped_under_an_armed_stream_wait() {
    let child = fork(|| {
        let cfg = RingConfig::spsc(4096);
        let mut a = AsyncConsumer::new(spsc::Consumer::open(ring(&cfg)).unwrap());
        // a second ring, swapped in
        let c2 = spsc::Consumer::open(ring(&cfg)).unwrap();
        let c1 = std::mem::replace(a.get_mut(), c2);
        poll_until_registered(&mut a, 0);
        // swap back in some other end, drop the one whose word the entry points at
        let c2 = std::mem::replace(a.get_mut(), c1);
        drop(c2); // last Arc<Region> of ring 2: munmap
        std::thread::sleep(Duration::from_millis(300)); // the entry's due passes: scan
        eprintln!("child survived");
        0
    });
    let exit = child.wait();
    eprintln!("child exit: {exit:?}");
    assert_eq!(exit, Exit::Code(0), "the waker thread crashed the process");
}

/// A `next()` dropped while pending leaves the stream's registration taken.
#[test]
fn dropped_next_leaves_a_registration() {
    let child = fork(|| {
        let cfg = RingConfig::spsc(4096);
        let r = ring(&cfg);
        let _p = spsc::Producer::open(r.clone()).unwrap();
        let mut a = AsyncConsumer::new(spsc::Consumer::open(r).unwrap());
        let base = registered_waits();
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let start = Instant::now();
        while registered_waits() == base {
            let mut f = a.next();
            assert!(f.poll_unpin(&mut cx).is_pending());
            drop(f);
            assert!(start.elapsed() < Duration::from_secs(5));
        }
        std::thread::sleep(Duration::from_millis(200));
        let after = registered_waits();
        eprintln!("registered after dropping next(): base {base}, now {after}");
        if after != base { 1 } else { 0 }
    });
    let exit = child.wait();
    assert_eq!(exit, Exit::Code(0));
}
