//! The shared layout: the ring header at offset 0 of the region, then the data area.
//! (`docs/layout.md` in the repository specifies it, and each kind's protocol, byte by byte for
//! implementations in other languages.)
//!
//! Every offset is computed here and checked with `const` asserts; any change to the layout of
//! a kind bumps [`LAYOUT_VERSION`]. A new kind takes a new `kind` number and uses header bytes
//! the other kinds never read (the broadcast fields below sit in padding of version 3), so a
//! build that does not know it refuses it by its kind (`AttachError::WrongKind`). Hot words
//! written by one side only sit on their own 128-byte line (two 64-byte lines, because
//! adjacent-line prefetch pairs them).
//!
//! | offset | size | field | written by | ordering |
//! |---:|---:|---|---|---|
//! | 0 | 8 | `magic` = `b"SHMRING1"` | creator | plain, before `state` |
//! | 8 | 4 | `version` = [`LAYOUT_VERSION`] | creator | plain, before `state` |
//! | 12 | 4 | `header_size` (multiple of 128) | creator | plain, before `state` |
//! | 16 | 4 | `kind`: 1 SPSC, 2 MPSC, 3 broadcast | creator | plain, before `state` |
//! | 20 | 4 | `state`: 0 empty, 1 initialising, 2 ready | creator | store 1, then **Release** store 2 last; openers **Acquire** |
//! | 24 | 8 | `capacity`: data bytes, power of two | creator | plain, before `state` |
//! | 32 | 4 | `max_message`: largest payload | creator | plain, before `state` |
//! | 36 | 4 | `max_producers`: producer slots | creator | plain, before `state` |
//! | 40 | 8 | `creator`: owner word of the creating process (see below) | creator | CAS 0→owner **first** (a dead creator's word is CASed over to take a crashed initialisation over), then `N` set by CAS after `creator_ns` |
//! | 48 | 8 | `free_key`: random key of the free words | creator | plain, before `state` |
//! | 56 | 4 | `creator_ns`: the creator's PID namespace (inode of `/proc/self/ns/pid`, 0 unknown) | creator | **Release** store before `N` is set in `creator`; checkers **Acquire** |
//! | 60 | 4 | `max_subscribers` (broadcast; other kinds: not read) | creator | plain, before `state` |
//! | 64 | 4 | `policy` (broadcast: 1 block, 2 overwrite; other kinds: not read) | creator | plain, before `state` |
//! | 128 | 8 | `tail`: producer position (bytes, never wraps) | producer(s) | SPSC: Release store after each publish; no consumer waits on it (checked at attach; a successor producer walks on from it to the real end); MPSC: CAS, producers **Acquire** |
//! | 136 | 8 | `next_seq` (broadcast): sequence number of the next message | producer | Release, with `tail` |
//! | 256 | 8 | `head`: consumer position (broadcast: the oldest whole record) | consumer (broadcast: producer) | **Release** store; producers **Acquire** (broadcast: **Release** store, then a SeqCst fence, before writing a new reservation; subscribers **Acquire**, a joining one after a SeqCst fence) |
//! | 264 | 8 | `hand_back`: MPSC consumer position being handed back (intent) | consumer | **Release** store before the free words and `head`; a successor consumer **Acquire**s it at attach |
//! | 272 | 8 | `reserved` (broadcast): the end of the space the producer may be writing | producer | **Release** store, then a Release fence, before any store into it; subscribers: Acquire fence after a copy, then **Acquire** load |
//! | 384 | 8 | `data_ready`: futex `seq` u32 + `waiters` u32 (a flag: 1 = someone may sleep) | consumer announces, producers wake and clear | SeqCst handshake (see `wait.rs`) |
//! | 512 | 8 | `space_ready`: futex `seq` u32 + `waiters` u32 (a flag, as above) | producers announce, consumer wakes and clears | SeqCst handshake |
//! | 640 | 16 | consumer slot: owner word u64, then the tenure word u64: generation (bits 0-31, byte 8) and `pid_ns` (bits 32-63, byte 12) (see below) | consumer | CAS |
//! | 768 | 16 × n | producer slots (n = `max_producers`), laid out as the consumer slot | producers | CAS |
//! | 896 | 128 × s | broadcast subscriber entries (s = `max_subscribers`), one line each: a slot as above (owner word, tenure), then `cursor` u64 at byte 16 | subscriber `i` | slot CAS; `cursor`: a store then a SeqCst fence at join, **Release** after; the producer loads **Acquire** (after its SeqCst fence on a reservation) |
//! | `header_size` | `capacity` | data area: records | producers write, consumer reads | published by the **Release** store of a record word; consumer **Acquire** |
//!
//! # Owner words, slots and liveness
//! The creator word and each slot's owner word (offset 0 of the slot) name who holds them:
//! ```text
//!  63 62  61  60  59                   37 36                                  0
//! +-----+---+---+-----------------------+--------------------------------------+
//! |state| L | N |    pid (23 bits)      |  process start time (37 bits)        |
//! +-----+---+---+-----------------------+--------------------------------------+
//! ```
//! `state` 0 free, 1 attached, 2 closed. `L`: the holder holds an OFD write lock
//! (`F_OFD_SETLK`, 1 byte) on the **first byte of its word** in the backing object: byte 40 for
//! the creator (during initialisation only), 640 for the consumer, `768 + 16 × i` for producer
//! `i` (plus the region's offset in the object). `N`: the slot's `pid_ns` (the creator's:
//! `creator_ns`) holds the holder's PID namespace; it is stored (Release) before `N` is set by
//! a compare-and-swap, so a word with `N` never pairs with an earlier holder's namespace.
//! `pid` is the holder's pid in its own namespace, `start` its start time in clock ticks since
//! boot (0 unknown).
//!
//! A holder is dead only on positive evidence. With `L`: an `F_OFD_GETLK` probe of its byte
//! finds no lock (and the word is unchanged after the probe). Without `L`, only when `N` is set
//! and `pid_ns` is non-zero and equal to the checker's own: `kill(pid, 0)` fails with `ESRCH`,
//! or `/proc/PID/stat` (of a `/proc` showing the checker's namespace) is readable and shows a
//! zombie or another start time. Anything else (a failed probe or read, another or unknown
//! namespace, `hidepid`, no `/proc`) is "unknown" and never dead. A claimant that can lock takes
//! its lock before it writes its word; an end releases its lock after it marked its word closed.
//!
//! # Records
//! Every record starts 8-byte aligned with an 8-byte header read and written as one atomic u64:
//! ```text
//!  63        56 55      48 47             32 31                              0
//! +------------+----------+-----------------+--------------------------------+
//! |    type    |   slot   |   generation    |         payload length         |
//! +------------+----------+-----------------+--------------------------------+
//! ```
//! `type` is 0 free, 1 message, 2 padding (skip to the end of the data area), 3 claimed (MPSC:
//! space taken, payload being written), 4 skip (MPSC: an aborted claim). `slot` and `generation`
//! name the MPSC producer that claimed it; in an SPSC ring the same 24 bits hold the *lap tag*,
//! the low 24 bits of the lap (`position / capacity`) of the record's position. The payload
//! follows, padded to a multiple of 8. A message never wraps: when it does not fit before the
//! end of the data area, a padding record fills the rest and the message starts at index 0.
//!
//! # Broadcast records
//! As SPSC records (lap tags, padding, the terminator), except that a message record's header
//! is 16 bytes: the record word, then the message's sequence number (u64, 0 for the ring's
//! first message); the payload follows at byte 16. See [`crate::broadcast`] for the protocol.
//!
//! # SPSC: terminators (version 3)
//! The SPSC consumer waits on the record word at its own position, never on `tail`. That word
//! holds the *terminator*, the free word ([`free_word`]) of the position's lap, until the
//! producer publishes the record there. The producer publishes records `[t, e)` by writing their
//! payloads and headers, the terminator at `e` (Relaxed), then the word at `t` (**Release**): the
//! consumer's **Acquire** load of it makes everything up to the next terminator visible. When
//! the ring is exactly full (`e == head + capacity`) there is no room for a terminator; the word
//! at `e` is then the header of the consumer's next record, whose lap tag is one lap behind
//! `e`'s, which the consumer reads as "nothing yet". So the consumer only ever meets this lap's
//! terminator, a record of this lap, or (full ring) a record of the lap before; anything else is
//! corrupt. Consumed space is not rewritten.
//!
//! A producer killed between its publishing store and its store of `tail` leaves `tail`
//! behind the records it published. Its successor (and `status`) walks the record words from
//! `max(tail, head)` to the first word that is not a record of its lap. The successor reads
//! them with a read-modify-write that changes nothing, so it sees the newest value of each
//! word: its predecessor's death is learnt from the kernel (a released lock, a reaped pid),
//! which orders the dead process's stores in practice but is no synchronisation of the ring.
//!
//! # MPSC: free words
//! In an MPSC ring every 8-byte word of free space holds a *free word* ([`free_word`]): type 0
//! and, in the low 56 bits, a keyed bijection of the lap (`position / capacity`) for which the
//! space is free. The key is random, chosen by the creator and copied into every handle at
//! attach. The creator fills the data area with lap 0's free word; the consumer rewrites what it
//! consumed as free for the next lap before it hands the space back. A producer claims position
//! `p` by a compare-and-swap of the word at `p`'s index from "free for lap(p)" to "claimed by
//! me", so:
//! - the claimant's identity is written in the same atomic step as the claim;
//! - a producer holding a stale position can never claim space of another lap (distinct laps
//!   have distinct free words);
//! - it cannot claim inside a live record's payload either: that would need the payload to hold
//!   the exact 64-bit free word of a lap, which depends on the ring's random key. Payloads that do
//!   not know the key (zeros, counters, text, copies of another ring) match it with probability
//!   2^-56 per stale attempt. (With the lap itself as the free word, eight zero bytes in lap 0
//!   were enough.) Within the lap of a stale position nothing is needed of the key: a tail
//!   value is always a record boundary of its own lap, whose word is that record's header; only
//!   in a later lap can the same index fall inside a record, and there the expected word is an
//!   earlier lap's free word, which the consumer has rewritten everywhere it consumed.
//!
//! # Hand-back
//! The MPSC consumer hands consumed space back in three stores: `hand_back = h` (intent), the
//! free words of `[head, h)` for their next lap, then `head = h`. A consumer killed at any
//! instant leaves either `hand_back == head` (nothing half done) or `hand_back > head`, which the
//! next consumer completes at attach (rewriting the same words is idempotent: no producer can
//! claim them before `head` moves).

