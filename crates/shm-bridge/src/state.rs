//! A bridge's state page: a small mapped file that holds where the bridge stands in its stream
//! and its counters. Its words are atomics in a `MAP_SHARED` file mapping, so they survive a
//! SIGKILL of the bridge (the page cache keeps every store the process made), a restarted
//! bridge picks up where the killed one stood, and `shm-bridge status` reads the counters of a
//! running bridge without asking it anything.
//!
//! The file is written only by its bridge, which holds an exclusive `flock` on it while it
//! runs. Nothing read from it bounds a memory access: a damaged file gives wrong counters or a
//! wrong position, never undefined behaviour.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::fcntl::{Flock, FlockArg};
use shm_core::{OpenError, Region};

use crate::error::BridgeError;

/// "SHMBRST1", little-endian.
const MAGIC: u64 = u64::from_le_bytes(*b"SHMBRST1");
const VERSION: u64 = 1;
/// The file's length: one page.
pub(crate) const LEN: usize = 4096;

/// Word indexes. A cursor is two words (`seq`, `sent_below`), kept twice: the one `gen` names
/// is current, so a bridge killed while it writes the other leaves the current one whole.
mod w {
    pub const MAGIC: usize = 0;
    pub const VERSION: usize = 1;
    pub const ROLE: usize = 2;
    pub const PID: usize = 3;
    pub const RING_ID: usize = 4;
    pub const SOURCE: usize = 5;
    pub const GEN: usize = 6;
    pub const CURSORS: usize = 7; // 7, 8 and 9, 10
    pub const COUNTERS: usize = 16; // 16 .. 16 + Counter::ALL.len()
    pub const STARTED_MS: usize = 40;
    pub const UPDATED_MS: usize = 41;
    pub const PEERS: usize = 42;
    pub const SOURCES: usize = 64; // SOURCE_SLOTS pairs (source, next seq)
}

/// Sources an inbound bridge remembers across a restart (the most recent ones).
pub(crate) const SOURCE_SLOTS: usize = 32;

/// Which end of the network a bridge is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// `shm-bridge out`: reads a ring, publishes on Zenoh.
    Out,
    /// `shm-bridge in`: subscribes on Zenoh, writes a ring.
    In,
}

impl Role {
    fn code(self) -> u64 {
        match self {
            Role::Out => 1,
            Role::In => 2,
        }
    }

    fn from_code(v: u64) -> Option<Role> {
        match v {
            1 => Some(Role::Out),
            2 => Some(Role::In),
            _ => None,
        }
    }

    /// `out` or `in`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Out => "out",
            Role::In => "in",
        }
    }
}

/// The counters of a bridge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Messages forwarded: published (`out`) or written into the ring (`in`).
    Messages,
    /// Payload bytes of those messages.
    Bytes,
    /// Gaps seen (`in`): times a source's sequence number jumped ahead.
    Gaps,
    /// Messages missing in those gaps.
    Missing,
    /// Messages received again (`in`, dropped) or found already sent after a restart (`out`,
    /// skipped).
    Duplicates,
    /// Messages dropped because the ring was full (`in` with `--on-full drop`), or that a
    /// lapped broadcast subscriber was told it lost (`out` on an `Overwrite` ring).
    Drops,
    /// Times the Zenoh peers came back after all were gone.
    Reconnects,
    /// Samples without a bridge sequence number (`in`: from a plain Zenoh publisher),
    /// forwarded unchecked.
    Unsequenced,
    /// Times the stream switched to another source (`in`).
    SourceChanges,
    /// Messages published again (`out`): those not acknowledged when a subscriber matched
    /// again after none did, or when the acknowledgements stayed short of them.
    Resent,
}

impl Counter {
    /// Every counter, in the order of the status line and the JSON.
    pub const ALL: [Counter; 10] = [
        Counter::Messages,
        Counter::Bytes,
        Counter::Gaps,
        Counter::Missing,
        Counter::Duplicates,
        Counter::Drops,
        Counter::Reconnects,
        Counter::Unsequenced,
        Counter::SourceChanges,
        Counter::Resent,
    ];

    /// The counter's name in the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Counter::Messages => "messages",
            Counter::Bytes => "bytes",
            Counter::Gaps => "gaps",
            Counter::Missing => "missing",
            Counter::Duplicates => "duplicates",
            Counter::Drops => "drops",
            Counter::Reconnects => "reconnects",
            Counter::Unsequenced => "unsequenced",
            Counter::SourceChanges => "source_changes",
            Counter::Resent => "resent",
        }
    }

    fn word(self) -> usize {
        w::COUNTERS + self as usize
    }
}

/// Where an outbound bridge stands: the sequence number of the next message it publishes, and
/// the ring position below which every message was published already.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cursor {
    pub seq: u64,
    pub sent_below: u64,
}

/// A mapped state page, locked for its bridge (or opened to be read, by `status`).
#[derive(Debug)]
pub struct StatePage {
    region: Region,
    path: PathBuf,
    // Held for the page's life: one bridge per state file.
    _lock: Option<Flock<File>>,
}

