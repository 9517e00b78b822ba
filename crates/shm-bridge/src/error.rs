//! What can stop a bridge.

use std::path::PathBuf;

/// Why a bridge could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// The local ring could not be opened, created or used.
    #[error("ring {ring}: {reason}")]
    Ring {
        /// The ring as given (`--ring`).
        ring: String,
        /// What went wrong, with the value found and the one expected.
        reason: String,
    },
    /// The state file could not be used.
    #[error("state file {}: {reason}", path.display())]
    State {
        /// The state file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Another running bridge holds the state file.
    #[error(
        "state file {} is held by another running shm-bridge (one bridge per state file; \
         stop it, or give this one another with --state)",
        path.display()
    )]
    StateInUse {
        /// The state file.
        path: PathBuf,
    },
    /// A Zenoh call failed.
    #[error("zenoh: {what}: {reason}")]
    Zenoh {
        /// What the bridge was doing.
        what: &'static str,
        /// Zenoh's error.
        reason: String,
    },
    /// An option is invalid.
    #[error("{what}: {reason}")]
    Config {
        /// The option and its value.
        what: String,
        /// What was expected.
        reason: String,
    },
}

impl BridgeError {
    pub(crate) fn zenoh(what: &'static str) -> impl FnOnce(zenoh::Error) -> BridgeError {
        move |e| BridgeError::Zenoh { what, reason: e.to_string() }
    }
}
