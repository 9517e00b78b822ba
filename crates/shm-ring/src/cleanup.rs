//! Removing abandoned rings from a directory ([`cleanup`]), and the report of what was removed,
//! what was kept and why, and what could not be removed.
//!
//! A ring is abandoned when no end is attached by a live process, or when its creator crashed
//! half-way through initialisation. An abandoned ring that still holds messages is kept unless
//! the caller forces it: on a file-backed ring those messages wait for the next consumer.
//!
//! ```no_run
//! use shm_ring::{cleanup, CleanupOptions};
//!
//! let report = cleanup("/dev/shm".as_ref(), &CleanupOptions::new().dry_run(true))?;
//! print!("{report}"); // "would remove /dev/shm/old", "kept /dev/shm/x: in use by pid 4242", ...
//! # Ok::<(), std::io::Error>(())
//! ```

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::inspect::{find_rings, InitState, RingStatus};

/// What [`cleanup`] may remove, and whether it only reports.
///
/// ```
/// let options = shm_ring::CleanupOptions::new().dry_run(true).force(false);
/// # let _ = options;
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CleanupOptions {
    dry_run: bool,
    force: bool,
}

impl CleanupOptions {
    /// Remove abandoned rings, but keep those that still hold undelivered messages.
    pub fn new() -> CleanupOptions {
        CleanupOptions::default()
    }

    /// Only report what would be removed; remove nothing.
    pub fn dry_run(mut self, dry_run: bool) -> CleanupOptions {
        self.dry_run = dry_run;
        self
    }

    /// Also remove abandoned rings that still hold undelivered messages, discarding them. A
    /// ring attached by a live process is never removed.
    pub fn force(mut self, force: bool) -> CleanupOptions {
        self.force = force;
        self
    }
}

/// Messages written to a ring and not yet consumed, as its header shows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Undelivered {
    /// Records between the consumer and producer positions (messages, and claims still being
    /// written on an MPSC ring).
    pub messages: u64,
    /// Bytes between the two positions (records with their headers and padding).
    pub bytes: u64,
}

impl fmt::Display for Undelivered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = if self.messages == 1 { "" } else { "s" };
        write!(f, "{} message{s} ({} bytes)", self.messages, self.bytes)
    }
}

/// Why [`cleanup`] left a ring in place.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub enum KeepReason {
    /// Some end is attached by a process that is running (its pids).
    InUse {
        /// The processes attached, each once.
        pids: Vec<u32>,
    },
    /// Every end is gone but messages wait for a consumer; [`CleanupOptions::force`] removes it.
    Undelivered(Undelivered),
    /// Its creator is initialising it now.
    Initializing,
    /// The header is all zero: no ring was ever set up in it.
    Empty,
    /// It could not be opened or its header is not valid (the reason).
    Unreadable(String),
}

impl fmt::Display for KeepReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeepReason::InUse { pids } => {
                let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
                write!(f, "in use by pid {}", pids.join(", "))
            }
            KeepReason::Undelivered(u) => write!(f, "{u} undelivered"),
            KeepReason::Initializing => f.write_str("its creator is initialising it"),
            KeepReason::Empty => f.write_str("never initialised"),
            KeepReason::Unreadable(e) => write!(f, "cannot read it: {e}"),
        }
    }
}

/// What [`cleanup`] did with one ring.
#[derive(Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub enum CleanupOutcome {
    /// Removed; `discarded` says what it still held when it was removed by force.
    Removed {
        /// Undelivered messages lost with it (only with [`CleanupOptions::force`]).
        discarded: Option<Undelivered>,
    },
    /// Would be removed (a dry run); `discarded` as for `Removed`.
    WouldRemove {
        /// Undelivered messages that would be lost with it.
        discarded: Option<Undelivered>,
    },
    /// Left in place, and why.
    Kept(KeepReason),
    /// Abandoned, but removing it failed (`EPERM` in a sticky `/dev/shm` for another user's
    /// file, for example).
    Failed(#[cfg_attr(feature = "serde", serde(serialize_with = "error_text"))] io::Error),
}

#[cfg(feature = "serde")]
fn error_text<S: serde::Serializer>(e: &io::Error, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(e)
}

/// One ring [`cleanup`] looked at.
#[derive(Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct CleanupEntry {
    /// Its file.
    pub path: PathBuf,
    /// What was done with it.
    pub outcome: CleanupOutcome,
}