use bytemuck::{Pod, Zeroable};

use crate::sync::{AtomicU32, AtomicU64};

/// `b"SHMRING1"` read as a little-endian u64.
pub const MAGIC: u64 = u64::from_le_bytes(*b"SHMRING1");
/// The layout version; bumped by any change to this file's layout.
pub const LAYOUT_VERSION: u32 = 3;
/// Separation of hot words.
pub const LINE: usize = 128;
/// Size of a record header, and the alignment of every record.
pub const RECORD_HEADER: usize = 8;
/// Size of the fixed part of the header; the producer slots follow.
pub const FIXED_HEADER: usize = 768;
/// Size of one slot in the slot table.
pub const SLOT_SIZE: usize = 16;
/// Offset of the creator word: the byte the creator locks while it initialises.
pub const CREATOR_WORD: usize = 40;
/// Offset of the consumer slot: the byte the consumer locks.
pub const CONSUMER_SLOT: usize = 5 * LINE;

/// Offset of producer slot `i`: the byte producer `i` locks.
pub const fn producer_slot(i: usize) -> usize {
    FIXED_HEADER + i * SLOT_SIZE
}
/// The most producers an MPSC ring may have (the slot index is 8 bits in a record header).
pub const MAX_PRODUCERS: u32 = 255;
/// The smallest data area.
pub const MIN_CAPACITY: u64 = 64;

