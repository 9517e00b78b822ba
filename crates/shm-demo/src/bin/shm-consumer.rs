//! `shm-consumer`: receive and verify the messages of `shm-producer`, printing a live line
//! (rate, bytes, lost, latency percentiles) and a summary.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use shm_demo::stream::{self, ConsumerOptions, Target};
use shm_ring::spsc::Consumer;
use shm_ring::RingConfig;

#[derive(Parser, Debug)]
#[command(version, about = "Receive and verify messages from a shared-memory ring")]
struct Args {
    /// The ring is this file.
    #[arg(long, conflicts_with = "name", required_unless_present = "name")]
    path: Option<PathBuf>,
    /// The ring is this POSIX shm object.
    #[arg(long)]
    name: Option<String>,
    /// Create the ring; fail if it exists (default: create it only if it does not exist).
    #[arg(long)]
    create: bool,
    /// Ring data capacity in bytes (power of two), when creating.
    #[arg(long, default_value_t = 1 << 20)]
    capacity: u64,
    /// Stop after this many messages (0: when the producer closes).
    #[arg(long, default_value_t = 0)]
    count: u64,
    /// Spin while the ring is empty instead of sleeping.
    #[arg(long)]
    spin: bool,
    /// Remove the file or shm object when done.
    #[arg(long)]
    remove: bool,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let target = match (args.path, args.name) {
        (Some(p), _) => Target::Path(p),
        (None, Some(n)) => Target::Name(n),
        (None, None) => unreachable!("clap requires --path or --name"),
    };
    let run = || -> std::io::Result<stream::Stats> {
        let config = RingConfig::spsc(args.capacity);
        let (region, created) = stream::open_or_create(&target, &config, args.create)?;
        let mut c = Consumer::open(region).map_err(|e| std::io::Error::other(e.to_string()))?;
        eprintln!(
            "shm-consumer: {} {target}; waiting for messages",
            if created { "created" } else { "opened" }
        );
        let opts = ConsumerOptions { count: args.count, spin: args.spin, every: Duration::from_secs(1) };
        stream::consume(&mut c, &opts)
    };
    let result = run();
    if args.remove {
        let _ = match &target {
            Target::Path(p) => std::fs::remove_file(p).map_err(|e| e.to_string()),
            Target::Name(n) => shm_core::Region::unlink_shm(n).map_err(|e| e.to_string()),
        };
    }
    match result {
        Ok(stats) => {
            println!("summary: {}", stats.line());
            if stats.lost == 0 && stats.corrupt == 0 {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("shm-consumer: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
