//! The producer / consumer demo: numbered, timestamped, checksummed messages over a ring named
//! by a file path or a POSIX shm name, verified and measured on arrival.

use std::io::{self, IsTerminal};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shm_core::{CreateError, OpenError, Region};
use shm_ring::{Consumer, Policy, Producer, RecvTimeoutError, RingConfig, RingKind, SendError};

/// Where the ring lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A file path.
    Path(PathBuf),
    /// A POSIX shared-memory name.
    Name(String),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Path(p) => write!(f, "file {}", p.display()),
            Target::Name(n) => write!(f, "shm {n}"),
        }
    }
}

/// Command-line arguments naming a ring, shared by `shm-producer` and `shm-consumer`.
#[derive(clap::Args, Debug, Clone)]
pub struct RingArgs {
    /// The ring is this file.
    #[arg(long, conflicts_with = "name", required_unless_present = "name")]
    pub path: Option<PathBuf>,
    /// The ring is this POSIX shm object (e.g. "demo" or "/demo").
    #[arg(long)]
    pub name: Option<String>,
    /// Create the ring; fail if it exists (default: create it only if it does not exist).
    #[arg(long)]
    pub create: bool,
    /// Ring data capacity in bytes (power of two), when creating.
    #[arg(long, default_value_t = 1 << 20)]
    pub capacity: u64,
    /// The ring kind: `spsc`, `mpsc` (several producers) or `broadcast` (several consumers,
    /// each receiving every message). Every end of one ring names the same kind.
    #[arg(long, value_enum, default_value_t = KindArg::Spsc)]
    pub kind: KindArg,
    /// Producer slots of an MPSC ring, or subscriber slots of a broadcast ring, when creating.
    #[arg(long, default_value_t = 8)]
    pub slots: u32,
    /// What a broadcast producer does when a subscriber is behind, when creating: wait for it
    /// (`block`) or write over the oldest messages (`overwrite`).
    #[arg(long, value_enum, default_value_t = PolicyArg::Block)]
    pub policy: PolicyArg,
}

/// `--kind`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum KindArg {
    /// One producer, one consumer.
    Spsc,
    /// Many producers, one consumer.
    Mpsc,
    /// One producer, many subscribers.
    Broadcast,
}

/// `--policy`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyArg {
    /// Wait for the slowest subscriber.
    Block,
    /// Never wait; lapped subscribers are told what they lost.
    Overwrite,
}

impl RingArgs {
    /// Where the ring lives (clap guarantees one of `--path` / `--name`).
    pub fn target(&self) -> Target {
        match (&self.path, &self.name) {
            (Some(p), _) => Target::Path(p.clone()),
            (None, Some(n)) => Target::Name(n.clone()),
            (None, None) => Target::Name(String::new()), // refused by clap before we get here
        }
    }

    /// The configuration of a ring these arguments create.
    pub fn config(&self) -> RingConfig {
        match self.kind {
            KindArg::Spsc => RingConfig::spsc(self.capacity),
            KindArg::Mpsc => RingConfig::mpsc(self.capacity, self.slots),
            KindArg::Broadcast => {
                RingConfig::broadcast(self.capacity, self.slots).policy(match self.policy {
                    PolicyArg::Block => Policy::Block,
                    PolicyArg::Overwrite => Policy::Overwrite,
                })
            }
        }
    }

    /// Map (creating if needed) the ring these arguments name.
    pub fn open(&self) -> io::Result<(Arc<Region>, bool)> {
        open_or_create(&self.target(), &self.config(), self.create)
    }
}

