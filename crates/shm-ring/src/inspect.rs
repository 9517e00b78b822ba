//! Looking at a ring from outside: its state and who is attached ([`status`]), finding this
//! library's rings in a directory ([`find_rings`]); [`cleanup`](crate::cleanup()) removes the abandoned
//! ones.

use std::path::{Path, PathBuf};

use shm_core::{Liveness, OpenOptions, Region};

use crate::config;
use crate::error::AttachError;
use crate::handshake;
use crate::identity::{self, NsField, Owner};
use crate::layout::{
    self, Header, Kind, RecordHeader, CONSUMER_SLOT, CREATOR_WORD, FIXED_HEADER, MAGIC, STATE_INITIALIZING,
    STATE_READY,
};
use crate::sync::Ordering;

/// How an attach slot stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub enum EndState {
    /// Never attached.
    Free,
    /// Attached by a process shown to be running (its lock is held, or its pid runs with the
    /// recorded start time).
    Attached,
    /// Attached, and whether its process runs cannot be told from here (no lock, and its PID
    /// namespace is another or unknown; `/proc` unreadable; a failed probe). Counted as in use:
    /// never taken over, never cleaned up.
    Unknown,
    /// Attached by a process shown to have died without closing.
    Dead,
    /// Closed cleanly.
    Closed,
}

/// One end of a ring as its slot describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct EndInfo {
    /// Slot index (0 for the consumer and for an SPSC producer).
    pub slot: usize,
    /// State, with liveness checked now.
    pub state: EndState,
    /// The process that holds or last held it (0 if never).
    pub pid: u32,
    /// How many times the slot was attached.
    pub generation: u32,
    /// What tells whether the holder named in the slot lives (None for a free slot).
    pub evidence: Option<Evidence>,
    /// The holder's PID namespace (inode of `/proc/PID/ns/pid`), if it was recorded.
    pub pid_namespace: Option<u32>,
    /// Whether that is the PID namespace of the process asking (None: unknown on either side).
    /// An end in another namespace is told alive or dead by its lock only.
    pub same_pid_namespace: Option<bool>,
}

/// What tells whether the holder of an end lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub enum Evidence {
    /// An OFD lock on its slot's byte of the backing object (file, POSIX shm, memfd): valid
    /// from any PID namespace.
    Lock,
    /// Its pid and start time (anonymous regions, or no lock could be had): valid only from its
    /// own PID namespace.
    Pid,
}

/// How far initialisation got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub enum InitState {
    /// Nobody started: all zero.
    Empty,
    /// A creator is initialising it now.
    Initializing,
    /// The creator died half-way: the ring can never become ready; remove and recreate it.
    CrashedDuringInit,
    /// Ready for use.
    Ready,
}

/// A snapshot of a ring: read without attaching, so it never disturbs the ends.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct RingStatus {
    /// Initialisation state.
    pub init: InitState,
    /// SPSC or MPSC (None while not ready).
    pub kind: Option<Kind>,
    /// Layout version found.
    pub version: u32,
    /// Data bytes.
    pub capacity: u64,
    /// Largest message.
    pub max_message: u32,
    /// Consumer position.
    pub head: u64,
    /// Producer position.
    pub tail: u64,
    /// Bytes between them (records, headers and padding in flight).
    pub bytes_in_flight: u64,
    /// Records in flight (messages, claims in progress, padding not counted).
    pub records_in_flight: u64,
    /// The consumer end (unused by broadcast rings, whose receivers are `subscribers`).
    pub consumer: EndInfo,
    /// The producer ends (one for SPSC and broadcast).
    pub producers: Vec<EndInfo>,
    /// Broadcast: what the producer does when a subscriber is behind (None for other kinds).
    pub policy: Option<layout::Policy>,
    /// Broadcast: the sequence number of the next message (messages sent so far).
    pub next_seq: Option<u64>,
    /// Broadcast: the subscriber slots that were ever attached, with their positions.
    pub subscribers: Vec<SubscriberInfo>,
}

