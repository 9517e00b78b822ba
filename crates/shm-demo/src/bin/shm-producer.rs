//! `shm-producer`: send numbered, timestamped, checksummed messages into a ring named by a file
//! path or a POSIX shm name. Start `shm-consumer` on the same name in another terminal; whichever
//! starts first creates the ring.

use std::sync::Arc;

use clap::Parser;
use shm_core::Region;
use shm_demo::stream::{self, KindArg, ProducerOptions, RingArgs};
use shm_ring::{Broadcast, Mpsc, Producer, RingKind, Spsc};

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
        let opts = ProducerOptions { count: args.count, size: args.size, rate: args.rate };
        let how = if created { "created" } else { "opened" };
        match args.ring.kind {
            KindArg::Spsc => send::<Spsc>(region, how, &target, &opts),
            KindArg::Mpsc => send::<Mpsc>(region, how, &target, &opts),
            KindArg::Broadcast => send::<Broadcast>(region, how, &target, &opts),
        }
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

fn send<K: RingKind>(
    region: Arc<Region>,
    how: &str,
    target: &stream::Target,
    opts: &ProducerOptions,
) -> std::io::Result<u64> {
    let mut p = Producer::<K>::open(region).map_err(|e| std::io::Error::other(e.to_string()))?;
    eprintln!(
        "shm-producer: {how} {} {target} (capacity {} B); sending {} messages of {} B",
        K::KIND,
        p.capacity(),
        opts.count,
        opts.size
    );
    stream::produce(&mut p, opts, |_| {})
}
