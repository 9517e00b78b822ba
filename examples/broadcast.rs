//! One producer, several subscriber processes: three forked subscribers each receive every one
//! of 100 000 messages, in order; then a subscriber joining late with history gets the last
//! ones still in the ring.
//!
//! Run: `cargo run --example broadcast`

use std::sync::Arc;

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, pipe, read, write, ForkResult};
use shm_ipc::core::Region;
use shm_ipc::ring::broadcast::{Producer, Subscriber};
use shm_ipc::ring::{AttachOptions, RecvError, RingConfig};

const SUBSCRIBERS: usize = 3;
const MESSAGES: u64 = 100_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = RingConfig::broadcast(1 << 16, 4);
    let region = Region::anonymous(config.region_len())?;
    shm_ipc::ring::init(&region, &config)?;
    let region = Arc::new(region);
    // Each subscriber writes one byte here once it has joined: it gets every message sent
    // after that.
    let (ready_r, ready_w) = pipe()?;

    let mut children = Vec::new();
    for _ in 0..SUBSCRIBERS {
        // SAFETY: the child only uses the ring and the pipe, and leaves with _exit.
        match unsafe { fork() }? {
            ForkResult::Child => {
                let code = (|| -> Result<(), Box<dyn std::error::Error>> {
                    let mut s = Subscriber::open(region)?;
                    write(&ready_w, &[1])?;
                    let mut buf = Vec::new();
                    let mut next = 0u64;
                    loop {
                        match s.recv(&mut buf) {
                            Ok(_) => {
                                assert_eq!(
                                    u64::from_le_bytes(buf[..8].try_into()?),
                                    next,
                                    "every message, in order"
                                );
                                next += 1;
                            }
                            Err(RecvError::Disconnected) => break,
                            Err(e) => return Err(e.into()),
                        }
                    }
                    assert_eq!(next, MESSAGES);
                    Ok(())
                })()
                .map_or(1, |()| 0);
                // SAFETY: leave without running the parent's destructors.
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => children.push(child),
        }
    }
    for _ in 0..SUBSCRIBERS {
        read(&ready_r, &mut [0u8])?;
    }

    let mut producer = Producer::open(region.clone())?;
    for seq in 0..MESSAGES {
        producer.send(seq.to_le_bytes())?; // waits for the slowest subscriber when the ring is full
    }
    // A late subscriber with history starts 5 messages back.
    let mut late = Subscriber::open_with(region, &AttachOptions::new().history(5))?;
    drop(producer);
    let mut buf = Vec::new();
    let mut got = Vec::new();
    loop {
        match late.recv(&mut buf) {
            Ok(_) => got.push(u64::from_le_bytes(buf[..8].try_into()?)),
            Err(RecvError::Disconnected) => break, // the producer closed, and all is read
            Err(e) => return Err(e.into()),
        }
    }
    assert_eq!(got, (MESSAGES - 5..MESSAGES).collect::<Vec<_>>());

    for child in children {
        match waitpid(child, None)? {
            WaitStatus::Exited(_, 0) => {}
            other => return Err(format!("subscriber {child} ended with {other:?}").into()),
        }
    }
    println!("{SUBSCRIBERS} subscribers each received all {MESSAGES} messages; a late one got the last 5");
    Ok(())
}