/// A broadcast subscriber's slot and how far behind the producer it is.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct SubscriberInfo {
    /// The slot, as for the other ends.
    pub end: EndInfo,
    /// The position it last stored (it may have read further since).
    pub cursor: u64,
    /// Bytes from its cursor to the producer's end.
    pub lag_bytes: u64,
    /// Messages from its cursor to the producer's end (None when its cursor is no longer a
    /// position in the ring: written over, with the `Overwrite` policy).
    pub lag_messages: Option<u64>,
}

impl RingStatus {
    /// Whether some end is attached by a process not shown to be dead.
    pub fn in_use(&self) -> bool {
        std::iter::once(&self.consumer)
            .chain(&self.producers)
            .chain(self.subscribers.iter().map(|s| &s.end))
            .any(|e| matches!(e.state, EndState::Attached | EndState::Unknown))
    }

    /// The pids of the ends shown to be attached (sorted, each once).
    pub fn attached_pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = std::iter::once(&self.consumer)
            .chain(&self.producers)
            .chain(self.subscribers.iter().map(|s| &s.end))
            .filter(|e| e.state == EndState::Attached)
            .map(|e| e.pid)
            .collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    }
}

/// Slot `slot` (`s`, whose holder locks header byte `lock_offset`) as it stands now.
fn end(region: &Region, slot: usize, s: &layout::Slot, lock_offset: usize) -> EndInfo {
    let w = s.owner.load(Ordering::Acquire);
    let o = Owner::decode(w);
    let state = match o.state {
        identity::ATTACHED => {
            match identity::liveness(&s.owner, NsField::Tenure(&s.tenure), w, || {
                region.probe_end(lock_offset)
            }) {
                Liveness::Alive => EndState::Attached,
                Liveness::Gone => EndState::Dead,
                Liveness::Unknown => EndState::Unknown,
            }
        }
        identity::CLOSED => EndState::Closed,
        _ => EndState::Free,
    };
    // SYNC POINT: Acquire pairs with the Release store in `identity::publish_namespace`; the
    // namespace belongs to `w` only if the word and the tenure are unchanged after it was read.
    let tenure = s.tenure.load(Ordering::Acquire);
    let ns = crate::layout::Slot::pid_ns_of(tenure);
    let same = s.owner.load(Ordering::Acquire) == w && s.tenure.load(Ordering::Relaxed) == tenure;
    let pid_namespace = (o.ns_known && ns != 0 && same).then_some(ns);
    let mine = identity::my_pid_ns();
    EndInfo {
        slot,
        state,
        pid: o.pid,
        generation: crate::layout::Slot::generation_of(tenure),
        evidence: match (state, o.lock) {
            (EndState::Free, _) => None,
            (_, true) => Some(Evidence::Lock),
            (_, false) => Some(Evidence::Pid),
        },
        pid_namespace,
        same_pid_namespace: pid_namespace.filter(|_| mine != 0).map(|ns| ns == mine),
    }
}

