//! What a ring kind supplies to the generic front ([`crate::Producer`], [`crate::Consumer`]):
//! a small protocol core per end. The front holds every public call once and drives the core
//! through these traits; the core knows the record format and the positions, nothing of the
//! public API. The traits are sealed: only this crate's kinds implement them.
//!
//! A message crosses the front and one protocol file: `Producer::send` → `try_claim` (room) →
//! payload copied in by the front → `commit` (one Release store) ... `Consumer::recv` →
//! `try_next` / `wait_step` (finds the record) → payload copied out by the front → `consume`
//! (hands space back in steps).

use std::fmt;
use std::time::Instant;

use crate::config::Geometry;
use crate::error::{AttachError, RecvFail, RecvStop, SendFail, SendStop};
use crate::handshake::AttachOptions;
use crate::layout::Kind;
use crate::memory::Memory;

/// The next message found by a consumer: the index of its record and its payload length. The
/// core checked that the record lies inside the data area.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Next {
    pub idx: usize,
    pub len: usize,
}

mod sealed {
    pub trait Sealed {}
}

/// A ring kind: [`Spsc`](crate::Spsc), [`Mpsc`](crate::Mpsc) or
/// [`Broadcast`](crate::Broadcast). It names the protocol cores of
/// its ends; the ends themselves are the generic [`Producer`](crate::Producer) and
/// [`Consumer`](crate::Consumer).
pub trait RingKind: sealed::Sealed + Sized + 'static {
    /// The kind as recorded in the header.
    const KIND: Kind;
    #[doc(hidden)]
    type Producer<M: Memory>: ProducerCore<M>;
    #[doc(hidden)]
    type Consumer<M: Memory>: ConsumerCore<M>;
}

/// The SPSC ring kind: one producer, one consumer ([`spsc`](crate::spsc)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Spsc;

/// The MPSC ring kind: many producers (threads and processes), one consumer
/// ([`mpsc`](crate::mpsc)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Mpsc;

/// The broadcast ring kind: one producer, many subscribers, each receiving every message
/// ([`broadcast`](crate::broadcast)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Broadcast;

impl sealed::Sealed for Spsc {}
impl sealed::Sealed for Mpsc {}
impl sealed::Sealed for Broadcast {}

/// What every end's core has: attaching, and the memory and geometry it works on.
#[doc(hidden)]
pub trait Core<M: Memory>: Sized + fmt::Debug {
    /// Attach to initialised memory whose geometry was validated.
    fn attach(mem: M, geo: Geometry) -> Result<Self, AttachError>;
    /// [`attach`](Core::attach) with the opener's options (a broadcast subscriber's history).
    fn attach_with(mem: M, geo: Geometry, _options: &AttachOptions) -> Result<Self, AttachError> {
        Self::attach(mem, geo)
    }
    /// The ring's memory and the geometry copied at attach.
    fn parts(&self) -> (&M, &Geometry);
    fn mem(&self) -> &M {
        self.parts().0
    }
    fn geometry<'a>(&'a self) -> &'a Geometry
    where
        M: 'a,
    {
        self.parts().1
    }
}

/// The protocol of a sending end.
#[doc(hidden)]
pub trait ProducerCore<M: Memory>: Core<M> {
    /// Where a claimed record is (and whatever the core needs to commit it).
    type Claim: Copy + fmt::Debug;

    /// Bytes in flight as far as this end knows.
    fn len_bytes(&self) -> usize;
    /// One bounded attempt to claim room for `len` payload bytes; `TooLarge` (before any
    /// attempt) beyond the max message size ([`Geometry::check_len`]).
    fn try_claim(&mut self, len: usize) -> Result<Self::Claim, SendFail>;
    /// How a blocked producer sees its consumer: closed since we came, or dead (only checked
    /// when `check_alive`). `None`: keep waiting.
    fn consumer_gone(&mut self, check_alive: bool) -> Option<SendStop>;
    /// The record index whose payload the claim covers.
    fn payload_index(claim: &Self::Claim) -> usize;
    /// Publish the claimed record with `len` payload bytes (at most what was claimed).
    fn commit(&mut self, claim: Self::Claim, len: usize);
    /// Give a claim up: nothing is delivered.
    fn abort(&mut self, claim: Self::Claim);
}

/// The protocol of a receiving end.
#[doc(hidden)]
pub trait ConsumerCore<M: Memory>: Core<M> {
    /// Our position.
    fn position(&self) -> u64;
    /// Bytes waiting to be consumed or still being written: from our position to the tail.
    fn len_bytes(&self) -> usize {
        let (mem, geo) = self.parts();
        // Acquire: not needed (a byte count for the caller, no record is read after it).
        let tail = mem.header().tail.load(ord!(Acquire));
        tail.saturating_sub(self.position()).min(geo.capacity) as usize
    }
    /// The next message if one is there now (bounded steps), without consuming it; when the
    /// ring is empty, why (the producers may be gone).
    fn try_next(&mut self) -> Result<Next, RecvFail>;
    /// One step of a wait that ends at `deadline`: the next message, or `None` to sleep.
    fn wait_step(&mut self, deadline: Option<Instant>) -> Result<Option<Next>, RecvStop>;
    /// Whether a blocked consumer should stop waiting: every producer closed, or one died
    /// (only checked when `check_alive`).
    fn producers_gone(&mut self, check_alive: bool) -> Option<RecvStop>;
    /// Whether the last look stopped at its walk budget with records left to walk (so a ring
    /// that looked empty may hold more: never a reason to report the producers gone).
    fn walk_unfinished(&self) -> bool {
        false
    }
    /// A wait is over (whatever its outcome).
    fn wait_done(&mut self) {}
    /// Mark a message consumed; space goes back to the producers in steps.
    fn consume(&mut self, n: Next);
    /// In a batch: step past a message without handing its space back yet.
    fn advance(&mut self, n: Next);
    /// In a batch: the next message if there is one now. An error ends the batch (the next
    /// call reports it).
    fn next_in_batch(&mut self) -> Option<Next>;
    /// Hand consumed space back now.
    fn flush(&mut self);
    /// Where the payload of `n` is: `None` in the ring (at `n.idx`), or a private copy this
    /// core made and checked (a broadcast subscriber of an `Overwrite` ring, whose producer
    /// may write over the ring's bytes at any time).
    #[inline(always)]
    fn staged(&self, _n: Next) -> Option<&[u8]> {
        None
    }
}