/// What a ring is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[repr(u32)]
pub enum Kind {
    /// One producer, one consumer.
    Spsc = 1,
    /// Many producers, one consumer.
    Mpsc = 2,
    /// One producer, many subscribers, each receiving every message.
    Broadcast = 3,
}

impl Kind {
    /// The most producers a ring of this kind has (slots in its producer table).
    pub fn max_producers(self) -> u32 {
        match self {
            Kind::Spsc | Kind::Broadcast => 1,
            Kind::Mpsc => MAX_PRODUCERS,
        }
    }

    /// The kind with this raw header value.
    pub fn from_u32(v: u32) -> Option<Kind> {
        match v {
            1 => Some(Kind::Spsc),
            2 => Some(Kind::Mpsc),
            3 => Some(Kind::Broadcast),
            _ => None,
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Spsc => "SPSC",
            Kind::Mpsc => "MPSC",
            Kind::Broadcast => "broadcast",
        })
    }
}

pub(crate) const STATE_EMPTY: u32 = 0;
pub(crate) const STATE_INITIALIZING: u32 = 1;
pub(crate) const STATE_READY: u32 = 2;

/// A futex word and the flag of sleepers announced on it (set by each waiter before it sleeps,
/// cleared by the notifier that wakes them all; see `wait.rs`).
#[repr(C)]
#[doc(hidden)]
#[derive(Debug)]
pub struct WaitPoint {
    pub seq: AtomicU32,
    pub waiters: AtomicU32,
}

/// One attach slot: who holds an end of the ring.
#[repr(C)]
#[doc(hidden)]
#[derive(Debug)]
pub struct Slot {
    /// Owner word (see `identity.rs`).
    pub owner: AtomicU64,
    /// The holder's tenure, one word so that it is read whole: bits 0-31 the generation,
    /// bumped at every attach (MPSC records carry it to tell a dead claimant from its
    /// successor); bits 32-63 the holder's PID namespace (inode of `/proc/self/ns/pid`; 0
    /// unknown), valid for the owner word when its `N` bit is set (see `identity.rs`). In
    /// memory (little-endian): the generation at byte 8 of the slot, the namespace at byte 12.
    pub tenure: AtomicU64,
}

