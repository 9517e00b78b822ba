//! What a bridge is told: the ring, the Zenoh session, the state file.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shm_core::{CreateError, OpenError, Region};
use shm_ring::{Kind, RingConfig};

use crate::error::BridgeError;
use crate::state::Role;

/// Where a local ring lives: a file, or (`shm:NAME`) a POSIX shared memory object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RingLocation {
    /// A ring file.
    File(PathBuf),
    /// A POSIX shm object (`shm_open`).
    Shm(String),
}

impl FromStr for RingLocation {
    type Err = BridgeError;

    fn from_str(s: &str) -> Result<RingLocation, BridgeError> {
        match s.strip_prefix("shm:") {
            Some("") => Err(BridgeError::Config {
                what: format!("ring {s:?}"),
                reason: "expected a shm object name after \"shm:\"".into(),
            }),
            Some(name) => Ok(RingLocation::Shm(name.to_owned())),
            None if s.is_empty() => Err(BridgeError::Config {
                what: "ring \"\"".into(),
                reason: "expected a file path or shm:NAME".into(),
            }),
            None => Ok(RingLocation::File(PathBuf::from(s))),
        }
    }
}

impl fmt::Display for RingLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RingLocation::File(p) => write!(f, "{}", p.display()),
            RingLocation::Shm(n) => write!(f, "shm:{n}"),
        }
    }
}

impl RingLocation {
    /// The state file a bridge of `role` uses by default: beside the ring file
    /// (`RING.out.state`), or in `/dev/shm` for a shm object (`NAME.out.state`).
    pub fn default_state(&self, role: Role) -> PathBuf {
        let suffix = format!(".{}.state", role.name());
        match self {
            RingLocation::File(p) => {
                let mut s = p.clone().into_os_string();
                s.push(suffix);
                PathBuf::from(s)
            }
            RingLocation::Shm(n) => {
                Path::new("/dev/shm").join(format!("{}{suffix}", n.trim_start_matches('/')))
            }
        }
    }

    /// The error naming this ring.
    pub(crate) fn err(&self, reason: impl fmt::Display) -> BridgeError {
        BridgeError::Ring { ring: self.to_string(), reason: reason.to_string() }
    }

    /// Map the ring: create and initialise it with `create` when nothing is there yet (and
    /// `create` is given), otherwise open it. Returns the region and whether it was created.
    pub fn map(&self, create: Option<&RingConfig>) -> Result<(Arc<Region>, bool), BridgeError> {
        if let Some(config) = create {
            let len = config.region_len();
            let made = match self {
                RingLocation::File(p) => Region::create_file(p, len),
                RingLocation::Shm(n) => Region::create_shm(n, len),
            };
            match made {
                Ok(region) => {
                    if let Err(e) = shm_ring::init(&region, config) {
                        // Leave nothing half-made behind.
                        let _ = match self {
                            RingLocation::File(p) => std::fs::remove_file(p).map_err(drop),
                            RingLocation::Shm(n) => Region::unlink_shm(n).map_err(drop),
                        };
                        return Err(self.err(e));
                    }
                    return Ok((Arc::new(region), true));
                }
                Err(CreateError::AlreadyExists { .. }) => {}
                Err(e) => return Err(self.err(e)),
            }
        }
        // The creator may be between making the object and sizing it: an empty one is given a
        // moment (the ring's attach then waits for its initialisation).
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let opened = match self {
                RingLocation::File(p) => Region::open_file(p),
                RingLocation::Shm(n) => Region::open_shm(n),
            };
            match opened {
                Ok(region) => return Ok((Arc::new(region), false)),
                Err(OpenError::TooSmall { have: 0, .. }) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(OpenError::NotFound { .. }) if create.is_none() => {
                    return Err(self.err("does not exist (create it first, or pass --create)"))
                }
                Err(e) => return Err(self.err(e)),
            }
        }
    }
}

/// How the bridge joins Zenoh.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Peer to peer: finds other peers by multicast scouting (and `connect`), needs no router.
    #[default]
    Peer,
    /// Through a Zenoh router (`connect` names it).
    Client,
}

