//! `shm-consumer`: receive and verify the messages of `shm-producer`, printing a live line
//! (rate, bytes, lost, latency percentiles) and a summary.

use std::time::Duration;

use clap::Parser;
use shm_demo::stream::{self, ConsumerOptions, RingArgs, Target};
use shm_ring::spsc::Consumer;

#[derive(Parser, Debug)]
#[command(version, about = "Receive and verify messages from a shared-memory ring")]
struct Args {
    #[command(flatten)]
    ring: RingArgs,
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
    let target = args.ring.target();
    let run = || -> std::io::Result<stream::Stats> {
        let (region, created) = args.ring.open()?;
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