impl Slot {
    /// The generation in a tenure word.
    pub fn generation_of(tenure: u64) -> u32 {
        tenure as u32
    }

    /// The PID namespace in a tenure word.
    pub fn pid_ns_of(tenure: u64) -> u32 {
        (tenure >> 32) as u32
    }

    /// A tenure word.
    pub fn tenure(generation: u32, pid_ns: u32) -> u64 {
        u64::from(pid_ns) << 32 | u64::from(generation)
    }

    /// The generation now (Relaxed: a number to compare, nothing is read on the strength of it).
    pub fn generation(&self) -> u32 {
        Slot::generation_of(self.tenure.load(crate::sync::Ordering::Relaxed))
    }
}

/// Padding between fields of the header: never read or written by this crate. A peer may
/// write these bytes all the same, so they are atomics, like every other byte a `&Header`
/// covers (bytes under a shared reference may change only inside an `UnsafeCell`, which
/// atomics are). The std atomic type under loom too: loom never sees it touched.
#[repr(transparent)]
#[doc(hidden)]
pub struct Pad<const N: usize>([std::sync::atomic::AtomicU64; N]);

impl<const N: usize> Pad<N> {
    fn zeroed() -> Pad<N> {
        Pad(std::array::from_fn(|_| std::sync::atomic::AtomicU64::new(0)))
    }
}

impl<const N: usize> std::fmt::Debug for Pad<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pad<{N}>")
    }
}

/// The fixed part of the header, as laid out in shared memory.
#[repr(C)]
#[doc(hidden)]
#[derive(Debug)]
pub struct Header {
    pub magic: AtomicU64,
    pub version: AtomicU32,
    pub header_size: AtomicU32,
    pub kind: AtomicU32,
    pub state: AtomicU32,
    pub capacity: AtomicU64,
    pub max_message: AtomicU32,
    pub max_producers: AtomicU32,
    pub creator: AtomicU64,
    pub free_key: AtomicU64,
    /// The creator's PID namespace, valid for `creator` when its `N` bit is set.
    pub creator_ns: AtomicU32,
    /// Broadcast: subscriber slots (0 in the other kinds, which never read it).
    pub max_subscribers: AtomicU32,
    /// Broadcast: the [`Policy`] as u32 (0 in the other kinds, which never read it).
    pub policy: AtomicU32,
    _pad0a: std::sync::atomic::AtomicU32,
    _pad0: Pad<7>,
    pub tail: AtomicU64,
    /// Broadcast: the sequence number of the next message, stored with `tail`.
    pub next_seq: AtomicU64,
    _pad1: Pad<14>,
    pub head: AtomicU64,
    pub hand_back: AtomicU64,
    /// Broadcast: the end of the space the producer may be writing (see `broadcast.rs`).
    pub reserved: AtomicU64,
    _pad2: Pad<13>,
    pub data_ready: WaitPoint,
    _pad3: Pad<15>,
    pub space_ready: WaitPoint,
    _pad4: Pad<15>,
    pub consumer: Slot,
    _pad5: Pad<14>,
}

#[cfg(not(loom))]
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(offset_of!(Header, magic) == 0);
    assert!(offset_of!(Header, version) == 8);
    assert!(offset_of!(Header, header_size) == 12);
    assert!(offset_of!(Header, kind) == 16);
    assert!(offset_of!(Header, state) == 20);
    assert!(offset_of!(Header, capacity) == 24);
    assert!(offset_of!(Header, max_message) == 32);
    assert!(offset_of!(Header, max_producers) == 36);
    assert!(offset_of!(Header, creator) == CREATOR_WORD);
    assert!(offset_of!(Header, free_key) == 48);
    assert!(offset_of!(Header, creator_ns) == 56);
    assert!(offset_of!(Header, max_subscribers) == 60);
    assert!(offset_of!(Header, policy) == 64);
    assert!(offset_of!(Header, tail) == LINE);
    assert!(offset_of!(Header, next_seq) == LINE + 8);
    assert!(offset_of!(Header, head) == 2 * LINE);
    assert!(offset_of!(Header, hand_back) == 2 * LINE + 8);
    assert!(offset_of!(Header, reserved) == 2 * LINE + 16);
    assert!(offset_of!(Subscriber, slot) == 0);
    assert!(offset_of!(Subscriber, cursor) == SLOT_SIZE);
    assert!(size_of::<Subscriber>() == LINE);
    assert!(offset_of!(Header, data_ready) == 3 * LINE);
    assert!(offset_of!(Header, space_ready) == 4 * LINE);
    assert!(offset_of!(Header, consumer) == CONSUMER_SLOT);
    assert!(offset_of!(Slot, owner) == 0);
    assert!(size_of::<Header>() == FIXED_HEADER);
    assert!(size_of::<Slot>() == SLOT_SIZE);
    assert!(size_of::<WaitPoint>() == 8);
    assert!(size_of::<Descriptor>() == 64);
    assert!(size_of::<RecordHeader>() == RECORD_HEADER);
};

