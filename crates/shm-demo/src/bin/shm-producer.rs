//! `shm-producer`: send numbered, timestamped, checksummed messages into a ring named by a file
//! path or a POSIX shm name. Start `shm-consumer` on the same name in another terminal; whichever
//! starts first creates the ring.

use std::path::PathBuf;

use clap::Parser;
use shm_demo::stream::{self, ProducerOptions, Target};
use shm_ring::spsc::Producer;
use shm_ring::RingConfig;

#[derive(Parser, Debug)]
#[command(version, about = "Send verified messages into a shared-memory ring")]
struct Args {
    /// The ring is this file.
    #[arg(long, conflicts_with = "name", required_unless_present = "name")]
    path: Option<PathBuf>,
    /// The ring is this POSIX shm object (e.g. "demo" or "/demo").
    #[arg(long)]
    name: Option<String>,
    /// Create the ring; fail if it exists (default: create it only if it does not exist).
    #[arg(long)]
    create: bool,
    /// Ring data capacity in bytes (power of two), when creating.
    #[arg(long, default_value_t = 1 << 20)]
    capacity: u64,
    /// Messages to send (0: until interrupted).
    #[arg(long, default_value_t = 1_000_000)]
    count: u64,
    /// Message size in bytes (at least 24).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Messages per second (0: as fast as the consumer takes them).
    #[arg(long, default_value_t = 0)]
    rate: u64,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let target = match (args.path, args.name) {
        (Some(p), _) => Target::Path(p),
        (None, Some(n)) => Target::Name(n),
        (None, None) => unreachable!("clap requires --path or --name"),
    };
    let run = || -> std::io::Result<u64> {
        let config = RingConfig::spsc(args.capacity);
        let (region, created) = stream::open_or_create(&target, &config, args.create)?;
        let mut p = Producer::open(region).map_err(|e| std::io::Error::other(e.to_string()))?;
        eprintln!(
            "shm-producer: {} {target} (capacity {} B); sending {} messages of {} B",
            if created { "created" } else { "opened" },
            p.capacity(),
            args.count,
            args.size
        );
        let opts = ProducerOptions { count: args.count, size: args.size, rate: args.rate };
        stream::produce(&mut p, &opts, |_| {})
    };
    match run() {
        Ok(n) => {
            eprintln!("shm-producer: sent {n} messages");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("shm-producer: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
