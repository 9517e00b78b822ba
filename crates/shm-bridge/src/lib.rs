//! Rings beyond one host: forward a shm-ipc ring to and from a [Zenoh](https://zenoh.io) key
//! expression. The network is Zenoh's (TCP, reliable and ordered, peer to peer or through a
//! router); the bridge adds a sequence number per message, a state file, and counters.
//!
//! ```text
//! host A: producer -> ring -> shm-bridge out --ring R --key K
//!                                     | Zenoh
//! host B:             shm-bridge in --key K --ring R -> ring -> consumer
//! ```
//!
//! The programs keep the local ring API: the producer and the consumer are ordinary ring ends
//! of any kind. The library is what the `shm-bridge` binary runs:
//!
//! ```no_run
//! use std::sync::atomic::AtomicBool;
//! use shm_bridge::{run_out, BridgeOptions, OutOptions, PrintReport};
//!
//! let options = BridgeOptions::new("/tmp/ring".parse()?, "demo/ring");
//! let stop = AtomicBool::new(false); // set it (from a signal handler) to stop
//! let page = run_out(&options, &OutOptions::default(), &stop, &mut PrintReport::new("out"))?;
//! println!("{}", shm_bridge::status::line(&page));
//! # Ok::<(), shm_bridge::BridgeError>(())
//! ```
//!
//! # Delivery
//! Between the bridges nothing is reordered or delivered twice, and every message lost is
//! counted by the inbound bridge as a gap. The inbound bridge acknowledges what it wrote; the
//! outbound one keeps a window of unacknowledged messages and sends them again after a lost
//! session, so a cut link, a stalled receiver or a restarted inbound bridge lose nothing; an
//! outbound bridge killed with messages unacknowledged loses those (reported). The README's
//! "Beyond one machine" goes through each case and the limits (an inbound bridge killed in the
//! instant between writing a message and recording it writes it again).

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod bench;
pub mod config;
mod error;
mod inbound;
mod link;
mod out;
pub mod state;
pub mod status;
pub mod wire;

use std::io::Write;

pub use config::{BridgeOptions, CreateOptions, Mode, RingLocation, ZenohOptions};
pub use error::BridgeError;
pub use inbound::{run_in, InOptions, OnFull};
pub use out::{run_out, OutOptions, Report};
pub use state::{Counter, Role, StatePage};

/// A [`Report`] that prints events and status lines on stderr, prefixed with the bridge's name;
/// a status line is printed when it differs from the last one.
#[derive(Debug)]
pub struct PrintReport {
    name: String,
    last: String,
}

impl PrintReport {
    /// Lines start with `shm-bridge NAME:`.
    pub fn new(name: impl Into<String>) -> PrintReport {
        PrintReport { name: name.into(), last: String::new() }
    }
}

impl Report for PrintReport {
    fn event(&mut self, line: &str) {
        // A closed stderr is no reason to stop forwarding.
        let _ = writeln!(std::io::stderr(), "shm-bridge {}: {line}", self.name);
    }

    fn status(&mut self, page: &StatePage) {
        let line = status::line(page);
        if line != self.last {
            let _ = writeln!(std::io::stderr(), "shm-bridge {}: {line}", self.name);
            self.last = line;
        }
    }
}