impl Header {
    /// A zeroed header on the heap (heap memory: loom models, single-process tests).
    pub(crate) fn new_zeroed() -> Header {
        let slot = || Slot { owner: AtomicU64::new(0), tenure: AtomicU64::new(0) };
        let wp = || WaitPoint { seq: AtomicU32::new(0), waiters: AtomicU32::new(0) };
        Header {
            magic: AtomicU64::new(0),
            version: AtomicU32::new(0),
            header_size: AtomicU32::new(0),
            kind: AtomicU32::new(0),
            state: AtomicU32::new(0),
            capacity: AtomicU64::new(0),
            max_message: AtomicU32::new(0),
            max_producers: AtomicU32::new(0),
            creator: AtomicU64::new(0),
            free_key: AtomicU64::new(0),
            creator_ns: AtomicU32::new(0),
            max_subscribers: AtomicU32::new(0),
            policy: AtomicU32::new(0),
            _pad0a: std::sync::atomic::AtomicU32::new(0),
            _pad0: Pad::zeroed(),
            tail: AtomicU64::new(0),
            next_seq: AtomicU64::new(0),
            _pad1: Pad::zeroed(),
            head: AtomicU64::new(0),
            hand_back: AtomicU64::new(0),
            reserved: AtomicU64::new(0),
            _pad2: Pad::zeroed(),
            data_ready: wp(),
            _pad3: Pad::zeroed(),
            space_ready: wp(),
            _pad4: Pad::zeroed(),
            consumer: slot(),
            _pad5: Pad::zeroed(),
        }
    }
}

/// The immutable geometry of a ring as plain data: written by the creator before `state`
/// becomes ready, copied into every handle at attach and never re-read from shared memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct Descriptor {
    /// [`MAGIC`].
    pub magic: u64,
    /// [`LAYOUT_VERSION`].
    pub version: u32,
    /// Bytes before the data area.
    pub header_size: u32,
    /// [`Kind`] as u32.
    pub kind: u32,
    /// Init state when read.
    pub state: u32,
    /// Data bytes (power of two).
    pub capacity: u64,
    /// Largest payload.
    pub max_message: u32,
    /// Producer slots.
    pub max_producers: u32,
    /// Owner word of the creator.
    pub creator: u64,
    /// Key of the free words.
    pub free_key: u64,
    /// Broadcast: subscriber slots (other kinds: not read, 0).
    pub max_subscribers: u32,
    /// Broadcast: the [`Policy`] as u32 (other kinds: not read, 0).
    pub policy: u32,
}

/// Header size for `max_producers` slots, rounded up to a line.
pub const fn header_size(max_producers: u32) -> usize {
    let raw = FIXED_HEADER + SLOT_SIZE * max_producers as usize;
    raw.div_ceil(LINE) * LINE
}

/// Offset of the broadcast subscriber table: after the one producer slot, on its own line.
pub const SUBSCRIBER_TABLE: usize = header_size(1);

/// Offset of broadcast subscriber `i`'s entry (one line each): the byte subscriber `i` locks.
pub const fn subscriber_slot(i: usize) -> usize {
    SUBSCRIBER_TABLE + i * LINE
}

/// The most subscribers a broadcast ring may have.
pub const MAX_SUBSCRIBERS: u32 = 255;

/// Header size of a broadcast ring with `subscribers` subscriber slots.
pub const fn broadcast_header_size(subscribers: u32) -> usize {
    subscriber_slot(subscribers as usize)
}

/// Size of a broadcast message record's header: the record word, then the message's
/// sequence number (a u64).
pub const BROADCAST_HEADER: usize = 16;

/// Bytes a broadcast message record with `len` payload bytes occupies.
#[inline]
pub const fn broadcast_record_size(len: usize) -> usize {
    BROADCAST_HEADER + ((len + 7) & !7)
}

/// The largest payload of a broadcast ring of `capacity` data bytes: a message, the padding
/// before it (shorter than the message's record) and the 8-byte terminator after it always
/// fit in the ring (`2 * record + 8 <= capacity`), and never more than a record header holds.
pub const fn broadcast_max_message_for(capacity: u64) -> u64 {
    let most = ((capacity - 8) / 2 - BROADCAST_HEADER as u64) & !7;
    if most < MAX_RECORD_LEN {
        most
    } else {
        MAX_RECORD_LEN
    }
}

