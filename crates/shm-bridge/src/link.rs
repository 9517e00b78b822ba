//! The Zenoh session of a bridge, and how it watches its peers come and go.

use std::time::{Duration, Instant};

use zenoh::Wait;

use crate::config::ZenohOptions;
use crate::error::BridgeError;
use crate::state::{Counter, StatePage};

/// How often the peers are counted.
const POLL: Duration = Duration::from_millis(100);

/// A Zenoh session and what the bridge saw of its peers.
pub(crate) struct Link {
    pub session: zenoh::Session,
    had_peer: bool,
    ever: bool,
    polled: Option<Instant>,
}

impl Link {
    pub fn open(options: &ZenohOptions) -> Result<Link, BridgeError> {
        let session = zenoh::open(options.to_config()?).wait().map_err(BridgeError::zenoh("open a session"))?;
        Ok(Link { session, had_peer: false, ever: false, polled: None })
    }

    /// Count the peers (routers too) every [`POLL`], and a reconnection each time some come
    /// back after all were gone. Returns whether any peer is connected.
    pub fn poll(&mut self, page: &StatePage) -> bool {
        if self.polled.is_some_and(|t| t.elapsed() < POLL) {
            return self.had_peer;
        }
        self.polled = Some(Instant::now());
        let info = self.session.info();
        let peers = info.peers_zid().wait().count() + info.routers_zid().wait().count();
        page.set_peers(peers as u64);
        let has = peers > 0;
        if has && !self.had_peer {
            if self.ever {
                page.add(Counter::Reconnects, 1);
            }
            self.ever = true;
        }
        self.had_peer = has;
        has
    }

    /// Close the session: Zenoh sends what its queues hold, then closes the links.
    pub fn close(self) -> Result<(), BridgeError> {
        self.session.close().wait().map_err(BridgeError::zenoh("close the session"))
    }
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").field("zid", &self.session.zid()).field("had_peer", &self.had_peer).finish()
    }
}

/// Calls its function at most once per period.
#[derive(Debug)]
pub(crate) struct Every {
    period: Option<Duration>,
    last: Instant,
}

impl Every {
    pub fn new(period: Option<Duration>) -> Every {
        Every { period, last: Instant::now() }
    }

    pub fn due(&mut self) -> bool {
        match self.period {
            Some(p) if self.last.elapsed() >= p => {
                self.last = Instant::now();
                true
            }
            _ => false,
        }
    }
}
