//! Several producer processes, one consumer: three forked producers each send 10 000 messages
//! into one MPSC ring; the consumer receives all of them, in order per producer.
//!
//! Run: `cargo run --example mpsc`

use std::sync::Arc;
use std::time::Duration;

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};
use shm_ipc::core::Region;
use shm_ipc::ring::mpsc::{Consumer, Producer};
use shm_ipc::ring::{RecvTimeoutError, RingConfig};

const PRODUCERS: u64 = 3;
const EACH: u64 = 10_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = RingConfig::mpsc(1 << 16, PRODUCERS as u32);
    let region = Region::anonymous(config.region_len())?;
    shm_ipc::ring::init(&region, &config)?;
    let region = Arc::new(region);
    let mut consumer = Consumer::open(region.clone())?;

    let mut children = Vec::new();
    for id in 0..PRODUCERS {
        // SAFETY: the child only uses the ring and leaves with _exit.
        match unsafe { fork() }? {
            ForkResult::Child => {
                let code = (|| -> Result<(), Box<dyn std::error::Error>> {
                    let mut p = Producer::open(region)?;
                    for seq in 0..EACH {
                        p.send_timeout((id << 56 | seq).to_le_bytes(), Duration::from_secs(10))?;
                    }
                    Ok(())
                })()
                .map_or(1, |()| 0);
                // SAFETY: leave without running the parent's destructors.
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => children.push(child),
        }
    }

    let mut next = [0u64; PRODUCERS as usize];
    let mut buf = Vec::new();
    while next.iter().sum::<u64>() < PRODUCERS * EACH {
        match consumer.recv_timeout(&mut buf, Duration::from_secs(10)) {
            Ok(_) => {
                let v = u64::from_le_bytes(buf[..8].try_into()?);
                let (id, seq) = ((v >> 56) as usize, v & ((1 << 56) - 1));
                assert_eq!(seq, next[id], "in order per producer");
                next[id] += 1;
            }
            // Every producer attached so far has closed; another may still be starting.
            Err(RecvTimeoutError::Disconnected) => std::thread::yield_now(),
            Err(e) => return Err(e.into()),
        }
    }
    // All sent, all closed: the ring reports it.
    assert_eq!(consumer.recv_timeout(&mut buf, Duration::from_secs(10)), Err(RecvTimeoutError::Disconnected));
    for child in children {
        assert_eq!(waitpid(child, None)?, WaitStatus::Exited(child, 0));
    }
    println!("received {:?} messages from {PRODUCERS} producer processes, in order per producer", next);
    assert_eq!(next, [EACH; PRODUCERS as usize]);
    Ok(())
}