/// Describe the ring in `region` without attaching to it.
pub fn status(region: &Region) -> Result<RingStatus, AttachError> {
    if region.len() < FIXED_HEADER {
        return Err(AttachError::RegionTooSmall { need: FIXED_HEADER as u64, have: region.len() as u64 });
    }
    // SAFETY: the region holds at least the fixed header (checked above) and is page-aligned;
    // Header is all atomics (its padding too: `Pad`), valid for any bytes and for a peer's
    // writes; we only load from it.
    let h = unsafe { &*(region.as_ptr() as *const Header) };
    let state = h.state.load(Ordering::Acquire);
    let consumer_slot = || end(region, 0, &h.consumer, CONSUMER_SLOT);
    if state != STATE_READY {
        let creator_word = h.creator.load(Ordering::Acquire);
        let init = match state {
            _ if state == STATE_INITIALIZING || (state == 0 && creator_word != 0) => {
                let creator =
                    identity::liveness(&h.creator, NsField::Creator(&h.creator_ns), creator_word, || {
                        region.probe_end(CREATOR_WORD)
                    });
                // A creator that finished stored READY before it unlocked: look again.
                if creator == Liveness::Gone && h.state.load(Ordering::Acquire) != STATE_READY {
                    InitState::CrashedDuringInit
                } else {
                    InitState::Initializing
                }
            }
            0 if h.magic.load(Ordering::Relaxed) == 0 => InitState::Empty,
            other => {
                return Err(AttachError::BadHeader {
                    field: "state",
                    found: other.into(),
                    expected: "0, 1 or 2".to_owned(),
                })
            }
        };
        return Ok(RingStatus {
            init,
            kind: None,
            version: h.version.load(Ordering::Relaxed),
            capacity: 0,
            max_message: 0,
            head: 0,
            tail: 0,
            bytes_in_flight: 0,
            records_in_flight: 0,
            consumer: consumer_slot(),
            producers: Vec::new(),
            policy: None,
            next_seq: None,
            subscribers: Vec::new(),
        });
    }
    let desc = handshake::wait_ready(h, std::time::Duration::ZERO)?;
    let kind =
        Kind::from_u32(desc.kind).ok_or(AttachError::WrongKind { found: desc.kind, expected: Kind::Spsc })?;
    let geo = handshake::validate(&desc, kind, region.len())?;
    let head = h.head.load(Ordering::Acquire);
    let stored = h.tail.load(Ordering::Acquire);
    let word_at = |idx: usize| {
        let mut word = [0u8; 8];
        match region.read_at(geo.header_size + idx, &mut word) {
            Ok(()) => u64::from_le_bytes(word),
            Err(_) => 0,
        }
    };
    let start = stored.max(head);
    config::check_positions(head, start, geo.capacity).map_err(AttachError::Corrupt)?;
    // The stored SPSC (and broadcast) tail may trail what was published (a producer killed
    // between its publishing store and its tail store): the record words say where the end is
    // (at most a capacity past `head`).
    let (tail, next_seq) = match kind {
        Kind::Spsc => {
            (crate::spsc::published_end(&geo, head, start, word_at).map_err(AttachError::Corrupt)?, None)
        }
        Kind::Mpsc => (start, None),
        Kind::Broadcast => {
            let (end, seq) = crate::broadcast::published_end(
                &geo,
                head,
                start,
                h.next_seq.load(Ordering::Acquire),
                word_at,
            )
            .map_err(AttachError::Corrupt)?;
            (end, Some(seq))
        }
    };
    let in_flight = tail - head;
    let producers = (0..geo.max_producers as usize)
        .map(|i| {
            // SAFETY: i < max_producers, and validate() checked the region holds header_size
            // (which covers every slot) plus the data area; slots are 16-aligned.
            let s = unsafe {
                &*(region.as_ptr().add(FIXED_HEADER + i * layout::SLOT_SIZE) as *const layout::Slot)
            };
            end(region, i, s, layout::producer_slot(i))
        })
        .collect();
    // Count records by walking from head, bounded by the bytes in flight (positions below
    // 2^62 and at most a capacity apart, checked above: no sum overflows; each step is a
    // record of at least 8 bytes).
    let records = if kind == Kind::Broadcast {
        crate::broadcast::messages_between(&geo, head, tail, word_at).unwrap_or(0)
    } else {
        records_between(&geo, head, in_flight, word_at)
    };
    let subscribers = if kind == Kind::Broadcast {
        (0..geo.subscribers as usize)
            .filter_map(|i| {
                // SAFETY: i < subscribers, and validate() checked the region holds header_size
                // (which covers every subscriber entry) plus the data area; entries are
                // 128-aligned lines of atomics.
                let e = unsafe {
                    &*(region.as_ptr().add(layout::subscriber_slot(i)) as *const layout::Subscriber)
                };
                let end = end(region, i, &e.slot, layout::subscriber_slot(i));
                if end.state == EndState::Free {
                    return None;
                }
                let cursor = e.cursor.load(Ordering::Acquire);
                let whole = cursor >= head && cursor <= tail;
                Some(SubscriberInfo {
                    end,
                    cursor,
                    lag_bytes: tail.saturating_sub(cursor),
                    lag_messages: whole
                        .then(|| crate::broadcast::messages_between(&geo, cursor, tail, word_at))
                        .flatten(),
                })
            })
            .collect()
    } else {
        Vec::new()
    };
    Ok(RingStatus {
        init: InitState::Ready,
        kind: Some(kind),
        version: desc.version,
        capacity: geo.capacity,
        max_message: desc.max_message,
        head,
        tail,
        bytes_in_flight: in_flight,
        records_in_flight: records,
        consumer: consumer_slot(),
        producers,
        policy: (kind == Kind::Broadcast).then_some(geo.policy),
        next_seq,
        subscribers,
    })
}

