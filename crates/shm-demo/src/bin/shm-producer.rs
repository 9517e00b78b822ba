//! `shm-producer`: send numbered, timestamped, checksummed messages into a ring named by a file
//! path or a POSIX shm name. Start `shm-consumer` on the same name in another terminal; whichever
//! starts first creates the ring.

use clap::Parser;
use shm_demo::stream::{self, ProducerOptions, RingArgs};
use shm_ring::spsc::Producer;

#[derive(Parser, Debug)]
#[command(version, about = "Send verified messages into a shared-memory ring")]
struct Args {
    #[command(flatten)]
    ring: RingArgs,
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
    let target = args.ring.target();
    let run = || -> std::io::Result<u64> {
        let (region, created) = args.ring.open()?;
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
