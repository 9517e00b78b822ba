//! `shm-demo`: small demonstrations of shm-ipc.
//!
//! - `shm-demo fork`: parent and forked child exchange messages both ways over rings in
//!   anonymous shared memory and print what they saw.
//! - `shm-demo inspect PATH|NAME`: a ring's state and who is attached (`--json` too).
//! - `shm-demo list`: this library's rings in /dev/shm (or `--dir`), and whether anyone uses them.
//! - `shm-demo cleanup`: remove the rings nobody uses (`--dry-run` to only list them); rings that
//!   still hold undelivered messages are kept unless `--force`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(version, about = "Demonstrations of shm-ipc")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Map MAP_ANON memory, fork, and exchange messages both ways over two rings.
    Fork {
        /// Messages each way.
        #[arg(long, default_value_t = 3)]
        rounds: u32,
    },
    /// Show a ring's state: kind, geometry, positions, messages in flight, each end and its process.
    Inspect {
        /// A file path, or a POSIX shm name (e.g. "demo" or "/demo").
        ring: String,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// List this library's rings in a directory and whether anyone is attached.
    List {
        /// Where to look.
        #[arg(long, default_value = "/dev/shm")]
        dir: PathBuf,
        /// One JSON object per ring.
        #[arg(long)]
        json: bool,
    },
    /// Remove rings whose every end is dead or closed, or whose creator crashed half-way; keep
    /// those that still hold undelivered messages unless --force.
    Cleanup {
        /// Where to look.
        #[arg(long, default_value = "/dev/shm")]
        dir: PathBuf,
        /// Only list what would be removed.
        #[arg(long)]
        dry_run: bool,
        /// Also remove abandoned rings that hold undelivered messages (they are lost).
        #[arg(long)]
        force: bool,
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> std::process::ExitCode {
    let result = match Args::parse().command {
        Command::Fork { rounds } => shm_demo::forkdemo::run(rounds).map(drop),
        Command::Inspect { ring, json } => shm_demo::admin::inspect(&ring, json),
        Command::List { dir, json } => shm_demo::admin::list(&dir, json),
        Command::Cleanup { dir, dry_run, force, json } => {
            let options = shm_ring::CleanupOptions::new().dry_run(dry_run).force(force);
            shm_demo::admin::cleanup(&dir, &options, json)
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shm-demo: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
