//! Typed messages: any `bytemuck::Pod` struct travels as its bytes, between two processes.
//!
//! Run: `cargo run --example typed`

use std::sync::Arc;
use std::time::Duration;

use bytemuck::{Pod, Zeroable};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};
use shm_ipc::core::Region;
use shm_ipc::ring::spsc::{Consumer, Producer};
use shm_ipc::ring::RingConfig;

#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
#[repr(C)]
struct Quote {
    seq: u64,
    bid: f64,
    ask: f64,
    size: u32,
    venue: u32,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = RingConfig::spsc(1 << 16);
    let region = Region::anonymous(config.region_len())?;
    shm_ipc::ring::init(&region, &config)?;
    let region = Arc::new(region);
    // SAFETY: the child only uses the ring and leaves with _exit.
    match unsafe { fork() }? {
        ForkResult::Child => {
            let code = (|| -> Result<(), Box<dyn std::error::Error>> {
                let mut tx = Producer::open(region)?;
                for seq in 0..1000u64 {
                    let q =
                        Quote { seq, bid: 100.0 + seq as f64, ask: 100.5 + seq as f64, size: 10, venue: 7 };
                    tx.send_pod_timeout(q, Duration::from_secs(10))?;
                }
                Ok(())
            })()
            .map_or(1, |()| 0);
            // SAFETY: leave without running the parent's destructors.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            let mut rx = Consumer::open(region)?;
            let mut last = None;
            for seq in 0..1000u64 {
                let q: Quote = rx.recv_pod_timeout(Duration::from_secs(10))?;
                assert_eq!(q.seq, seq);
                assert_eq!(q.ask - q.bid, 0.5);
                last = Some(q);
            }
            println!("received 1000 quotes; the last: {:?}", last.expect("received"));
            assert_eq!(waitpid(child, None)?, WaitStatus::Exited(child, 0));
            Ok(())
        }
    }
}
