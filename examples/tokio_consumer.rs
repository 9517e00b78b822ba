//! An async consumer on tokio, fed by a sync producer in another process: the producer sends
//! 200 000 messages in bursts with pauses (so the consumer's task sleeps between them), and the
//! task awaits each one next to a timer, with `tokio::select!`, checking that every message
//! comes in order.
//!
//! Run: `cargo run --example tokio_consumer`

use std::sync::Arc;
use std::time::Duration;

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};
use shm_ipc::core::Region;
use shm_ipc::ring::aio::AsyncConsumer;
use shm_ipc::ring::{spsc, RecvError, RingConfig};

const MESSAGES: u64 = 200_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = RingConfig::spsc(1 << 16);
    let region = Region::anonymous(config.region_len())?;
    shm_ipc::ring::init(&region, &config)?;
    let region = Arc::new(region);
    // The consumer attaches before the fork: a message sent before it awaits is not missed.
    let consumer = spsc::Consumer::open(region.clone())?;

    // Fork before the runtime starts its threads. SAFETY: the child only sends on the ring and
    // leaves with _exit.
    let child = match unsafe { fork() }? {
        ForkResult::Child => {
            let code = (|| -> Result<(), Box<dyn std::error::Error>> {
                let mut p = spsc::Producer::open(region)?;
                for seq in 0..MESSAGES {
                    p.send(seq.to_le_bytes())?; // blocks while the ring is full
                    if seq % 20_000 == 0 {
                        std::thread::sleep(Duration::from_millis(30)); // the consumer sleeps
                    }
                }
                Ok(())
            })()
            .map_or(1, |()| 0);
            // SAFETY: leave without running the parent's destructors.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => child,
    };

    let runtime = tokio::runtime::Runtime::new()?;
    let received = runtime.block_on(async move {
        let mut rx = AsyncConsumer::new(consumer);
        let mut buf = Vec::new();
        let mut next = 0u64;
        let mut ticks = tokio::time::interval(Duration::from_millis(25));
        loop {
            tokio::select! {
                // Cancel-safe: when the tick wins, the message stays in the ring for the next
                // turn of the loop.
                r = rx.recv(&mut buf) => match r {
                    Ok(_) => {
                        assert_eq!(u64::from_le_bytes(buf[..8].try_into()?), next, "in order");
                        next += 1;
                    }
                    Err(RecvError::Disconnected) => break,
                    Err(e) => return Err(e.into()),
                },
                _ = ticks.tick() => {}
            }
        }
        Ok::<_, Box<dyn std::error::Error>>(next)
    })?;
    assert_eq!(waitpid(child, None)?, WaitStatus::Exited(child, 0));
    assert_eq!(received, MESSAGES);
    println!("tokio consumer: {received} messages in order from the producer process");
    Ok(())
}
