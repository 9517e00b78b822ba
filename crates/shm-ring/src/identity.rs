//! Who holds an end of a ring, in one atomic word, so a pid reused by a later process is not
//! mistaken for the holder that died.
//!
//! ```text
//!  63 62 61                    38 37                                   0
//! +-----+------------------------+--------------------------------------+
//! |state|     pid (24 bits)      |  process start time, low 38 bits     |
//! +-----+------------------------+--------------------------------------+
//! ```
//! `state` is 0 free (never attached), 1 attached, 2 closed (detached cleanly). The start time
//! is in clock ticks since boot (`/proc/PID/stat`), 38 bits last ~87 years at 100 Hz.

use shm_core::ProcessIdentity;

pub(crate) const ATTACHED: u64 = 1;
pub(crate) const CLOSED: u64 = 2;

const START_BITS: u32 = 38;
const START_MASK: u64 = (1 << START_BITS) - 1;
const PID_MASK: u64 = (1 << 24) - 1;

/// A decoded owner word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Owner {
    pub state: u64,
    pub pid: u32,
    pub start: u64,
}

impl Owner {
    pub fn decode(w: u64) -> Owner {
        Owner { state: w >> 62, pid: ((w >> START_BITS) & PID_MASK) as u32, start: w & START_MASK }
    }

    pub fn word(state: u64, id: ProcessIdentity) -> u64 {
        state << 62 | (id.pid as u64 & PID_MASK) << START_BITS | (id.start_time & START_MASK)
    }

    /// Whether the process named here still runs (the same process, not a pid reuse).
    pub fn is_alive(&self) -> bool {
        if cfg!(loom) {
            return true;
        }
        match ProcessIdentity::of(self.pid) {
            Some(now) => self.start == 0 || (now.start_time & START_MASK) == self.start,
            None => false,
        }
    }
}

/// The calling process.
pub(crate) fn me() -> ProcessIdentity {
    if cfg!(loom) {
        return ProcessIdentity { pid: 1, start_time: 1 };
    }
    ProcessIdentity::current()
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_liveness() {
        let me = me();
        let w = Owner::word(ATTACHED, me);
        let o = Owner::decode(w);
        assert_eq!((o.state, o.pid), (ATTACHED, me.pid));
        assert!(o.is_alive());
        let reused = Owner { start: o.start ^ 1, ..o };
        assert!(!reused.is_alive(), "a different start time means a different process");
        assert_eq!(Owner::decode(Owner::word(CLOSED, me)).state, CLOSED);
    }
}
