//! `shm-demo`: small demonstrations of shm-ipc.
//!
//! - `shm-demo fork`: parent and forked child exchange messages both ways over rings in
//!   anonymous shared memory and print what they saw.

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
}

fn main() -> std::process::ExitCode {
    match Args::parse().command {
        Command::Fork { rounds } => match shm_demo::forkdemo::run(rounds) {
            Ok(_) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("shm-demo fork: {e}");
                std::process::ExitCode::FAILURE
            }
        },
    }
}