/// What a broadcast producer does when the slowest subscriber has not read the space it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[repr(u32)]
pub enum Policy {
    /// Wait for the slowest live subscriber (lossless; the default). A subscriber that closes
    /// or dies stops holding the producer back.
    #[default]
    Block = 1,
    /// Never wait: write over the oldest messages. A subscriber that was overtaken learns how
    /// many messages it lost (`Lagged { skipped }`) and goes on from the oldest one left.
    Overwrite = 2,
}

impl Policy {
    /// The policy with this raw header value.
    pub fn from_u32(v: u32) -> Option<Policy> {
        match v {
            1 => Some(Policy::Block),
            2 => Some(Policy::Overwrite),
            _ => None,
        }
    }
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Policy::Block => "block",
            Policy::Overwrite => "overwrite",
        })
    }
}

/// A broadcast subscriber's entry in the subscriber table: its attach slot and its cursor, on
/// a line of its own.
#[repr(C)]
#[doc(hidden)]
#[derive(Debug)]
pub struct Subscriber {
    /// The attach slot, as the other kinds' slots.
    pub slot: Slot,
    /// The position up to which the subscriber has read (a record boundary): written by the
    /// subscriber (SeqCst at attach, Release after), read by the producer.
    pub cursor: AtomicU64,
    _pad: Pad<13>,
}

impl Subscriber {
    /// A zeroed entry (heap memory).
    pub(crate) fn new_zeroed() -> Subscriber {
        Subscriber {
            slot: Slot { owner: AtomicU64::new(0), tenure: AtomicU64::new(0) },
            cursor: AtomicU64::new(0),
            _pad: Pad::zeroed(),
        }
    }
}

/// The largest payload a ring of `capacity` data bytes can carry: half the data area less a
/// record header, so a message always fits after at most one padding record; and never more
/// than a record header's 32-bit length holds ([`MAX_RECORD_LEN`]), whatever the capacity.
pub const fn max_message_for(capacity: u64) -> u64 {
    let half = capacity / 2 - RECORD_HEADER as u64;
    if half < MAX_RECORD_LEN {
        half
    } else {
        MAX_RECORD_LEN
    }
}

/// The largest length a record header holds (its `len` is 32 bits), rounded down to whole
/// words: the max message of rings of 16 GiB and more.
pub const MAX_RECORD_LEN: u64 = u32::MAX as u64 & !7;

/// Bytes a record with `len` payload bytes occupies.
#[inline]
pub const fn record_size(len: usize) -> usize {
    RECORD_HEADER + ((len + 7) & !7)
}

/// Type 0: free space (MPSC: the length field holds the lap the space is free for).
pub(crate) const TYPE_FREE: u8 = 0;
pub(crate) const TYPE_MSG: u8 = 1;
pub(crate) const TYPE_PAD: u8 = 2;
pub(crate) const TYPE_CLAIMED: u8 = 3;
/// A record to skip: an aborted MPSC grant.
pub(crate) const TYPE_SKIP: u8 = 4;

const LOW56: u64 = (1 << 56) - 1;

/// The free-space word of lap `lap` (`position / capacity`) in a ring whose free words are keyed
/// with `key`: type 0 (the top byte) and a bijection of the lap's low 56 bits mixed with the
/// key, so distinct laps never share a free word and a payload that does not know the key
/// matches one only by a 2^-56 chance (see the module docs).
///
/// The mix is xor with the key, then three invertible steps on 56-bit values (xor-shift right,
/// multiplication by an odd constant modulo 2^56): constants from SplitMix64.
#[inline]
pub fn free_word(key: u64, lap: u64) -> u64 {
    let mut x = (lap ^ key) & LOW56;
    x ^= x >> 29;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9) & LOW56;
    x ^= x >> 32;
    x = x.wrapping_mul(0x94D0_49BB_1331_11EB) & LOW56;
    x ^ (x >> 29)
}

/// A record header as plain data (see the bit diagram above).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub(crate) struct RecordHeader {
    pub len: u32,
    pub meta: u32,
}

impl RecordHeader {
    #[inline]
    pub fn new(kind: u8, len: u32, slot: u8, generation: u16) -> RecordHeader {
        RecordHeader { len, meta: (kind as u32) << 24 | (slot as u32) << 16 | generation as u32 }
    }
    #[inline]
    pub fn kind(self) -> u8 {
        (self.meta >> 24) as u8
    }
    #[inline]
    pub fn slot(self) -> u8 {
        (self.meta >> 16) as u8
    }
    #[inline]
    pub fn generation(self) -> u16 {
        self.meta as u16
    }
    /// An SPSC record header: bits 32-55 (the MPSC slot and generation) hold the low 24 bits
    /// of the lap of the record's position ([`lap_tag`]).
    #[inline]
    pub fn tagged(kind: u8, len: u32, lap: u64) -> RecordHeader {
        RecordHeader { len, meta: (kind as u32) << 24 | lap_tag(lap) }
    }
    /// The lap tag of an SPSC record header.
    #[inline]
    pub fn tag(self) -> u32 {
        self.meta & LAP_TAG_MASK
    }
    #[inline]
    pub fn to_word(self) -> u64 {
        self.len as u64 | (self.meta as u64) << 32
    }
    #[inline]
    pub fn from_word(w: u64) -> RecordHeader {
        RecordHeader { len: w as u32, meta: (w >> 32) as u32 }
    }
}