/// Records (messages and MPSC claims) from `head` over `in_flight` bytes, stopping at the first
/// word that is not one.
fn records_between(geo: &config::Geometry, head: u64, in_flight: u64, word_at: impl Fn(usize) -> u64) -> u64 {
    let mut records = 0;
    let mut pos = head;
    while pos < head + in_flight {
        let idx = (pos & geo.mask) as usize;
        let r = RecordHeader::from_word(word_at(idx));
        let size = match r.kind() {
            layout::TYPE_PAD => geo.capacity as usize - idx,
            layout::TYPE_MSG | layout::TYPE_CLAIMED | layout::TYPE_SKIP
                if (r.len as usize) <= geo.max_message =>
            {
                if r.kind() != layout::TYPE_SKIP {
                    records += 1;
                }
                layout::record_size(r.len as usize)
            }
            _ => break, // not yet written, or corrupt: stop counting
        };
        pos += size as u64;
    }
    records
}

/// A ring found by [`find_rings`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct FoundRing {
    /// Its file.
    pub path: PathBuf,
    /// Its state, or why it could not be read.
    pub status: Result<RingStatus, String>,
}

/// Whether a file starts like one of this library's rings: the magic, or a creator that began
/// initialising (state 1) and may have crashed before writing the magic.
fn looks_like_ring(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 48];
    let Ok(mut f) = std::fs::File::open(path) else { return false };
    if f.read_exact(&mut head).is_err() {
        return false;
    }
    let magic = u64::from_le_bytes(head[0..8].try_into().expect("8 bytes"));
    let state = u32::from_le_bytes(head[20..24].try_into().expect("4 bytes"));
    let creator = u64::from_le_bytes(head[40..48].try_into().expect("8 bytes"));
    magic == MAGIC || (magic == 0 && (state == STATE_INITIALIZING || creator != 0))
}

/// This library's rings among the regular files directly in `dir` (`/dev/shm` for POSIX shm).
/// Files that are not rings are left out; rings that cannot be read are listed with the reason.
pub fn find_rings(dir: &Path) -> std::io::Result<Vec<FoundRing>> {
    let unreadable = |e: std::io::Error| {
        std::io::Error::new(e.kind(), format!("cannot read directory {}: {e}", dir.display()))
    };
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(unreadable)? {
        let entry = entry.map_err(unreadable)?;
        let path = entry.path();
        if !entry.file_type().map(|t| t.is_file()).unwrap_or(false) || !looks_like_ring(&path) {
            continue;
        }
        let status = OpenOptions::new()
            .read_only()
            .open_file(&path)
            .map_err(|e| e.to_string())
            .and_then(|r| status(&r).map_err(|e| e.to_string()));
        found.push(FoundRing { path, status });
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}