/// The Zenoh session's configuration. The defaults (peer mode, multicast scouting, listening on
/// a port of the system's choice) let two bridges on one machine, or on one LAN, find each
/// other with no router.
#[derive(Clone, Debug)]
pub struct ZenohOptions {
    /// Peer or client.
    pub mode: Mode,
    /// Endpoints to connect to (`tcp/10.0.0.1:7447`); retried until they answer.
    pub connect: Vec<String>,
    /// Endpoints to listen on (`tcp/0.0.0.0:7447`); Zenoh's default when empty.
    pub listen: Vec<String>,
    /// Find peers by UDP multicast scouting (Zenoh's default). Off, only `connect` and
    /// `listen` join bridges.
    pub multicast: bool,
    /// How long a silent link lives before Zenoh closes it (Zenoh's default: 10 s). Shorter
    /// detects a cut link sooner; a link cut for less than this loses nothing.
    pub lease: Option<Duration>,
    /// A Zenoh configuration file (JSON5) to start from; the options above go over it.
    pub config_file: Option<PathBuf>,
}

impl Default for ZenohOptions {
    fn default() -> ZenohOptions {
        ZenohOptions {
            mode: Mode::Peer,
            connect: Vec::new(),
            listen: Vec::new(),
            multicast: true,
            lease: None,
            config_file: None,
        }
    }
}

impl ZenohOptions {
    /// The Zenoh configuration these options make.
    pub fn to_config(&self) -> Result<zenoh::Config, BridgeError> {
        let mut c = match &self.config_file {
            Some(p) => zenoh::Config::from_file(p).map_err(|e| BridgeError::Config {
                what: format!("--zenoh-config {}", p.display()),
                reason: e.to_string(),
            })?,
            None => zenoh::Config::default(),
        };
        let mut set = |key: &str, value: String| {
            c.insert_json5(key, &value).map_err(|e| BridgeError::Config {
                what: format!("zenoh {key} = {value}"),
                reason: e.to_string(),
            })
        };
        set(
            "mode",
            json(match self.mode {
                Mode::Peer => "peer",
                Mode::Client => "client",
            }),
        )?;
        if !self.connect.is_empty() {
            set("connect/endpoints", serde_json::to_string(&self.connect).expect("strings serialise"))?;
        }
        if !self.listen.is_empty() {
            set("listen/endpoints", serde_json::to_string(&self.listen).expect("strings serialise"))?;
        }
        if !self.multicast {
            set("scouting/multicast/enabled", "false".into())?;
        }
        if self.lease.is_some_and(|l| l < Duration::from_millis(100)) {
            return Err(BridgeError::Config {
                what: format!("lease {:?}", self.lease.unwrap_or_default()),
                reason: "expected at least 100ms".into(),
            });
        }
        if let Some(lease) = self.lease {
            set("transport/link/tx/lease", lease.as_millis().max(1).to_string())?;
        }
        Ok(c)
    }
}

fn json(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

/// Check a key expression: `publish` (for `out`) wants one key, with no wildcard.
pub fn check_key(key: &str, publish: bool) -> Result<zenoh::key_expr::KeyExpr<'static>, BridgeError> {
    let bad = |reason: String| BridgeError::Config { what: format!("key {key:?}"), reason };
    let k = zenoh::key_expr::KeyExpr::try_from(key.to_owned())
        .map_err(|e| bad(format!("not a Zenoh key expression ({e}); expected e.g. \"demo/ring\"")))?;
    if publish && (key.contains('*') || key.contains('$')) {
        return Err(bad("an outbound bridge publishes on one key, without wildcards".into()));
    }
    Ok(k)
}

/// The ring a bridge creates when it finds none (`--create`).
#[derive(Clone, Copy, Debug)]
pub struct CreateOptions {
    /// The ring's kind.
    pub kind: Kind,
    /// Data capacity in bytes (a power of two).
    pub capacity: u64,
    /// The largest message, when not the kind's default.
    pub max_message: Option<u64>,
    /// Producer (MPSC) or subscriber (broadcast) slots.
    pub slots: u32,
}