const LAP_TAG_MASK: u32 = (1 << 24) - 1;

/// The lap tag of an SPSC record header: the low 24 bits of its position's lap.
#[inline]
pub(crate) fn lap_tag(lap: u64) -> u32 {
    lap as u32 & LAP_TAG_MASK
}

/// Positions (bytes since the ring was created) at or above this are corrupt: a real stream
/// reaches it after 2^62 bytes (146 years at 1 GB/s), and keeping positions below it means no
/// position arithmetic can overflow, whatever a peer writes.
pub(crate) const MAX_POSITION: u64 = 1 << 62;

/// Every constant of the layout under the name the C header (`shm_ipc.h`) and
/// `docs/layout.md` give it, with its value taken from this crate's own definitions (the
/// `offset_of!` of each header field, the record types, the owner word's bits): a test of
/// `shm-capi` checks the header's values against this table and the spec's names.
#[cfg(not(loom))]
pub const C_CONSTANTS: &[(&str, u64)] = {
    use std::mem::offset_of;
    &[
        ("SHM_MAGIC", MAGIC),
        ("SHM_LAYOUT_VERSION", LAYOUT_VERSION as u64),
        ("SHM_LINE", LINE as u64),
        ("SHM_RECORD_HEADER", RECORD_HEADER as u64),
        ("SHM_BROADCAST_RECORD_HEADER", BROADCAST_HEADER as u64),
        ("SHM_FIXED_HEADER", FIXED_HEADER as u64),
        ("SHM_SLOT_SIZE", SLOT_SIZE as u64),
        ("SHM_SUBSCRIBER_ENTRY", LINE as u64),
        ("SHM_MAX_PRODUCERS", MAX_PRODUCERS as u64),
        ("SHM_MAX_SUBSCRIBERS", MAX_SUBSCRIBERS as u64),
        ("SHM_MIN_CAPACITY", MIN_CAPACITY),
        ("SHM_MAX_RECORD_LEN", MAX_RECORD_LEN),
        ("SHM_MAX_POSITION", MAX_POSITION),
        ("SHM_OFF_MAGIC", offset_of!(Header, magic) as u64),
        ("SHM_OFF_VERSION", offset_of!(Header, version) as u64),
        ("SHM_OFF_HEADER_SIZE", offset_of!(Header, header_size) as u64),
        ("SHM_OFF_KIND", offset_of!(Header, kind) as u64),
        ("SHM_OFF_STATE", offset_of!(Header, state) as u64),
        ("SHM_OFF_CAPACITY", offset_of!(Header, capacity) as u64),
        ("SHM_OFF_MAX_MESSAGE", offset_of!(Header, max_message) as u64),
        ("SHM_OFF_MAX_PRODUCERS", offset_of!(Header, max_producers) as u64),
        ("SHM_OFF_CREATOR", offset_of!(Header, creator) as u64),
        ("SHM_OFF_FREE_KEY", offset_of!(Header, free_key) as u64),
        ("SHM_OFF_CREATOR_NS", offset_of!(Header, creator_ns) as u64),
        ("SHM_OFF_MAX_SUBSCRIBERS", offset_of!(Header, max_subscribers) as u64),
        ("SHM_OFF_POLICY", offset_of!(Header, policy) as u64),
        ("SHM_OFF_TAIL", offset_of!(Header, tail) as u64),
        ("SHM_OFF_NEXT_SEQ", offset_of!(Header, next_seq) as u64),
        ("SHM_OFF_HEAD", offset_of!(Header, head) as u64),
        ("SHM_OFF_HAND_BACK", offset_of!(Header, hand_back) as u64),
        ("SHM_OFF_RESERVED", offset_of!(Header, reserved) as u64),
        ("SHM_OFF_DATA_READY", offset_of!(Header, data_ready) as u64),
        ("SHM_OFF_SPACE_READY", offset_of!(Header, space_ready) as u64),
        ("SHM_OFF_CONSUMER_SLOT", offset_of!(Header, consumer) as u64),
        ("SHM_OFF_PRODUCER_SLOTS", producer_slot(0) as u64),
        ("SHM_OFF_SUBSCRIBERS", SUBSCRIBER_TABLE as u64),
        ("SHM_KIND_SPSC", Kind::Spsc as u64),
        ("SHM_KIND_MPSC", Kind::Mpsc as u64),
        ("SHM_KIND_BROADCAST", Kind::Broadcast as u64),
        ("SHM_STATE_EMPTY", STATE_EMPTY as u64),
        ("SHM_STATE_INITIALIZING", STATE_INITIALIZING as u64),
        ("SHM_STATE_READY", STATE_READY as u64),
        ("SHM_RECORD_FREE", TYPE_FREE as u64),
        ("SHM_RECORD_MSG", TYPE_MSG as u64),
        ("SHM_RECORD_PAD", TYPE_PAD as u64),
        ("SHM_RECORD_CLAIMED", TYPE_CLAIMED as u64),
        ("SHM_RECORD_SKIP", TYPE_SKIP as u64),
        ("SHM_POLICY_BLOCK", Policy::Block as u64),
        ("SHM_POLICY_OVERWRITE", Policy::Overwrite as u64),
        ("SHM_OWNER_FREE", 0),
        ("SHM_OWNER_ATTACHED", crate::identity::ATTACHED),
        ("SHM_OWNER_CLOSED", crate::identity::CLOSED),
        ("SHM_OWNER_STATE_SHIFT", crate::identity::STATE_SHIFT as u64),
        ("SHM_OWNER_LOCK_BIT", crate::identity::LOCK_BIT),
        ("SHM_OWNER_NS_BIT", crate::identity::NS_BIT),
        ("SHM_OWNER_PID_SHIFT", crate::identity::PID_SHIFT as u64),
    ]
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_header_round_trips() {
        let h = RecordHeader::new(TYPE_CLAIMED, 1234, 7, 65000);
        let back = RecordHeader::from_word(h.to_word());
        assert_eq!(back, h);
        assert_eq!((back.kind(), back.len, back.slot(), back.generation()), (TYPE_CLAIMED, 1234, 7, 65000));
        assert_eq!(RecordHeader::from_word(0).kind(), TYPE_FREE);
    }

    #[test]
    fn free_words_are_typed_free_distinct_per_lap_and_keyed() {
        for key in [0u64, 1, 0xdead_beef, u64::MAX] {
            let words: std::collections::HashSet<u64> = (0..10_000).map(|lap| free_word(key, lap)).collect();
            assert_eq!(words.len(), 10_000, "distinct laps, distinct free words (key {key:#x})");
            assert!(words.iter().all(|&w| RecordHeader::from_word(w).kind() == TYPE_FREE));
        }
        // Ordinary payload words are no free word of an early lap for a typical key.
        let key = 0x0123_4567_89ab_cdef;
        for lap in 0..1000 {
            for payload in [0u64, 1, lap, u64::MAX, u64::from_le_bytes(*b"abcdefgh")] {
                assert_ne!(free_word(key, lap), payload);
            }
        }
        assert_ne!(free_word(1, 5), free_word(2, 5), "the key changes the word");
        // The test vectors of docs/layout.md (section 6.6), for other implementations.
        for (key, lap, word) in [
            (0x0123_4567_89ab_cdef, 0, 0x00ef_f8cb_0040_aa51),
            (0x0123_4567_89ab_cdef, 1, 0x0096_45f2_367e_3eaa),
            (0x0123_4567_89ab_cdef, 2, 0x00eb_d331_84f4_e089),
            (0, 0, 0),
            (0, 1, 0x0045_b51e_cca0_246a),
            (1, 5, 0x002a_058d_2466_1e19),
            (u64::MAX, 0, 0x0035_d6f2_3ac8_4d57),
        ] {
            assert_eq!(free_word(key, lap), word, "free_word({key:#x}, {lap})");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(record_size(0), 8);
        assert_eq!(record_size(1), 16);
        assert_eq!(record_size(8), 16);
        assert_eq!(record_size(9), 24);
        assert_eq!(header_size(1), 896);
        assert_eq!(header_size(8), 896);
        assert_eq!(header_size(9), 1024);
        assert_eq!(max_message_for(1024), 504);
        // A record header's length is 32 bits: rings of 16 GiB and more stop there, instead
        // of cutting longer messages short (a 2^32 + 8 byte message used to arrive as 8 bytes).
        assert_eq!(max_message_for(1 << 33), (1 << 32) - 8);
        assert_eq!(max_message_for(1 << 34), MAX_RECORD_LEN);
        assert_eq!(MAX_RECORD_LEN, 0xFFFF_FFF8);
        assert_eq!(&MAGIC.to_le_bytes(), b"SHMRING1");
    }
}
