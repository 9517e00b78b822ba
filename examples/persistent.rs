//! A file-backed ring outlives its users: a consumer process reads part of the stream and
//! exits, a second consumer process started later resumes at the first unread message, and a
//! producer that reopens the file appends after the last message.
//!
//! Run: `cargo run --example persistent`

use std::process::Command;

use shm_ipc::core::Region;
use shm_ipc::ring::spsc::{Consumer, Producer};
use shm_ipc::ring::{RingConfig, TryRecvError};

/// Consumer process: read up to `take` messages (all if 0), print the sequence numbers seen.
fn consumer(path: &str, take: usize) -> Result<(), Box<dyn std::error::Error>> {
    let mut rx = Consumer::open(Region::open_file(path)?)?;
    let mut seen = Vec::new();
    let mut buf = Vec::new();
    while take == 0 || seen.len() < take {
        match rx.try_recv(&mut buf) {
            Ok(_) => seen.push(u64::from_le_bytes(buf[..8].try_into()?)),
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            Err(e) => return Err(e.into()),
        }
    }
    println!("consumer pid {} read {:?}..={:?}", std::process::id(), seen.first(), seen.last());
    Ok(()) // dropping the consumer records its position in the file
}

fn send(path: &std::path::Path, seqs: std::ops::Range<u64>) -> Result<(), Box<dyn std::error::Error>> {
    let mut tx = Producer::open(Region::open_file(path)?)?;
    for seq in seqs {
        tx.try_send(seq.to_le_bytes())?;
    }
    tx.region().flush()?; // durable on disk, not only visible to other processes
    Ok(())
}

fn run_consumer(path: &std::path::Path, take: usize) -> Result<(), Box<dyn std::error::Error>> {
    let status =
        Command::new(std::env::current_exe()?).arg("--consumer").arg(path).arg(take.to_string()).status()?;
    assert!(status.success());
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, path, take] = args.as_slice() {
        if flag == "--consumer" {
            return consumer(path, take.parse()?);
        }
    }
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("ring");
    let config = RingConfig::spsc(1 << 16);
    shm_ipc::ring::init(&Region::create_file(&path, config.region_len())?, &config)?;
    send(&path, 0..100)?;
    run_consumer(&path, 40)?; // reads 0..=39 and exits
    send(&path, 100..150)?; // a new producer appends
    run_consumer(&path, 0)?; // resumes at 40, reads to 149
    Ok(())
}
