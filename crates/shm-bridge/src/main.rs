//! `shm-bridge`: forward a shm-ipc ring over Zenoh (`out`), into a ring from Zenoh (`in`), and
//! show a bridge's counters (`status`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use shm_bridge::{
    run_in, run_out, status, BridgeOptions, CreateOptions, InOptions, Mode, OnFull, OutOptions, PrintReport,
    RingLocation, Role, StatePage, ZenohOptions,
};
use shm_ring::Kind;

#[derive(Parser, Debug)]
#[command(version, about = "Forward shm-ipc rings over Zenoh, to and from other hosts")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Read a local ring and publish each message on a Zenoh key.
    Out {
        #[command(flatten)]
        common: Common,
        /// Broadcast ring: start this many messages back instead of at the producer's end.
        #[arg(long, default_value_t = 0)]
        history: u64,
        /// Messages published and not yet acknowledged by the inbound bridge, at most (0: no
        /// limit and no acknowledgements, for plain Zenoh subscribers).
        #[arg(long, default_value_t = 1024)]
        window: usize,
        /// At a stop, how long to wait for the acknowledgement of what was published.
        #[arg(long, value_parser = parse_duration, default_value = "5s")]
        drain_timeout: Duration,
    },
    /// Subscribe to a Zenoh key expression and write each message into a local ring.
    In {
        #[command(flatten)]
        common: Common,
        /// When the ring is full: wait for room (holding the stream back), or drop the
        /// message and count it.
        #[arg(long, value_enum, default_value_t = OnFullArg::Block)]
        on_full: OnFullArg,
        /// Samples held between Zenoh and the ring (at least the outbound bridge's --window,
        /// so that Zenoh never waits for this bridge).
        #[arg(long, default_value_t = 1024)]
        queue: usize,
        /// At a stop, how long to keep writing what was received into a full ring.
        #[arg(long, value_parser = parse_duration, default_value = "5s")]
        drain_timeout: Duration,
    },
    /// Measure 64 B messages through two bridges on loopback next to plain TCP.
    Bench {
        /// A run of a few seconds (checks that it works; the figures are rough).
        #[arg(long)]
        quick: bool,
        /// Print JSON lines (shm-bench's format) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show the counters of a bridge (running or not) from its state file.
    Status {
        /// The ring the bridge forwards (its state file is found beside it).
        #[arg(long, required_unless_present = "state")]
        ring: Option<String>,
        /// Which bridge of that ring (default: each one that has a state file).
        #[arg(long, value_enum)]
        role: Option<RoleArg>,
        /// The state file itself.
        #[arg(long, conflicts_with = "ring")]
        state: Option<PathBuf>,
        /// Print JSON, one object per bridge.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args, Debug)]
struct Common {
    /// The local ring: a file path, or shm:NAME for a POSIX shm object.
    #[arg(long)]
    ring: String,
    /// The Zenoh key (`out`) or key expression (`in`, wildcards allowed), e.g. demo/ring.
    #[arg(long)]
    key: String,
    /// Create the ring when it does not exist, of this kind.
    #[arg(long, value_enum)]
    create: Option<KindArg>,
    /// Data capacity in bytes (a power of two) of a ring this creates.
    #[arg(long, default_value_t = 1 << 20)]
    capacity: u64,
    /// The largest message of a ring this creates (default: the kind's).
    #[arg(long)]
    max_message: Option<u64>,
    /// Producer (MPSC) or subscriber (broadcast) slots of a ring this creates.
    #[arg(long, default_value_t = 8)]
    slots: u32,
    /// Zenoh mode: peer (no router needed) or client (of a router named by --connect).
    #[arg(long, value_enum, default_value_t = ModeArg::Peer)]
    mode: ModeArg,
    /// A Zenoh endpoint to connect to, e.g. tcp/10.0.0.1:7447 (repeatable).
    #[arg(long)]
    connect: Vec<String>,
    /// A Zenoh endpoint to listen on, e.g. tcp/0.0.0.0:7447 (repeatable).
    #[arg(long)]
    listen: Vec<String>,
    /// No multicast scouting: only --connect / --listen join bridges.
    #[arg(long)]
    no_multicast: bool,
    /// How long a silent link lives before Zenoh closes it (Zenoh's default: 10s).
    #[arg(long, value_parser = parse_duration)]
    lease: Option<Duration>,
    /// A Zenoh configuration file (JSON5) to start from; the options above go over it.
    #[arg(long)]
    zenoh_config: Option<PathBuf>,
    /// The state file (default: RING.out.state / RING.in.state beside the ring).
    #[arg(long)]
    state: Option<PathBuf>,
    /// How often to print the counters on stderr (0: never).
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    status_every: Duration,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum KindArg {
    Spsc,
    Mpsc,
    Broadcast,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum ModeArg {
    Peer,
    Client,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum OnFullArg {
    Block,
    Drop,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum RoleArg {
    Out,
    In,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("duration {s:?}: expected a number then ms, s or m"))?;
    let secs = match unit {
        "ms" => n / 1e3,
        "" | "s" => n,
        "m" => n * 60.0,
        other => return Err(format!("duration {s:?}: unknown unit {other:?}, expected ms, s or m")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("duration {s:?}: {e}"))
}

impl Common {
    fn options(&self) -> Result<BridgeOptions, shm_bridge::BridgeError> {
        let ring: RingLocation = self.ring.parse()?;
        let mut o = BridgeOptions::new(ring, self.key.clone());
        o.create = self.create.map(|k| CreateOptions {
            kind: match k {
                KindArg::Spsc => Kind::Spsc,
                KindArg::Mpsc => Kind::Mpsc,
                KindArg::Broadcast => Kind::Broadcast,
            },
            capacity: self.capacity,
            max_message: self.max_message,
            slots: self.slots,
        });
        o.zenoh = ZenohOptions {
            mode: match self.mode {
                ModeArg::Peer => Mode::Peer,
                ModeArg::Client => Mode::Client,
            },
            connect: self.connect.clone(),
            listen: self.listen.clone(),
            multicast: !self.no_multicast,
            lease: self.lease,
            config_file: self.zenoh_config.clone(),
        };
        o.state = self.state.clone();
        o.status_every = (!self.status_every.is_zero()).then_some(self.status_every);
        Ok(o)
    }
}

/// Set on SIGINT or SIGTERM; a second one ends the process at once.
fn stop_flag() -> std::io::Result<Arc<AtomicBool>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 1, stop.clone())?;
        signal_hook::flag::register(sig, stop.clone())?;
    }
    Ok(stop)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Out { common, history, window, drain_timeout } => {
            bridge(Role::Out, &common, |o, stop, report| {
                run_out(o, &OutOptions { history, window, drain_timeout }, stop, report)
            })
        }
        Command::In { common, on_full, queue, drain_timeout } => {
            bridge(Role::In, &common, |o, stop, report| {
                let on_full = if on_full == OnFullArg::Drop { OnFull::Drop } else { OnFull::Block };
                run_in(o, &InOptions { on_full, queue, drain_timeout }, stop, report)
            })
        }
        Command::Status { ring, role, state, json } => show_status(ring, role, state, json),
        Command::Bench { quick, json } => bench(quick, json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shm-bridge: {e}");
            ExitCode::FAILURE
        }
    }
}

fn bridge(
    role: Role,
    common: &Common,
    run: impl Fn(&BridgeOptions, &AtomicBool, &mut PrintReport) -> Result<Arc<StatePage>, shm_bridge::BridgeError>,
) -> Result<(), String> {
    let options = common.options().map_err(|e| e.to_string())?;
    let stop = stop_flag().map_err(|e| format!("install the signal handlers: {e}"))?;
    let mut report = PrintReport::new(role.name());
    let page = run(&options, &stop, &mut report).map_err(|e| e.to_string())?;
    eprintln!("shm-bridge {}: stopped: {}", role.name(), status::line(&page));
    Ok(())
}

fn bench(quick: bool, json: bool) -> Result<(), String> {
    let options = if quick {
        shm_bridge::bench::BenchOptions::quick()
    } else {
        shm_bridge::bench::BenchOptions::full()
    };
    let me = std::env::current_exe().map_err(|e| format!("find this program to start bridges: {e}"))?;
    let rows = shm_bridge::bench::run(&options, &me).map_err(|e| format!("bench: {e}"))?;
    if json {
        for r in &rows {
            println!("{}", serde_json::to_string(r).expect("a row serialises"));
        }
    } else {
        print!("{}", shm_bridge::bench::table(&rows));
    }
    Ok(())
}

fn show_status(
    ring: Option<String>,
    role: Option<RoleArg>,
    state: Option<PathBuf>,
    json: bool,
) -> Result<(), String> {
    let paths: Vec<PathBuf> = match (state, ring) {
        (Some(p), _) => vec![p],
        (None, Some(r)) => {
            let ring: RingLocation = r.parse().map_err(|e: shm_bridge::BridgeError| e.to_string())?;
            let roles = match role {
                Some(RoleArg::Out) => vec![Role::Out],
                Some(RoleArg::In) => vec![Role::In],
                None => vec![Role::Out, Role::In],
            };
            let all: Vec<PathBuf> = roles.into_iter().map(|r| ring.default_state(r)).collect();
            let found: Vec<PathBuf> = all.iter().filter(|p| p.exists()).cloned().collect();
            if found.is_empty() {
                let names: Vec<String> = all.iter().map(|p| p.display().to_string()).collect();
                return Err(format!("no bridge state for ring {ring}: expected {}", names.join(" or ")));
            }
            found
        }
        (None, None) => return Err("expected --ring or --state".into()),
    };
    for p in paths {
        let page = StatePage::open_read(&p).map_err(|e| e.to_string())?;
        let want = role.map(|r| if r == RoleArg::Out { Role::Out } else { Role::In });
        if want.is_some_and(|w| w != page.role()) {
            return Err(format!(
                "state file {}: written by an {} bridge, expected an {} bridge's (--role)",
                p.display(),
                page.role().name(),
                want.map_or("", |w| w.name())
            ));
        }
        if json {
            println!("{}", status::json(&page));
        } else {
            let (ring, key) = page.labels();
            let running =
                if page.is_running() { format!("running, pid {}", page.pid()) } else { "stopped".into() };
            println!("{} {ring} <-> {key} ({running}): {}", page.role().name(), status::line(&page));
        }
    }
    Ok(())
}