impl CreateOptions {
    /// The ring configuration.
    pub fn config(&self) -> RingConfig {
        let c = match self.kind {
            Kind::Spsc => RingConfig::spsc(self.capacity),
            Kind::Mpsc => RingConfig::mpsc(self.capacity, self.slots),
            Kind::Broadcast => RingConfig::broadcast(self.capacity, self.slots),
        };
        match self.max_message {
            Some(m) => c.max_message(m),
            None => c,
        }
    }
}

/// What both bridges are told.
#[derive(Clone, Debug)]
pub struct BridgeOptions {
    /// The local ring.
    pub ring: RingLocation,
    /// Create the ring when it does not exist.
    pub create: Option<CreateOptions>,
    /// The Zenoh key (`out`) or key expression (`in`).
    pub key: String,
    /// The Zenoh session.
    pub zenoh: ZenohOptions,
    /// The state file (default: [`RingLocation::default_state`]).
    pub state: Option<PathBuf>,
    /// How often to report the counters (`None`: never while running).
    pub status_every: Option<Duration>,
}

impl BridgeOptions {
    /// Options with the defaults for everything but the ring and the key.
    pub fn new(ring: RingLocation, key: impl Into<String>) -> BridgeOptions {
        BridgeOptions {
            ring,
            create: None,
            key: key.into(),
            zenoh: ZenohOptions::default(),
            state: None,
            status_every: Some(Duration::from_secs(1)),
        }
    }

    /// Map the ring, creating it with `create` when it does not exist.
    pub(crate) fn map_ring(&self) -> Result<(Arc<Region>, bool), BridgeError> {
        self.ring.map(self.create.as_ref().map(|c| c.config()).as_ref())
    }

    /// The state file of a bridge of `role`.
    pub fn state_path(&self, role: Role) -> PathBuf {
        self.state.clone().unwrap_or_else(|| self.ring.default_state(role))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_locations_parse_and_name_their_state_files() {
        assert_eq!("/tmp/r".parse::<RingLocation>().unwrap(), RingLocation::File("/tmp/r".into()));
        assert_eq!("shm:/demo".parse::<RingLocation>().unwrap(), RingLocation::Shm("/demo".into()));
        assert!("shm:"
            .parse::<RingLocation>()
            .unwrap_err()
            .to_string()
            .contains("expected a shm object name"));
        assert!("".parse::<RingLocation>().is_err());
        assert_eq!(
            RingLocation::File("/tmp/r".into()).default_state(Role::Out),
            PathBuf::from("/tmp/r.out.state")
        );
        assert_eq!(
            RingLocation::Shm("/demo".into()).default_state(Role::In),
            PathBuf::from("/dev/shm/demo.in.state")
        );
    }

    #[test]
    fn keys_are_checked_and_out_takes_no_wildcard() {
        assert!(check_key("demo/ring", true).is_ok());
        assert!(check_key("demo/**", false).is_ok());
        let e = check_key("demo/**", true).unwrap_err().to_string();
        assert!(e.contains("without wildcards"), "{e}");
        let e = check_key("demo//ring", false).unwrap_err().to_string();
        assert!(e.contains("not a Zenoh key expression"), "{e}");
    }

    #[test]
    fn zenoh_options_make_a_config() {
        let o = ZenohOptions {
            mode: Mode::Client,
            connect: vec!["tcp/127.0.0.1:7447".into()],
            listen: vec!["tcp/127.0.0.1:0".into()],
            multicast: false,
            lease: Some(Duration::from_millis(1500)),
            config_file: None,
        };
        let c = o.to_config().unwrap();
        let s = format!("{c}");
        assert!(s.contains("client"), "{s}");
        let bad = ZenohOptions { connect: vec!["nonsense".into()], ..ZenohOptions::default() };
        assert!(bad.to_config().is_err());
    }
}
