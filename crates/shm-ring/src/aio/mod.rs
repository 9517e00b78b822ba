//! Async ends (feature `async`): await a ring from tokio, async-std, smol or any executor.
//!
//! ```no_run
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use shm_core::Region;
//! use shm_ring::aio::AsyncConsumer;
//! use shm_ring::spsc;
//!
//! let region = Region::open_shm("/telemetry")?; // made by the producer's process
//! let mut rx = AsyncConsumer::new(spsc::Consumer::open(region)?);
//! let mut buf = Vec::new();
//! while let Ok(len) = rx.recv(&mut buf).await {
//!     println!("{len} bytes");
//! }
//! # Ok(()) }
//! ```
//!
//! [`AsyncProducer`] and [`AsyncConsumer`] wrap a [`Producer`] / [`Consumer`] of any kind
//! (SPSC, MPSC, broadcast) and add the waiting calls as futures: [`send`](AsyncProducer::send),
//! [`reserve`](AsyncProducer::reserve), [`recv`](AsyncConsumer::recv),
//! [`recv_into`](AsyncConsumer::recv_into), [`read`](AsyncConsumer::read) (a guard); a consumer
//! is a [`Stream`] of messages, and
//! [`into_sink`](AsyncProducer::into_sink) makes a producer a [`Sink`].
//! The calls that do not wait ([`try_send`](AsyncProducer::try_send),
//! [`try_recv`](AsyncConsumer::try_recv), ...) are the sync end's. There are no timed forms:
//! use the executor's (`tokio::time::timeout`); every future here may be dropped at any point.
//!
//! # How a pending call is woken
//! Through its task's [`Waker`](std::task::Waker): no executor is needed or assumed. The ring
//! and its handshake are the ones the blocking calls use, so an async end works with a sync
//! (or async) peer in another process, and the layout is unchanged:
//! - a call that finds nothing to do first spins for the blocking calls' spin budget (50 µs,
//!   less after waits that ended asleep) by waking its own task and returning `Pending`: the
//!   executor runs its other ready tasks in between and polls the call again, so a peer that
//!   answers within microseconds costs no system call and holds no thread;
//! - then it announces itself in the ring's header exactly as a blocking wait does, looks
//!   again, and hands the wait word and the value it read to a **waker thread** of this
//!   process. That thread sleeps on the words of all pending calls at once with
//!   `futex_waitv` (Linux 5.16 and later; one thread per 127 pending calls), and wakes the
//!   task whose word moved. Where `futex_waitv` is refused (older kernels, some seccomp
//!   filters; or with `SHM_RING_ASYNC_WAITER=threads`), each pending call gets a thread of its
//!   own that sleeps on its one word. Threads start on first need and end after a second
//!   with nothing to wait for;
//! - a pending call is also polled once per 40 ms, to look at its peer: a peer that closed
//!   ends the wait at once (its close wakes the word), a peer killed with SIGKILL within
//!   about 100 ms, from the same evidence the blocking calls use. An awaited empty ring costs
//!   about 0.5 % of a core, most of it that look at the peer (as for a blocking wait).
//!
//! # Cancellation
//! Every future here is cancel-safe: dropping it, at any point, loses no message and leaves no
//! registration behind. A message is taken from the ring (or written into it) only in the poll
//! that returns `Ready`, all at once. Dropping [`recv`](AsyncConsumer::recv) before it is
//! ready leaves the message in the ring for the next call; dropping
//! [`send`](AsyncProducer::send) before it is ready sends nothing (the message is dropped with
//! the future; the [`Sink`] keeps it instead, for its next poll). The one trace a dropped
//! call may leave is the `waiters` flag of the ring's header, which the peer's next notify
//! clears at the cost of one needless `FUTEX_WAKE`, as after a blocking wait that found its
//! message at the last look.
//!
//! A [`Stream`] or a [`Sink`] has no future of its own to hold its wait: the end holds it, so
//! a dropped `next()` (or `SinkExt::send`) leaves its registration until the end's next poll,
//! the next call on the end, or the end's drop, whichever comes first. Its message is not
//! lost either way.
//!
//! A future polled again after it returned `Ready` panics, as an `async fn` does (a second
//! receive would take another message).
//!
//! # Fork
//! An async end goes on working in a child process after `fork` (the child gets waker threads
//! of its own at its first wait), also when a wait was pending at the fork.