impl StatePage {
    /// Open (creating if missing) the state page at `path` for a bridge of `role` and lock it.
    /// A page of another role, or one another running bridge holds, is refused.
    pub(crate) fn open_for(path: &Path, role: Role) -> Result<StatePage, BridgeError> {
        let err =
            |e: &dyn std::fmt::Display| BridgeError::State { path: path.to_owned(), reason: e.to_string() };
        let (region, fresh) = match Region::create_file(path, LEN) {
            Ok(r) => (r, true),
            Err(shm_core::CreateError::AlreadyExists { .. }) => match Region::open_file(path) {
                Ok(r) if r.len() >= LEN => (r, false),
                Ok(r) => {
                    return Err(err(&format!("{} bytes long, expected a state page of {LEN} bytes", r.len())))
                }
                // A bridge killed between creating the file and sizing it left it empty; or
                // another is sizing it now (its lock, below, tells).
                Err(OpenError::TooSmall { have: 0, .. }) => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    match Region::open_file(path) {
                        Ok(r) if r.len() >= LEN => (r, false),
                        _ => {
                            std::fs::remove_file(path).map_err(|e| err(&e))?;
                            (Region::create_file(path, LEN).map_err(|e| err(&e))?, true)
                        }
                    }
                }
                Err(OpenError::TooSmall { have, .. }) => {
                    return Err(err(&format!("{have} bytes long, expected a state page of {LEN} bytes")))
                }
                Err(e) => return Err(err(&e)),
            },
            Err(e) => return Err(err(&e)),
        };
        let file = File::options().read(true).write(true).open(path).map_err(|e| err(&e))?;
        let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
            if e == nix::errno::Errno::EWOULDBLOCK {
                BridgeError::StateInUse { path: path.to_owned() }
            } else {
                err(&e)
            }
        })?;
        let page = StatePage { region, path: path.to_owned(), _lock: Some(lock) };
        if fresh || page.load(w::MAGIC) == 0 {
            page.store(w::VERSION, VERSION);
            page.store(w::ROLE, role.code());
            page.store(w::MAGIC, MAGIC);
        }
        page.check(Some(role))?;
        page.store(w::PID, u64::from(std::process::id()));
        page.store(w::STARTED_MS, unix_ms());
        page.store(w::PEERS, 0);
        page.touch();
        Ok(page)
    }

    /// Open the state page at `path` to read it.
    pub fn open_read(path: &Path) -> Result<StatePage, BridgeError> {
        let err =
            |e: &dyn std::fmt::Display| BridgeError::State { path: path.to_owned(), reason: e.to_string() };
        let region = shm_core::OpenOptions::new().read_only().open_file(path).map_err(|e| err(&e))?;
        if region.len() < LEN {
            return Err(err(&format!("{} bytes long, expected a state page of {LEN} bytes", region.len())));
        }
        let page = StatePage { region, path: path.to_owned(), _lock: None };
        page.check(None)?;
        Ok(page)
    }

    fn check(&self, role: Option<Role>) -> Result<(), BridgeError> {
        let bad = |reason: String| BridgeError::State { path: self.path.clone(), reason };
        if self.load(w::MAGIC) != MAGIC {
            return Err(bad(format!(
                "magic {:#018x}, expected {MAGIC:#018x} (not a shm-bridge state file)",
                self.load(w::MAGIC)
            )));
        }
        if self.load(w::VERSION) != VERSION {
            return Err(bad(format!("version {}, expected {VERSION}", self.load(w::VERSION))));
        }
        let found = Role::from_code(self.load(w::ROLE));
        match (found, role) {
            (None, _) => Err(bad(format!("role {}, expected 1 (out) or 2 (in)", self.load(w::ROLE)))),
            (Some(f), Some(r)) if f != r => {
                Err(bad(format!("written by an {} bridge, expected an {} bridge's", f.name(), r.name())))
            }
            _ => Ok(()),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Which bridge writes this page.
    pub fn role(&self) -> Role {
        Role::from_code(self.load(w::ROLE)).unwrap_or(Role::Out)
    }

    /// Whether a bridge holds the page now (its lock is taken): checked with a shared `flock`
    /// on a descriptor of our own, which the kernel refuses while the bridge's exclusive one
    /// is held, whatever PID namespace it runs in.
    pub fn is_running(&self) -> bool {
        match File::open(&self.path) {
            Ok(f) => match Flock::lock(f, FlockArg::LockSharedNonblock) {
                Ok(_) => false,
                Err((_, e)) => e == nix::errno::Errno::EWOULDBLOCK,
            },
            Err(_) => false,
        }
    }

    #[inline]
    fn word(&self, i: usize) -> &AtomicU64 {
        assert!((i + 1) * 8 <= LEN);
        // SAFETY: the mapping is at least LEN bytes (checked at open) and page-aligned, so word
        // `i` (checked above) is in bounds and 8-aligned; it lives as long as `self.region`,
        // which the returned borrow cannot outlive. Other processes may write the word at any
        // time, which is what an atomic allows.
        unsafe { &*self.region.as_ptr().add(i * 8).cast::<AtomicU64>() }
    }

    fn load(&self, i: usize) -> u64 {
        // Acquire: pairs with the Release stores below (a cursor's words before its `gen`).
        self.word(i).load(Ordering::Acquire)
    }

    fn store(&self, i: usize, v: u64) {
        // Release: a reader that sees this word sees the stores made before it.
        self.word(i).store(v, Ordering::Release);
    }

    /// A counter's value.
    pub fn get(&self, c: Counter) -> u64 {
        self.load(c.word())
    }

    pub(crate) fn add(&self, c: Counter, n: u64) {
        self.word(c.word()).fetch_add(n, Ordering::Relaxed);
    }

    /// The pid of the bridge that last opened the page.
    pub fn pid(&self) -> u64 {
        self.load(w::PID)
    }

    /// When the bridge started and when it last wrote its status (ms since the Unix epoch).
    pub fn times_ms(&self) -> (u64, u64) {
        (self.load(w::STARTED_MS), self.load(w::UPDATED_MS))
    }

    /// The Zenoh peers the bridge saw at its last status update.
    pub fn peers(&self) -> u64 {
        self.load(w::PEERS)
    }

    pub(crate) fn set_peers(&self, n: u64) {
        self.store(w::PEERS, n);
    }

    pub(crate) fn touch(&self) {
        self.store(w::UPDATED_MS, unix_ms());
    }

    /// The ring this page's positions refer to (`AnyConsumer::ring_id`), and the source id of
    /// an outbound bridge.
    pub(crate) fn ring_and_source(&self) -> (u64, u64) {
        (self.load(w::RING_ID), self.load(w::SOURCE))
    }

    /// Start over for another ring: a new source id, sequence 0, nothing sent, counters 0.
    pub(crate) fn reset_out(&self, ring_id: u64, source: u64) {
        for c in Counter::ALL {
            self.store(c.word(), 0);
        }
        self.write_cursor(Cursor { seq: 0, sent_below: 0 });
        self.store(w::SOURCE, source);
        self.store(w::RING_ID, ring_id);
    }

    pub(crate) fn cursor(&self) -> Cursor {
        let base = w::CURSORS + 2 * (self.load(w::GEN) & 1) as usize;
        Cursor { seq: self.load(base), sent_below: self.load(base + 1) }
    }

    /// Store `c` as the current cursor: into the copy that is not current, then one store of
    /// `gen` makes it current, so the page always holds a whole cursor.
    pub(crate) fn write_cursor(&self, c: Cursor) {
        let gen = self.load(w::GEN).wrapping_add(1);
        let base = w::CURSORS + 2 * (gen & 1) as usize;
        self.store(base, c.seq);
        self.store(base + 1, c.sent_below);
        self.store(w::GEN, gen);
    }

    /// The source remembered in slot `i` and the sequence number expected next from it.
    pub(crate) fn slot(&self, i: usize) -> Option<(u64, u64)> {
        let base = w::SOURCES + 2 * (i % SOURCE_SLOTS);
        let source = self.load(base);
        (source != 0).then(|| (source, self.load(base + 1)))
    }

    /// Remember `source` in slot `i` with `next` as the sequence number expected next.
    pub(crate) fn assign_slot(&self, i: usize, source: u64, next: u64) {
        let base = w::SOURCES + 2 * (i % SOURCE_SLOTS);
        // Source 0 (no source) while the pair is rewritten: a bridge killed in between
        // leaves a free slot, never a source with another's sequence number.
        self.store(base, 0);
        self.store(base + 1, next);
        self.store(base, source);
    }

    /// The next sequence number expected in slot `i` (one store: the pair's source stays).
    pub(crate) fn set_slot_next(&self, i: usize, next: u64) {
        self.store(w::SOURCES + 2 * (i % SOURCE_SLOTS) + 1, next);
    }
}

/// Where the labels are: the ring and the key, each a u32 length and up to `LABEL - 4` bytes.
const LABELS: usize = 2048;
const LABEL: usize = 1024;

impl StatePage {
    /// Record the ring and key the bridge forwards (shown by `status`).
    pub(crate) fn set_labels(&self, ring: &str, key: &str) {
        for (i, text) in [ring, key].into_iter().enumerate() {
            let b = text.as_bytes();
            let b = &b[..b.len().min(LABEL - 4)];
            let at = LABELS + i * LABEL;
            // The page is LEN bytes and each label fits its LABEL bytes: in bounds.
            let _ = self.region.write_at(at, &(b.len() as u32).to_le_bytes());
            let _ = self.region.write_at(at + 4, b);
        }
    }

    /// The ring and the key the bridge forwards, as it recorded them.
    pub fn labels(&self) -> (String, String) {
        let read = |i: usize| {
            let at = LABELS + i * LABEL;
            let mut n = [0u8; 4];
            if self.region.read_at(at, &mut n).is_err() {
                return String::new();
            }
            // A length read from the file bounds nothing before it is clamped.
            let n = (u32::from_le_bytes(n) as usize).min(LABEL - 4);
            let mut b = vec![0u8; n];
            match self.region.read_at(at + 4, &mut b) {
                Ok(()) => String::from_utf8_lossy(&b).into_owned(),
                Err(_) => String::new(),
            }
        };
        (read(0), read(1))
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
