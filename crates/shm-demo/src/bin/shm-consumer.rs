//! `shm-consumer`: receive and verify the messages of `shm-producer`, printing a live line
//! (rate, bytes, lost, latency percentiles) and a summary.

use std::time::Duration;

use std::sync::Arc;

use clap::Parser;
use shm_core::Region;
use shm_demo::stream::{self, ConsumerOptions, KindArg, RingArgs, Target};
use shm_ring::{AttachOptions, Broadcast, Consumer, Mpsc, RingKind, Spsc};

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
    /// Broadcast: start this many messages back (as many as the ring still holds) instead of
    /// at the producer's end.
    #[arg(long, default_value_t = 0)]
    history: u64,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let target = args.ring.target();
    let run = || -> std::io::Result<stream::Stats> {
        let (region, created) = args.ring.open()?;
        let opts = ConsumerOptions { count: args.count, spin: args.spin, every: Duration::from_secs(1) };
        let attach = AttachOptions::new().history(args.history);
        let how = if created { "created" } else { "opened" };
        match args.ring.kind {
            KindArg::Spsc => receive::<Spsc>(region, how, &target, &attach, &opts),
            KindArg::Mpsc => receive::<Mpsc>(region, how, &target, &attach, &opts),
            KindArg::Broadcast => receive::<Broadcast>(region, how, &target, &attach, &opts),
        }
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

fn receive<K: RingKind>(
    region: Arc<Region>,
    how: &str,
    target: &Target,
    attach: &AttachOptions,
    opts: &ConsumerOptions,
) -> std::io::Result<stream::Stats> {
    let mut c = Consumer::<K>::open_with(region, attach).map_err(|e| std::io::Error::other(e.to_string()))?;
    eprintln!("shm-consumer: {how} {} {target}; waiting for messages", K::KIND);
    stream::consume(&mut c, opts)
}