mod poll;
mod reactor;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::{FusedStream, Stream};
use futures_sink::Sink;

use crate::channel::{claimed, ClaimOf, ConsumerOf, ProducerOf};
use crate::error::{RecvError, RecvStop, SendError, SendFail, SendStop, TryRecvError, TrySendError};
use crate::memory::{DefaultMemory, Memory};
use crate::protocol::{ConsumerCore, Core, Next, ProducerCore, RingKind};
use crate::wait::Step;
use crate::{Consumer, Grant, Producer, ReadGuard};

use poll::Waiting;

/// An async sending end: a [`Producer`] whose waiting calls are futures. See the
/// [module docs](self).
pub struct AsyncProducer<K: RingKind, M: Memory + Clone + 'static = DefaultMemory> {
    inner: Producer<K, M>,
    waker: poll::Waker,
}

/// An async receiving end: a [`Consumer`] whose waiting calls are futures, and a
/// [`Stream`] of messages. See the [module docs](self).
pub struct AsyncConsumer<K: RingKind, M: Memory + Clone + 'static = DefaultMemory> {
    inner: Consumer<K, M>,
    waker: poll::Waker,
    /// The wait of `poll_next` (a stream has no future to keep it in).
    stream: Waiting,
    /// The stream returned `None` or a final error.
    ended: bool,
}

impl<K: RingKind, M: Memory + Clone + 'static> fmt::Debug for AsyncProducer<K, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("AsyncProducer").field(&self.inner).finish()
    }
}

impl<K: RingKind, M: Memory + Clone + 'static> fmt::Debug for AsyncConsumer<K, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("AsyncConsumer").field(&self.inner).finish()
    }
}

/// The waker of an end in this process.
#[cfg(not(loom))]
fn process_waker() -> poll::Waker {
    poll::Waker { reactor: None, liveness_polls: true }
}

impl<K: RingKind, M: Memory + Clone + 'static> AsyncProducer<K, M> {
    /// Make `producer` async.
    #[cfg(not(loom))]
    pub fn new(producer: Producer<K, M>) -> Self {
        AsyncProducer { inner: producer, waker: process_waker() }
    }

    /// [`new`](Self::new), with the waker threads of a loom model.
    #[cfg(loom)]
    #[doc(hidden)]
    pub fn with_model(producer: Producer<K, M>, model: &ModelReactor) -> Self {
        AsyncProducer {
            inner: producer,
            waker: poll::Waker { reactor: Some(model.0.clone()), liveness_polls: false },
        }
    }
}

impl<K: RingKind, M: Memory + Clone + 'static> AsyncProducer<K, M> {
    /// The sync end.
    pub fn get_ref(&self) -> &Producer<K, M> {
        &self.inner
    }

    /// The sync end, for its calls that do not wait (its blocking calls would block the
    /// executor's thread).
    pub fn get_mut(&mut self) -> &mut Producer<K, M> {
        &mut self.inner
    }

    /// The sync end back.
    pub fn into_inner(self) -> Producer<K, M> {
        self.inner
    }

    /// Data bytes of the ring.
    pub fn capacity(&self) -> usize {
        self.inner.capacity()
    }

    /// The largest payload this ring carries.
    pub fn max_message(&self) -> usize {
        self.inner.max_message()
    }

    /// Send a copy of `msg` if there is room now ([`Producer::try_send`]).
    pub fn try_send<T: AsRef<[u8]>>(&mut self, msg: T) -> Result<(), TrySendError<T>> {
        self.inner.try_send(msg)
    }

    /// Reserve `len` bytes in place if there is room now ([`Producer::try_reserve`]).
    pub fn try_reserve(&mut self, len: usize) -> Result<Grant<'_, K, M>, TrySendError<()>> {
        self.inner.try_reserve(len)
    }

    /// Send a copy of `msg`, waiting for room as long as it takes; as [`Producer::send`].
    ///
    /// Cancel-safe: dropped before it is ready, it has sent nothing (and drops `msg`).
    pub fn send<T: AsRef<[u8]>>(&mut self, msg: T) -> SendFuture<'_, K, M, T> {
        SendFuture { end: self, msg: Some(msg), waiting: Waiting::default() }
    }

    /// Reserve `len` bytes to write a message in place, waiting for room as long as it takes;
    /// as [`Producer::reserve`]. The [`Grant`] publishes the message when committed.
    ///
    /// Cancel-safe: dropped before it is ready, it has reserved nothing.
    pub fn reserve(&mut self, len: usize) -> ReserveFuture<'_, K, M> {
        ReserveFuture { end: Some(self), len, waiting: Waiting::default() }
    }

    /// This end as a [`Sink`] of messages of type `T`.
    pub fn into_sink<T: AsRef<[u8]>>(self) -> ProducerSink<K, M, T> {
        ProducerSink { end: self, pending: None, waiting: Waiting::default() }
    }

    /// One poll of a wait for room for `len` bytes.
    fn poll_claim(
        &mut self,
        waiting: &mut Waiting,
        cx: &mut Context<'_>,
        len: usize,
    ) -> Poll<Result<ClaimOf<K, M>, SendStop>> {
        if !waiting.begun() && !cfg!(loom) {
            match self.inner.core.try_claim(len) {
                Ok(c) => return Poll::Ready(Ok(c)),
                Err(SendFail::Stop(s)) => return Poll::Ready(Err(s)),
                Err(SendFail::Full) => {}
            }
        }
        let inner = &mut self.inner;
        waiting.poll(
            cx,
            &mut inner.spin,
            &self.waker,
            &mut inner.core,
            ProducerOf::<K, M>::mem,
            |h| &h.space_ready,
            |core| claimed(core.try_claim(len)),
            |core, check_alive| core.consumer_gone(check_alive),
        )
    }
}

