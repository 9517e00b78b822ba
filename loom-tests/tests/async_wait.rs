//! The async wait under loom: a pending `recv` registering with the waker thread while the
//! producer sends and notifies, and a `recv` dropped (cancelled) at any point before a second
//! one waits. The waker thread is a model thread running the reactor's turns (one-word shards,
//! sleeping on the heap memory's futex model). A lost wake-up leaves the consumer waiting for
//! a wake that never comes, which loom reports as a deadlock.
#![cfg(loom)]

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Wake, Waker};

use loom::sync::atomic::AtomicBool;
use loom::sync::Arc;
use loom::thread;
use shm_ring::aio::{AsyncConsumer, ModelReactor};
use shm_ring::model::spsc_pair;
use shm_ring::RingConfig;

/// A waker that sets a flag.
struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
    fn wake_by_ref(self: &std::sync::Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// The waker thread of the model: turns until the model is over.
fn waker_thread(model: Arc<ModelReactor>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        while !model.stopped() {
            if model.started() {
                model.turn();
            } else {
                thread::yield_now();
            }
        }
    })
}

/// Poll `f` until it is ready, waiting for its waker between polls.
fn block_on<F: Future>(f: F) -> F::Output {
    let flag = std::sync::Arc::new(Flag(AtomicBool::new(false)));
    let waker = Waker::from(flag.clone());
    let mut cx = Context::from_waker(&waker);
    let mut f = pin!(f);
    loop {
        flag.0.store(false, Ordering::SeqCst);
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        while !flag.0.load(Ordering::SeqCst) {
            thread::yield_now();
        }
    }
}

/// The three threads of both models: the consumer here (an async end), a producer thread
/// sending "one", and the waker thread. `body` runs on the consumer; then the model ends.
fn with_sender(body: impl FnOnce(&mut AsyncConsumer<shm_ring::Spsc>, &ModelReactor)) {
    let (mut p, c) = spsc_pair(&RingConfig::spsc(256).max_message(32));
    let model = Arc::new(ModelReactor::new());
    let mut rx = AsyncConsumer::with_model(c, &model);
    let w = waker_thread(model.clone());
    let t = thread::spawn(move || {
        p.try_send(b"one").unwrap();
        p
    });
    body(&mut rx, &model);
    let _p = t.join().unwrap();
    model.stop();
    w.join().unwrap();
}

/// A `recv` that registers while the producer sends: it is woken and gets the message.
#[test]
fn register_racing_notify() {
    loom::model(|| {
        with_sender(|rx, model| {
            let mut buf = Vec::new();
            assert_eq!(block_on(rx.recv(&mut buf)), Ok(3));
            assert_eq!(buf, b"one");
            assert_eq!(model.registered(), 0, "a done call left its registration");
        })
    });
}

/// A `recv` polled once and dropped (cancelled), at whatever point the send has reached; then
/// a second `recv` waits for the message. Nothing is lost, the cancelled call leaves no
/// registration, and the second call is woken.
#[test]
fn cancel_racing_notify() {
    loom::model(|| {
        with_sender(|rx, model| {
            let mut buf = Vec::new();
            let first = {
                let flag = std::sync::Arc::new(Flag(AtomicBool::new(false)));
                let waker = Waker::from(flag);
                let mut f = pin!(rx.recv(&mut buf));
                f.as_mut().poll(&mut Context::from_waker(&waker))
            };
            if first == Poll::Pending {
                assert_eq!(model.registered(), 0, "a dropped call left its registration");
                assert_eq!(block_on(rx.recv(&mut buf)), Ok(3));
            }
            assert_eq!(buf, b"one");
        })
    });
}