impl fmt::Display for CleanupEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        let (verb, discarded) = match &self.outcome {
            CleanupOutcome::Removed { discarded } => ("removed", discarded),
            CleanupOutcome::WouldRemove { discarded } => ("would remove", discarded),
            CleanupOutcome::Kept(reason) => return write!(f, "kept {path}: {reason}"),
            CleanupOutcome::Failed(e) => return write!(f, "failed to remove {path}: {e}"),
        };
        write!(f, "{verb} {path}")?;
        if let Some(u) = discarded {
            write!(f, ", discarding {u} undelivered")?;
        }
        Ok(())
    }
}

/// What [`cleanup`] did with each ring it found, in path order. `Display` writes one line per
/// ring.
#[derive(Debug, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct CleanupReport {
    /// Every ring found, with what was done with it.
    pub entries: Vec<CleanupEntry>,
}

impl CleanupReport {
    /// The rings removed (or, in a dry run, that would be).
    pub fn removed(&self) -> impl Iterator<Item = &Path> {
        self.entries
            .iter()
            .filter(|e| {
                matches!(e.outcome, CleanupOutcome::Removed { .. } | CleanupOutcome::WouldRemove { .. })
            })
            .map(|e| e.path.as_path())
    }

    /// The rings left in place, and why.
    pub fn kept(&self) -> impl Iterator<Item = (&Path, &KeepReason)> {
        self.entries.iter().filter_map(|e| match &e.outcome {
            CleanupOutcome::Kept(reason) => Some((e.path.as_path(), reason)),
            _ => None,
        })
    }

    /// The rings that should have been removed but could not be, with the error.
    pub fn failed(&self) -> impl Iterator<Item = (&Path, &io::Error)> {
        self.entries.iter().filter_map(|e| match &e.outcome {
            CleanupOutcome::Failed(error) => Some((e.path.as_path(), error)),
            _ => None,
        })
    }
}

impl fmt::Display for CleanupReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.entries {
            writeln!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Why a ring must stay, or `None` if it is abandoned. Liveness is what [`RingStatus`] says.
fn keep_reason(status: &RingStatus) -> Option<KeepReason> {
    match status.init {
        InitState::CrashedDuringInit => None,
        InitState::Initializing => Some(KeepReason::Initializing),
        InitState::Empty => Some(KeepReason::Empty),
        InitState::Ready if status.in_use() => Some(KeepReason::InUse { pids: status.attached_pids() }),
        InitState::Ready => undelivered(status).map(KeepReason::Undelivered),
    }
}

/// The messages between the positions of a ready ring (`status` read them with atomic loads
/// from the header, without attaching).
fn undelivered(status: &RingStatus) -> Option<Undelivered> {
    // A broadcast ring's messages are owed to no one once no subscriber is attached (a new
    // subscriber starts at the end, or takes what history is left).
    (status.tail != status.head && status.kind != Some(crate::Kind::Broadcast))
        .then_some(Undelivered { messages: status.records_in_flight, bytes: status.bytes_in_flight })
}

/// Remove the abandoned rings in `dir` (see [`find_rings`]): those no live process is attached
/// to, and those whose creator crashed during initialisation. An abandoned ring that still
/// holds undelivered messages is kept unless [`CleanupOptions::force`] is set. A failure to
/// remove one ring is recorded in the report and the others are still processed.
///
/// Fails only when `dir` cannot be read.
pub fn cleanup(dir: &Path, options: &CleanupOptions) -> io::Result<CleanupReport> {
    let mut report = CleanupReport::default();
    for ring in find_rings(dir)? {
        let (reason, discarded) = match &ring.status {
            Err(e) => (Some(KeepReason::Unreadable(e.clone())), None),
            Ok(status) => match keep_reason(status) {
                Some(KeepReason::Undelivered(u)) if options.force => (None, Some(u)),
                reason => (reason, None),
            },
        };
        let outcome = match reason {
            Some(reason) => CleanupOutcome::Kept(reason),
            None if options.dry_run => CleanupOutcome::WouldRemove { discarded },
            None => match std::fs::remove_file(&ring.path) {
                Ok(()) => CleanupOutcome::Removed { discarded },
                Err(e) => CleanupOutcome::Failed(e),
            },
        };
        report.entries.push(CleanupEntry { path: ring.path, outcome });
    }
    Ok(report)
}