impl<K: RingKind, M: Memory + Clone + 'static> AsyncConsumer<K, M> {
    /// Make `consumer` async.
    #[cfg(not(loom))]
    pub fn new(consumer: Consumer<K, M>) -> Self {
        AsyncConsumer { inner: consumer, waker: process_waker(), stream: Waiting::default(), ended: false }
    }

    /// [`new`](Self::new), with the waker threads of a loom model.
    #[cfg(loom)]
    #[doc(hidden)]
    pub fn with_model(consumer: Consumer<K, M>, model: &ModelReactor) -> Self {
        let waker = poll::Waker { reactor: Some(model.0.clone()), liveness_polls: false };
        AsyncConsumer { inner: consumer, waker, stream: Waiting::default(), ended: false }
    }
}

impl<K: RingKind, M: Memory + Clone + 'static> AsyncConsumer<K, M> {
    /// The sync end.
    pub fn get_ref(&self) -> &Consumer<K, M> {
        &self.inner
    }

    /// The sync end, for its calls that do not wait (its blocking calls would block the
    /// executor's thread).
    pub fn get_mut(&mut self) -> &mut Consumer<K, M> {
        self.settle();
        &mut self.inner
    }

    /// The sync end back.
    pub fn into_inner(mut self) -> Consumer<K, M> {
        self.settle();
        self.inner
    }

    /// Data bytes of the ring.
    pub fn capacity(&self) -> usize {
        self.inner.capacity()
    }

    /// The largest payload this ring carries.
    pub fn max_message(&self) -> usize {
        self.inner.max_message()
    }

    /// Receive a copy of the next message if there is one now ([`Consumer::try_recv`]).
    pub fn try_recv(&mut self, buf: &mut Vec<u8>) -> Result<usize, TryRecvError> {
        self.settle();
        self.inner.try_recv(buf)
    }

    /// The next message in place if there is one now ([`Consumer::try_read`]).
    pub fn try_read(&mut self) -> Result<ReadGuard<'_, K, M>, TryRecvError> {
        self.settle();
        self.inner.try_read()
    }

    /// Receive a copy of the next message into `buf` (cleared first), waiting as long as it
    /// takes; its length. As [`Consumer::recv`].
    ///
    /// Cancel-safe: dropped before it is ready, it has taken nothing from the ring.
    pub fn recv<'a>(&'a mut self, buf: &'a mut Vec<u8>) -> RecvFuture<'a, K, M> {
        self.settle();
        RecvFuture { end: self, buf, waiting: Waiting::default(), done: false }
    }

    /// Receive the next message into `buf`, which must be large enough (otherwise the message
    /// stays in the ring: [`RecvError::BufferTooSmall`]); its length. As
    /// [`Consumer::recv_into`].
    ///
    /// Cancel-safe: dropped before it is ready, it has taken nothing from the ring.
    pub fn recv_into<'a>(&'a mut self, buf: &'a mut [u8]) -> RecvIntoFuture<'a, K, M> {
        self.settle();
        RecvIntoFuture { end: self, buf, waiting: Waiting::default(), done: false }
    }

    /// The next message in place, waiting as long as it takes: a [`ReadGuard`] that consumes
    /// it when dropped. As [`Consumer::read`].
    ///
    /// Cancel-safe: dropped before it is ready, it has taken nothing from the ring.
    pub fn read(&mut self) -> ReadFuture<'_, K, M> {
        self.settle();
        ReadFuture { end: Some(self), waiting: Waiting::default() }
    }

    /// Test hook: pending calls are woken by their wait word only, never polled once per
    /// 40 ms for a look at the producers (so a dead producer is not noticed, and a lost
    /// wake-up would hang the call instead of delaying it).
    #[doc(hidden)]
    pub fn without_liveness_polls(mut self) -> Self {
        self.waker.liveness_polls = false;
        self
    }

    /// One poll of a wait for the next record.
    fn poll_next_record(
        &mut self,
        waiting: &mut Waiting,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Next, RecvStop>> {
        Self::poll_record(&mut self.inner, &self.waker, waiting, cx)
    }

    fn poll_record(
        inner: &mut Consumer<K, M>,
        waker: &poll::Waker,
        waiting: &mut Waiting,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Next, RecvStop>> {
        if !waiting.begun() && !cfg!(loom) {
            if let Some(n) = inner.core.next_in_batch() {
                return Poll::Ready(Ok(n));
            }
        }
        let r = waiting.poll(
            cx,
            &mut inner.spin,
            waker,
            &mut inner.core,
            ConsumerOf::<K, M>::mem,
            |h| &h.data_ready,
            |core| match core.wait_step(None) {
                Ok(Some(n)) => Step::Done(Ok(n)),
                Ok(None) => Step::Pending,
                Err(e) => Step::Done(Err(e)),
            },
            |core, check_alive| core.producers_gone(check_alive),
        );
        if r.is_ready() {
            inner.core.wait_done();
        }
        r
    }

    /// End a wait the stream left pending (its `next()` dropped, or never polled again): the
    /// other calls start from a clean core, and the registration goes.
    fn settle(&mut self) {
        if self.stream.begun() {
            self.inner.core.wait_done();
            self.stream = Waiting::default();
        }
    }

    /// A wait dropped before it was done: reset what the wait set up in the core.
    fn cancel(&mut self, waiting: &Waiting) {
        if waiting.begun() {
            self.inner.core.wait_done();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Futures
// ---------------------------------------------------------------------------------------------

/// The future of [`AsyncProducer::send`].
#[must_use = "futures do nothing unless polled"]
pub struct SendFuture<'a, K: RingKind, M: Memory + Clone + 'static, T> {
    end: &'a mut AsyncProducer<K, M>,
    /// `None` once sent.
    msg: Option<T>,
    waiting: Waiting,
}

impl<K: RingKind, M: Memory + Clone + 'static, T: AsRef<[u8]>> Future for SendFuture<'_, K, M, T> {
    type Output = Result<(), SendError<T>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = Pin::into_inner(self);
        let len = this.msg.as_ref().expect("SendFuture polled after it was ready").as_ref().len();
        match this.end.poll_claim(&mut this.waiting, cx, len) {
            Poll::Ready(Ok(claim)) => {
                let msg = this.msg.take().expect("the message is here until sent");
                this.end.inner.fill_and_commit(claim, msg.as_ref());
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(stop)) => Poll::Ready(Err(SendError::new(
                stop,
                this.msg.take().expect("the message is here until sent"),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The future of [`AsyncProducer::reserve`].
#[must_use = "futures do nothing unless polled"]
pub struct ReserveFuture<'a, K: RingKind, M: Memory + Clone + 'static> {
    /// `None` once ready (moved into the grant).
    end: Option<&'a mut AsyncProducer<K, M>>,
    len: usize,
    waiting: Waiting,
}

impl<'a, K: RingKind, M: Memory + Clone + 'static> Future for ReserveFuture<'a, K, M> {
    type Output = Result<Grant<'a, K, M>, SendError<()>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = Pin::into_inner(self);
        let end = this.end.as_mut().expect("ReserveFuture polled after it was ready");
        match end.poll_claim(&mut this.waiting, cx, this.len) {
            Poll::Ready(Ok(claim)) => {
                let end = this.end.take().expect("checked above");
                Poll::Ready(Ok(Grant::new(&mut end.inner, claim, this.len)))
            }
            Poll::Ready(Err(stop)) => {
                this.end = None;
                Poll::Ready(Err(SendError::new(stop, ())))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The future of [`AsyncConsumer::recv`].
#[must_use = "futures do nothing unless polled"]
pub struct RecvFuture<'a, K: RingKind, M: Memory + Clone + 'static> {
    end: &'a mut AsyncConsumer<K, M>,
    buf: &'a mut Vec<u8>,
    waiting: Waiting,
    /// Ready once: a second poll would take another message.
    done: bool,
}

impl<K: RingKind, M: Memory + Clone + 'static> Future for RecvFuture<'_, K, M> {
    type Output = Result<usize, RecvError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = Pin::into_inner(self);
        assert!(!this.done, "RecvFuture polled after it was ready");
        let r = this.end.poll_next_record(&mut this.waiting, cx);
        this.done = r.is_ready();
        match r {
            Poll::Ready(Ok(n)) => Poll::Ready(Ok(this.end.inner.take_vec(n, this.buf))),
            Poll::Ready(Err(stop)) => Poll::Ready(Err(stop.into())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<K: RingKind, M: Memory + Clone + 'static> Drop for RecvFuture<'_, K, M> {
    fn drop(&mut self) {
        self.end.cancel(&self.waiting);
    }
}

/// The future of [`AsyncConsumer::recv_into`].
#[must_use = "futures do nothing unless polled"]
pub struct RecvIntoFuture<'a, K: RingKind, M: Memory + Clone + 'static> {
    end: &'a mut AsyncConsumer<K, M>,
    buf: &'a mut [u8],
    waiting: Waiting,
    /// As in [`RecvFuture`].
    done: bool,
}

impl<K: RingKind, M: Memory + Clone + 'static> Future for RecvIntoFuture<'_, K, M> {
    type Output = Result<usize, RecvError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = Pin::into_inner(self);
        assert!(!this.done, "RecvIntoFuture polled after it was ready");
        let r = this.end.poll_next_record(&mut this.waiting, cx);
        this.done = r.is_ready();
        match r {
            Poll::Ready(Ok(n)) => Poll::Ready(this.end.inner.take_slice(n, this.buf)),
            Poll::Ready(Err(stop)) => Poll::Ready(Err(stop.into())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<K: RingKind, M: Memory + Clone + 'static> Drop for RecvIntoFuture<'_, K, M> {
    fn drop(&mut self) {
        self.end.cancel(&self.waiting);
    }
}

/// The future of [`AsyncConsumer::read`].
#[must_use = "futures do nothing unless polled"]
pub struct ReadFuture<'a, K: RingKind, M: Memory + Clone + 'static> {
    /// `None` once ready (moved into the guard).
    end: Option<&'a mut AsyncConsumer<K, M>>,
    waiting: Waiting,
}

impl<'a, K: RingKind, M: Memory + Clone + 'static> Future for ReadFuture<'a, K, M> {
    type Output = Result<ReadGuard<'a, K, M>, RecvError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = Pin::into_inner(self);
        let end = this.end.as_mut().expect("ReadFuture polled after it was ready");
        match end.poll_next_record(&mut this.waiting, cx) {
            Poll::Ready(Ok(next)) => {
                let end = this.end.take().expect("checked above");
                Poll::Ready(Ok(ReadGuard { consumer: &mut end.inner, next }))
            }
            Poll::Ready(Err(stop)) => {
                this.end = None;
                Poll::Ready(Err(stop.into()))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<K: RingKind, M: Memory + Clone + 'static> Drop for ReadFuture<'_, K, M> {
    fn drop(&mut self) {
        if let Some(end) = self.end.as_mut() {
            end.cancel(&self.waiting);
        }
    }
}

// Nothing here is pinned structurally (the futures hold references and plain state; a
// message `T` is only moved out, never pinned), so every type is `Unpin`, whatever its
// parameters.
impl<K: RingKind, M: Memory + Clone + 'static> Unpin for AsyncProducer<K, M> {}
impl<K: RingKind, M: Memory + Clone + 'static> Unpin for AsyncConsumer<K, M> {}
impl<K: RingKind, M: Memory + Clone + 'static, T> Unpin for SendFuture<'_, K, M, T> {}
impl<K: RingKind, M: Memory + Clone + 'static> Unpin for ReserveFuture<'_, K, M> {}
impl<K: RingKind, M: Memory + Clone + 'static> Unpin for RecvFuture<'_, K, M> {}
impl<K: RingKind, M: Memory + Clone + 'static> Unpin for RecvIntoFuture<'_, K, M> {}
impl<K: RingKind, M: Memory + Clone + 'static> Unpin for ReadFuture<'_, K, M> {}
impl<K: RingKind, M: Memory + Clone + 'static, T> Unpin for ProducerSink<K, M, T> {}

macro_rules! debug_future {
    ($($name:ident),*) => {$(
        impl<K: RingKind, M: Memory + Clone + 'static> fmt::Debug for $name<'_, K, M> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name)).field("waiting", &self.waiting).finish_non_exhaustive()
            }
        }
    )*};
}
debug_future!(ReserveFuture, RecvFuture, RecvIntoFuture, ReadFuture);

impl<K: RingKind, M: Memory + Clone + 'static, T> fmt::Debug for SendFuture<'_, K, M, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendFuture").field("waiting", &self.waiting).finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------------------------
// Stream and Sink
// ---------------------------------------------------------------------------------------------

/// The messages of the ring, each as a `Vec<u8>`, in order.
///
/// The stream ends (`None`) when the ring is empty and its producers closed
/// ([`RecvError::Disconnected`]), or after an error that ends receiving (a dead producer,
/// corrupt memory), which it yields first. A broadcast subscriber's
/// [`RecvError::Lagged`] is yielded and the stream goes on. Cancel-safe as
/// [`recv`](AsyncConsumer::recv): a `next()` dropped before it is ready takes nothing.
impl<K: RingKind, M: Memory + Clone + 'static> Stream for AsyncConsumer<K, M> {
    type Item = Result<Vec<u8>, RecvError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = Pin::into_inner(self);
        if this.ended {
            return Poll::Ready(None);
        }
        match Self::poll_record(&mut this.inner, &this.waker, &mut this.stream, cx) {
            Poll::Ready(Ok(n)) => {
                let mut v = Vec::new();
                this.inner.take_vec(n, &mut v);
                Poll::Ready(Some(Ok(v)))
            }
            Poll::Ready(Err(RecvStop::Disconnected)) => {
                this.ended = true;
                Poll::Ready(None)
            }
            Poll::Ready(Err(lagged @ RecvStop::Lagged { .. })) => Poll::Ready(Some(Err(lagged.into()))),
            Poll::Ready(Err(stop)) => {
                this.ended = true;
                Poll::Ready(Some(Err(stop.into())))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<K: RingKind, M: Memory + Clone + 'static> FusedStream for AsyncConsumer<K, M> {
    fn is_terminated(&self) -> bool {
        self.ended
    }
}

/// An [`AsyncProducer`] as a [`Sink`] of messages of type `T`
/// ([`AsyncProducer::into_sink`]).
///
/// `start_send` keeps the message (no copy) and the next `poll_ready` / `poll_flush` /
/// `poll_close` writes it, waiting for room; an error hands it back. `poll_close` flushes; the
/// end closes when the sink is dropped.
pub struct ProducerSink<K: RingKind, M: Memory + Clone + 'static, T> {
    end: AsyncProducer<K, M>,
    pending: Option<T>,
    waiting: Waiting,
}

impl<K: RingKind, M: Memory + Clone + 'static, T> fmt::Debug for ProducerSink<K, M, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProducerSink")
            .field("end", &self.end)
            .field("pending", &self.pending.is_some())
            .finish_non_exhaustive()
    }
}

impl<K: RingKind, M: Memory + Clone + 'static, T> ProducerSink<K, M, T> {
    /// The async end back, and the message not yet written, if any.
    pub fn into_inner(self) -> (AsyncProducer<K, M>, Option<T>) {
        (self.end, self.pending)
    }
}

impl<K: RingKind, M: Memory + Clone + 'static, T: AsRef<[u8]>> ProducerSink<K, M, T> {
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), SendError<T>>> {
        let Some(msg) = self.pending.as_ref() else {
            return Poll::Ready(Ok(()));
        };
        let len = msg.as_ref().len();
        match self.end.poll_claim(&mut self.waiting, cx, len) {
            Poll::Ready(Ok(claim)) => {
                let msg = self.pending.take().expect("checked above");
                self.end.inner.fill_and_commit(claim, msg.as_ref());
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(stop)) => {
                Poll::Ready(Err(SendError::new(stop, self.pending.take().expect("checked above"))))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<K: RingKind, M: Memory + Clone + 'static, T: AsRef<[u8]>> Sink<T> for ProducerSink<K, M, T> {
    type Error = SendError<T>;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::into_inner(self).poll_write(cx)
    }

    /// # Panics
    /// If a message is still pending (`poll_ready` was not called, or did not return
    /// `Ready(Ok)`), as the `Sink` contract forbids.
    fn start_send(self: Pin<&mut Self>, item: T) -> Result<(), Self::Error> {
        let this = Pin::into_inner(self);
        assert!(this.pending.is_none(), "ProducerSink::start_send without a successful poll_ready");
        this.pending = Some(item);
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::into_inner(self).poll_write(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::into_inner(self).poll_write(cx)
    }
}

// ---------------------------------------------------------------------------------------------
// Conversions, test hooks
// ---------------------------------------------------------------------------------------------

#[cfg(not(loom))]
impl<K: RingKind, M: Memory + Clone + 'static> From<Producer<K, M>> for AsyncProducer<K, M> {
    fn from(p: Producer<K, M>) -> Self {
        AsyncProducer::new(p)
    }
}

#[cfg(not(loom))]
impl<K: RingKind, M: Memory + Clone + 'static> From<Consumer<K, M>> for AsyncConsumer<K, M> {
    fn from(c: Consumer<K, M>) -> Self {
        AsyncConsumer::new(c)
    }
}

/// Test hook: calls of this process registered with the waker threads now (pending calls, and
/// the waits of streams and sinks between polls).
#[cfg(not(loom))]
#[doc(hidden)]
pub fn registered_waits() -> usize {
    reactor::reactor().taken()
}

/// Test hook: run `f` (a fork) while holding the locks of this process's waker threads, as a
/// busy waker thread may hold them when another thread forks.
#[cfg(not(loom))]
#[doc(hidden)]
pub fn holding_waker_locks<R>(f: impl FnOnce() -> R) -> R {
    reactor::reactor().holding_locks(f)
}

/// Test hook: waker threads started in this process, and whether they use `futex_waitv`.
#[cfg(not(loom))]
#[doc(hidden)]
pub fn waker_threads() -> (usize, bool) {
    let r = reactor::reactor();
    (r.threads(), r.mode() == reactor::Mode::Waitv)
}

/// The waker threads of a loom model: no threads, a model thread runs their turns.
#[cfg(loom)]
#[doc(hidden)]
pub struct ModelReactor(std::sync::Arc<reactor::Reactor>, loom::sync::atomic::AtomicBool);

#[cfg(loom)]
impl ModelReactor {
    /// One-word shards (the kind a model's heap memory needs), run by [`turn`](Self::turn).
    #[allow(clippy::new_without_default)]
    pub fn new() -> ModelReactor {
        ModelReactor(
            std::sync::Arc::new(reactor::Reactor::new(reactor::Mode::Threads, false, 0)),
            loom::sync::atomic::AtomicBool::new(false),
        )
    }

    /// One turn of the first shard: wake what moved, then sleep until a word moves or a kick.
    pub fn turn(&self) {
        self.0.turn_one()
    }

    /// Registrations taken.
    pub fn registered(&self) -> usize {
        self.0.taken()
    }

    /// Whether a call registered yet (a shard exists for [`turn`](Self::turn) to run).
    pub fn started(&self) -> bool {
        self.0.started()
    }

    /// The model is over: a turn running or to come returns instead of sleeping.
    pub fn stop(&self) {
        self.1.store(true, std::sync::atomic::Ordering::SeqCst);
        self.0.stop()
    }

    /// Whether [`stop`](Self::stop) was called.
    pub fn stopped(&self) -> bool {
        self.1.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[cfg(loom)]
impl fmt::Debug for ModelReactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
