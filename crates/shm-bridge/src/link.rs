//! The Zenoh session of a bridge, and how it watches its peers come and go.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use zenoh::Wait;

use crate::config::ZenohOptions;
use crate::error::BridgeError;
use crate::state::{Counter, StatePage};

/// How often the peers are counted.
const POLL: Duration = Duration::from_millis(100);

/// A Zenoh session, and a thread that watches its peers come and go.
pub(crate) struct Link {
    pub session: zenoh::Session,
    watch: Option<(Arc<AtomicBool>, std::thread::JoinHandle<()>)>,
}

impl Link {
    /// Open the session, and count the peers (routers too) into `page` every [`POLL`], with
    /// (when `reconnects`) a reconnection each time some come back after all were gone. The
    /// count runs on a thread of its own: the bridge's own thread may be blocked on a full ring
    /// for as long as that lasts.
    pub fn open(options: &ZenohOptions, page: Arc<StatePage>, reconnects: bool) -> Result<Link, BridgeError> {
        let session =
            zenoh::open(options.to_config()?).wait().map_err(BridgeError::zenoh("open a session"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (session.clone(), stop.clone());
        let watch = std::thread::Builder::new()
            .name("shm-bridge-peers".into())
            .spawn(move || {
                let (mut had, mut ever) = (false, false);
                while !st.load(Ordering::SeqCst) {
                    let info = s.info();
                    let peers = info.peers_zid().wait().count() + info.routers_zid().wait().count();
                    page.set_peers(peers as u64);
                    let has = peers > 0;
                    if has && !had {
                        if ever && reconnects {
                            page.add(Counter::Reconnects, 1);
                        }
                        ever = true;
                    }
                    had = has;
                    std::thread::sleep(POLL);
                }
            })
            .map_err(|e| BridgeError::Zenoh { what: "start the peer watch", reason: e.to_string() })?;
        Ok(Link { session, watch: Some((stop, watch)) })
    }

    /// Close the session: Zenoh sends what its queues hold, then closes the links.
    pub fn close(mut self) -> Result<(), BridgeError> {
        if let Some((stop, t)) = self.watch.take() {
            stop.store(true, Ordering::SeqCst);
            let _ = t.join();
        }
        self.session.close().wait().map_err(BridgeError::zenoh("close the session"))
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        if let Some((stop, _)) = &self.watch {
            stop.store(true, Ordering::SeqCst);
        }
    }
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").field("zid", &self.session.zid()).finish()
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
