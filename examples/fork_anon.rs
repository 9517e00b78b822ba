//! A parent and a child created by `fork` share `MAP_SHARED | MAP_ANONYMOUS` memory holding two
//! rings, one each way, and each prints what it received from the other.
//!
//! Run: `cargo run --example fork_anon`

use std::sync::Arc;
use std::time::Duration;

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};
use shm_ipc::core::Region;
use shm_ipc::ring::spsc::{Consumer, Producer};
use shm_ipc::ring::RingConfig;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = RingConfig::spsc(64 * 1024);
    // Map and initialise both rings before forking: the child inherits the mappings.
    let down = Region::anonymous(config.region_len())?;
    let up = Region::anonymous(config.region_len())?;
    shm_ipc::ring::init(&down, &config)?;
    shm_ipc::ring::init(&up, &config)?;
    let (down, up) = (Arc::new(down), Arc::new(up));
    let timeout = Duration::from_secs(10);

    // SAFETY: the child only uses the rings, prints, and leaves with _exit.
    match unsafe { fork() }? {
        ForkResult::Child => {
            let run = || -> Result<(), Box<dyn std::error::Error>> {
                let mut rx = Consumer::open(down)?;
                let mut tx = Producer::open(up)?;
                let mut buf = Vec::new();
                rx.recv_timeout(&mut buf, timeout)?;
                println!("child  (pid {}) received: {}", std::process::id(), String::from_utf8_lossy(&buf));
                tx.send_timeout(format!("hello from the child, pid {}", std::process::id()), timeout)?;
                Ok(())
            };
            let code = if run().is_ok() { 0 } else { 1 };
            // SAFETY: leave without running the parent's destructors a second time.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            let mut tx = Producer::open(down)?;
            let mut rx = Consumer::open(up)?;
            tx.send_timeout(format!("hello from the parent, pid {}", std::process::id()), timeout)?;
            let mut buf = Vec::new();
            rx.recv_timeout(&mut buf, timeout)?;
            println!("parent (pid {}) received: {}", std::process::id(), String::from_utf8_lossy(&buf));
            assert_eq!(waitpid(child, None)?, WaitStatus::Exited(child, 0), "child failed");
            Ok(())
        }
    }
}