/// Map the ring at `target`: create it (and initialise the ring) when `create` is set or when
/// nothing exists yet, otherwise open it. Returns the region and whether this call created it.
pub fn open_or_create(target: &Target, config: &RingConfig, create: bool) -> io::Result<(Arc<Region>, bool)> {
    let len = config.region_len();
    let created = match target {
        Target::Path(p) => Region::create_file(p, len),
        Target::Name(n) => Region::create_shm(n, len),
    };
    match created {
        Ok(region) => {
            shm_ring::init(&region, config).map_err(|e| io::Error::other(e.to_string()))?;
            Ok((Arc::new(region), true))
        }
        Err(CreateError::AlreadyExists { .. }) if !create => {
            // The creator may be between creating the object and sizing it: an empty object
            // is given a moment (the ring's own attach then waits for its initialisation).
            let deadline = Instant::now() + Duration::from_secs(2);
            loop {
                let opened = match target {
                    Target::Path(p) => Region::open_file(p),
                    Target::Name(n) => Region::open_shm(n),
                };
                match opened {
                    Ok(region) => return Ok((Arc::new(region), false)),
                    Err(OpenError::TooSmall { have: 0, .. }) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Bytes before the payload: seq u64, send time u64 (ns, CLOCK_MONOTONIC), payload crc32 u32,
/// reserved u32.
pub const HEADER: usize = 24;

/// Nanoseconds on CLOCK_MONOTONIC, which every process on the machine shares.
pub fn now_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// Write message `seq` into `buf` (at least [`HEADER`] bytes): header, then a payload derived
/// from `seq`, and its checksum.
pub fn encode(buf: &mut [u8], seq: u64) {
    let (head, payload) = buf.split_at_mut(HEADER);
    for (i, b) in payload.iter_mut().enumerate() {
        *b = (seq as u8).wrapping_add(i as u8);
    }
    head[0..8].copy_from_slice(&seq.to_le_bytes());
    head[16..20].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
    head[20..24].fill(0);
    head[8..16].copy_from_slice(&now_ns().to_le_bytes());
}

/// What a received message says, once its checksum matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// Its sequence number.
    pub seq: u64,
    /// When it was sent (ns, CLOCK_MONOTONIC).
    pub sent_ns: u64,
}

/// Check a message; `None` when it is too short or its checksum does not match.
pub fn decode(msg: &[u8]) -> Option<Decoded> {
    if msg.len() < HEADER {
        return None;
    }
    let word = |r: std::ops::Range<usize>| u64::from_le_bytes(msg[r].try_into().expect("8 bytes"));
    let crc = u32::from_le_bytes(msg[16..20].try_into().expect("4 bytes"));
    (crc32fast::hash(&msg[HEADER..]) == crc).then(|| Decoded { seq: word(0..8), sent_ns: word(8..16) })
}

/// Options of the producer.
#[derive(Clone, Debug)]
pub struct ProducerOptions {
    /// Messages to send (0: until interrupted).
    pub count: u64,
    /// Message size in bytes (at least [`HEADER`]).
    pub size: usize,
    /// Messages per second (0: as fast as the ring takes them).
    pub rate: u64,
}

/// Send `count` messages, pacing them at `rate`, calling `progress(sent)` now and then.
pub fn produce<K: RingKind>(
    p: &mut Producer<K>,
    opts: &ProducerOptions,
    mut progress: impl FnMut(u64),
) -> io::Result<u64> {
    if opts.size < HEADER || opts.size > p.max_message() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "message size {} is out of range: expected {HEADER} to {} bytes",
                opts.size,
                p.max_message()
            ),
        ));
    }
    let start = Instant::now();
    let mut seq = 0u64;
    // Messages are built here and copied into the ring: the consumer is another program, not
    // trusted with a borrow of our memory.
    let mut buf = vec![0u8; opts.size];
    while opts.count == 0 || seq < opts.count {
        if opts.rate > 0 {
            let due = start + Duration::from_secs_f64(seq as f64 / opts.rate as f64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        let mut grant = p.reserve(opts.size).map_err(send_error)?;
        encode(&mut buf, seq);
        grant.copy_from_slice(&buf);
        grant.commit();
        seq += 1;
        if seq % 65536 == 0 {
            progress(seq);
        }
    }
    progress(seq);
    Ok(seq)
}

fn send_error(e: SendError<()>) -> io::Error {
    match e {
        SendError::Disconnected(()) | SendError::PeerDead { .. } => {
            io::Error::new(io::ErrorKind::BrokenPipe, e.to_string())
        }
        e => io::Error::other(e.to_string()),
    }
}

/// What the consumer saw.
#[derive(Debug)]
pub struct Stats {
    /// Messages received.
    pub received: u64,
    /// Payload bytes received.
    pub bytes: u64,
    /// Messages missing from the sequence (must stay 0).
    pub lost: u64,
    /// Messages with a bad checksum or out of order (must stay 0).
    pub corrupt: u64,
    /// Messages a broadcast producer with the `Overwrite` policy wrote over before they were
    /// read, as the ring reported them (`Lagged`).
    pub lagged: u64,
    /// Whether the sequence starts at the first message received (a broadcast subscriber
    /// joins mid-stream) rather than at 0.
    pub from_first: bool,
    /// Latency from send to receive, ns.
    pub latency: hdrhistogram::Histogram<u64>,
    /// When the first message arrived.
    pub started: Option<Instant>,
    next_seq: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats::new()
    }
}

impl Stats {
    /// Empty statistics.
    pub fn new() -> Stats {
        Stats {
            received: 0,
            bytes: 0,
            lost: 0,
            corrupt: 0,
            lagged: 0,
            from_first: false,
            latency: hdrhistogram::Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds"),
            started: None,
            next_seq: 0,
        }
    }

    /// The sequence number expected next: one past the last message received.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Account for one message.
    pub fn record(&mut self, msg: &[u8]) {
        let now = now_ns();
        self.started.get_or_insert_with(Instant::now);
        self.received += 1;
        self.bytes += msg.len() as u64;
        let first = self.received == 1;
        match decode(msg) {
            Some(d) if first && self.from_first => {
                self.next_seq = d.seq + 1;
                let _ = self.latency.record(now.saturating_sub(d.sent_ns).max(1));
            }
            Some(d) if d.seq >= self.next_seq => {
                self.lost += d.seq - self.next_seq;
                self.next_seq = d.seq + 1;
                let _ = self.latency.record(now.saturating_sub(d.sent_ns).max(1));
            }
            _ => self.corrupt += 1,
        }
    }

    /// Account for `skipped` messages the ring reported lost (`Lagged`): they are not counted
    /// as lost again when the next message arrives.
    pub fn record_lagged(&mut self, skipped: u64) {
        self.lagged += skipped;
        if self.received > 0 || !self.from_first {
            self.next_seq += skipped;
        }
    }

    /// One line: rate, bytes, lost, corrupt, latency percentiles.
    pub fn line(&self) -> String {
        let secs = self.started.map(|t| t.elapsed().as_secs_f64()).unwrap_or(0.0).max(1e-9);
        let q = |p: f64| self.latency.value_at_quantile(p) as f64 / 1e3;
        format!(
            "{} msgs ({:.2} M/s, {:.1} MB/s), lost {}, corrupt {}{}, latency p50 {:.1} µs p99 {:.1} µs p99.9 {:.1} µs max {:.1} µs",
            self.received,
            self.received as f64 / secs / 1e6,
            self.bytes as f64 / secs / 1e6,
            self.lost,
            self.corrupt,
            if self.lagged > 0 { format!(", overwritten {}", self.lagged) } else { String::new() },
            q(0.5),
            q(0.99),
            q(0.999),
            self.latency.max() as f64 / 1e3
        )
    }
}

/// Options of the consumer.
#[derive(Clone, Debug)]
pub struct ConsumerOptions {
    /// Stop after this many messages (0: until the producer closes).
    pub count: u64,
    /// Spin instead of sleeping when the ring is empty.
    pub spin: bool,
    /// Print a live line this often.
    pub every: Duration,
}

/// Receive and verify until the producer closes (or `count` messages), printing live lines.
pub fn consume<K: RingKind>(c: &mut Consumer<K>, opts: &ConsumerOptions) -> io::Result<Stats> {
    let mut stats = Stats::new();
    stats.from_first = K::KIND == shm_ring::Kind::Broadcast;
    // Messages are copied out of the ring before they are checked: the producer is another
    // program, which could still be writing them.
    let mut buf = Vec::new();
    let tty = io::stdout().is_terminal();
    let bar = (tty && opts.count > 0).then(|| {
        let b = indicatif::ProgressBar::new(opts.count);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}").expect("valid template"),
        );
        b
    });
    let mut last = Instant::now();
    loop {
        if opts.count > 0 && stats.received >= opts.count {
            break;
        }
        let r = if opts.spin {
            c.try_recv(&mut buf).map_err(RecvTimeoutError::from)
        } else {
            c.recv_timeout(&mut buf, opts.every)
        }
        .map(|_| stats.record(&buf));
        match r {
            Ok(()) => {}
            Err(RecvTimeoutError::Timeout) => std::hint::spin_loop(),
            Err(RecvTimeoutError::Lagged { skipped }) => stats.record_lagged(skipped),
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::PeerDead { pid }) => {
                eprintln!("producer process {pid} died; stopping");
                break;
            }
            Err(e) => return Err(io::Error::other(e.to_string())),
        }
        if last.elapsed() >= opts.every {
            last = Instant::now();
            match &bar {
                Some(b) => {
                    b.set_position(stats.received);
                    b.set_message(stats.line());
                }
                None => println!("{}", stats.line()),
            }
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(stats)
}
